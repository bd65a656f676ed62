//! Kubernetes workload selectors end to end (issue 14 items 1 and 3): real processes call the
//! agent's Workload API from cgroups laid out as the kubelet lays out pods' containers
//! (cgroupfs driver, in the host's cgroup v1 `pids` hierarchy), and each gets exactly the
//! SVIDs the `k8s:` selectors of its pod entitle it to. No kubelet runs here: the kubelet's
//! pod list is a real recorded one (SPIRE's `pod_list.json`, testdata/k8s, see SOURCES.md)
//! served from a loopback HTTPS stand-in that checks the agent's bearer token; the pod uids
//! and container ids of the cgroups are that list's.
//!
//! The client is this test binary itself (`k8s_client_role`): started, moved into the pod's
//! cgroup, then told to connect, so the agent pins it there. Skipped, loudly, only where no
//! writable cgroup v1 `pids` hierarchy exists (not root, or cgroup v2 only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio_stream::StreamExt as _;
use vouch_agent::{K8sConfig, proto, request};
use vouch_testkit::read_testdata;

const PREFIX: &str = "VOUCH-K8S:";
const TOKEN: &str = "kubelet-reader-token";
const BLOG_UID: &str = "2c48913c-b29f-11e7-9350-020968147796";
const BLOG_CONTAINER: &str = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
const FLANNEL_UID: &str = "d488cae9-b2a0-11e7-9350-020968147796";
const FLANNEL_INIT: &str = "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41";

/// Run as a client: wait for a line on stdin (the parent has moved this process), then ask
/// the Workload API at `VOUCH_K8S_SOCK` once for X.509-SVIDs and print what came. Without
/// `VOUCH_K8S_SOCK` this does nothing.
#[test]
fn k8s_client_role() {
    let Ok(sock) = std::env::var("VOUCH_K8S_SOCK") else {
        return;
    };
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = vouch_agent::connect(Path::new(&sock)).await.unwrap();
        let r = match c.fetch_x509svid(request(proto::X509svidRequest {})).await {
            Ok(s) => s.into_inner().next().await.unwrap(),
            Err(e) => Err(e),
        };
        match r {
            Ok(m) => {
                let mut ids: Vec<String> = m.svids.iter().map(|s| s.spiffe_id.clone()).collect();
                ids.sort();
                println!("{PREFIX} OK {}", ids.join(","));
            }
            Err(s) => println!(
                "{PREFIX} ERR {:?} {}",
                s.code(),
                s.message().replace('\n', " ")
            ),
        }
    });
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}

/// A cgroup laid out as the kubelet's cgroupfs driver lays out a pod's container, under a
/// parent of this test process's own; removed when dropped.
struct PodCgroupDir {
    root: PathBuf,
    leaf: PathBuf,
}

impl PodCgroupDir {
    fn make(tag: &str, pod_uid: &str, container: &str) -> Result<Self, String> {
        let base = Path::new("/sys/fs/cgroup/pids");
        if !base.join("cgroup.procs").exists() {
            return Err("no cgroup v1 pids hierarchy".into());
        }
        let root = base.join(format!("vouch-k8s-{}-{tag}", std::process::id()));
        let leaf = root.join(format!("kubepods/besteffort/pod{pod_uid}/{container}"));
        std::fs::create_dir_all(&leaf).map_err(|e| format!("{}: {e}", leaf.display()))?;
        Ok(Self { root, leaf })
    }
}

impl Drop for PodCgroupDir {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self
            .leaf
            .ancestors()
            .filter(|d| d.starts_with(&self.root))
            .map(Path::to_path_buf)
            .collect();
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Start the client, move it into `cgroup` (if any), let it connect; the line it printed.
fn ask_from(sock: &Path, cgroup: Option<&PodCgroupDir>) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "k8s_client_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VOUCH_K8S_SOCK", sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(c) = cgroup {
        std::fs::write(c.leaf.join("cgroup.procs"), child.id().to_string()).unwrap();
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once(PREFIX).map(|(_, r)| r.trim().to_string()))
        .unwrap_or_else(|| panic!("no answer: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A loopback HTTPS stand-in for the kubelet: `GET /pods` answers `body` to a request with
/// the bearer token, 401 otherwise. Answers its URL and certificate (PEM).
async fn kubelet(body: Vec<u8>) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let ok = head.starts_with("get /pods ")
                    && head.contains(&format!("authorization: bearer {}", TOKEN.to_lowercase()));
                let (status, body): (&str, &[u8]) = if ok {
                    ("200 OK", &body)
                } else {
                    ("401 Unauthorized", b"{}")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (
        format!("https://127.0.0.1:{port}"),
        ck.cert.pem().into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_in_pods_get_exactly_the_svids_their_pods_entitle_them_to() {
    let cgroups = (
        PodCgroupDir::make("blog", BLOG_UID, BLOG_CONTAINER),
        PodCgroupDir::make("flannel", FLANNEL_UID, FLANNEL_INIT),
        PodCgroupDir::make(
            "unlisted",
            "0b5d7e4c-59ef-4a4e-8cbc-31d04d1de0a1",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
    );
    let (blog, flannel, unlisted) = match cgroups {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(why), ..) | (_, Err(why), _) | (.., Err(why)) => {
            use std::os::unix::fs::MetadataExt as _;
            let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
            assert!(!root || why.contains("no cgroup v1"), "{why}");
            eprintln!(
                "\n\n********************************************************************\n\
                 SKIPPED processes_in_pods_get_exactly_the_svids…: {why}\n\
                 ********************************************************************\n"
            );
            return;
        }
    };

    let (url, ca) = kubelet(read_testdata("k8s/spire_pod_list.json")).await;
    let h = common::Harness::new(|_| {}).await;
    let token_path = h.path("kubelet.token");
    std::fs::write(&token_path, TOKEN).unwrap();
    let ca_path = h.path("kubelet-ca.crt");
    std::fs::write(&ca_path, ca).unwrap();
    let sock = h.path("api.sock");
    let mut agent = h
        .agent_with("svc", |c| {
            c.workload_api_socket = Some(sock.clone());
            c.k8s = Some(K8sConfig {
                kubelet_url: url.clone(),
                token_path: token_path.clone(),
                kubelet_ca: Some(ca_path.clone()),
                ..K8sConfig::default()
            });
        })
        .await;
    h.trust(&mut agent).await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    let w = "vouch:workload:svc";
    // The blog pod's container by namespace, label and name; any container of its image (by
    // the repo digest of the kubelet's imageID); flannel's init container by service account
    // and name; everything in kube-system.
    h.add_entry(
        "spiffe://vouch.local/blog",
        &[
            w,
            "k8s:ns:default",
            "k8s:pod-label:k8s-app:blog",
            "k8s:container-name:blog",
        ],
    )
    .await;
    h.add_entry("spiffe://vouch.local/blog-image",
        &[
            w,
            "k8s:container-image-digest:sha256:0cfdaced91cb46dd7af48309799a3c351e4ca2d5e1ee9737ca0cbd932cb79898",
        ],
    )
    .await;
    h.add_entry(
        "spiffe://vouch.local/flannel-init",
        &[
            w,
            "k8s:sa:flannel",
            "k8s:container-name:install-cni",
            "k8s:node-name:k8s-node-1",
        ],
    )
    .await;
    h.add_entry(
        "spiffe://vouch.local/kube-system",
        &[w, "k8s:ns:kube-system"],
    )
    .await;
    // The blog pod's labels with another namespace: no pod has both.
    h.add_entry(
        "spiffe://vouch.local/nobody",
        &[w, "k8s:ns:kube-system", "k8s:pod-label:k8s-app:blog"],
    )
    .await;
    agent.attest_once().await.unwrap();
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    let s = sock.clone();
    let ask = move |c: Option<&PodCgroupDir>| ask_from(&s, c);
    let (a, b, c, d) = tokio::task::spawn_blocking(move || {
        (
            ask(Some(&blog)),
            ask(Some(&flannel)),
            ask(None),
            ask(Some(&unlisted)),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        a,
        "OK spiffe://vouch.local/blog,spiffe://vouch.local/blog-image"
    );
    assert_eq!(
        b,
        "OK spiffe://vouch.local/flannel-init,spiffe://vouch.local/kube-system"
    );
    // A host process: no pod, no k8s selectors, no entry of these.
    assert!(c.starts_with("ERR PermissionDenied"), "{c}");
    // A pod's cgroup the kubelet does not list: refused, to be retried.
    assert!(d.starts_with("ERR Unavailable"), "{d}");
    assert!(d.contains("does not list"), "{d}");
    drop(api);
}

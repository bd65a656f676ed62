//! The `k8s:` workload attestor on real recordings (testdata/k8s, see testdata/SOURCES.md):
//! `/proc/<pid>/cgroup` files of processes in real pods (cgroupfs and systemd drivers, cgroup
//! v1 and v2, an init container, a kind node, CRI-O) mapped to pods of real kubelet `/pods`
//! answers. No kubelet runs here: the recorded lists are served from a loopback HTTPS server
//! standing in for it, which checks the bearer token the agent sends; the agent's own client
//! (TLS verification, token, bounds, cache) fetches them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vouch_agent::{K8sAttestor, K8sConfig, K8sError, PodCgroup, parse_pod_list, pod_of_cgroup};
use vouch_testkit::read_testdata;

fn text(name: &str) -> String {
    String::from_utf8(read_testdata(&format!("k8s/{name}"))).unwrap()
}

fn cgroup(name: &str) -> PodCgroup {
    pod_of_cgroup(&text(name)).unwrap()
}

const BLOG_UID: &str = "2c48913c-b29f-11e7-9350-020968147796";
const BLOG_CONTAINER: &str = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
const KIND_UID: &str = "a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80";
const KIND_CONTAINER: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";

fn ids(cg: &PodCgroup) -> Vec<&str> {
    cg.containers.iter().map(|c| c.as_str()).collect()
}

#[test]
fn real_cgroup_files_give_the_pod_and_container() {
    // cgroup v1, cgroupfs driver and systemd driver: the same pod and container.
    for f in [
        "spire_cgroups_pid_in_pod.txt",
        "spire_systemd_cgroups_pid_in_pod.txt",
    ] {
        let cg = cgroup(f);
        assert_eq!(cg.pod_uid.as_deref(), Some(BLOG_UID), "{f}");
        assert_eq!(ids(&cg), [BLOG_CONTAINER], "{f}");
        assert!(cg.kubepods);
    }
    // An init container.
    let cg = cgroup("spire_cgroups_init_pid_in_pod.txt");
    assert_eq!(
        cg.pod_uid.as_deref(),
        Some("d488cae9-b2a0-11e7-9350-020968147796")
    );
    assert_eq!(
        ids(&cg),
        ["34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41"]
    );
    // A kind node: the node's own container outermost, the pod's container inside it.
    let cg = cgroup("spire_cgroups_pid_in_kind_pod.txt");
    assert_eq!(cg.pod_uid.as_deref(), Some(KIND_UID));
    assert_eq!(
        ids(&cg),
        [
            "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26",
            KIND_CONTAINER
        ]
    );
    // CRI-O, systemd driver (the pod uid's dashes written as underscores).
    let cg = cgroup("spire_systemd_crio_cgroups_pid_in_pod.txt");
    assert_eq!(cg.pod_uid.as_deref(), Some(KIND_UID));
    assert_eq!(ids(&cg), [KIND_CONTAINER]);
    // cgroup v2 inside a cgroup namespace: the container id alone.
    let cg = cgroup("spire_cgroups_pid_in_crio_pod.txt");
    assert_eq!(cg.pod_uid, None);
    assert!(!cg.kubepods);
    assert_eq!(ids(&cg), [KIND_CONTAINER]);
    // A login session: in no container.
    let cg = cgroup("spire_cgroups_pid_not_in_pod.txt");
    assert_eq!(cg, PodCgroup::default());
}

#[test]
fn a_cgroup_file_naming_two_pods_is_refused() {
    let t = text("spire_cgroups_pid_in_pod.txt");
    // One hierarchy's line moved to another pod (same container id).
    let mut lines: Vec<String> = t.lines().map(String::from).collect();
    lines[0] = lines[0].replace(BLOG_UID, "2c48913c-b29f-11e7-9350-020968147797");
    assert!(matches!(
        pod_of_cgroup(&lines.join("\n")),
        Err(K8sError::Cgroup(ref why)) if why.contains("two pods")
    ));
    assert!(pod_of_cgroup("").is_err());
    assert!(pod_of_cgroup("not a cgroup file").is_err());
}

fn blog_selectors() -> Vec<String> {
    [
        "k8s:ns:default",
        "k8s:sa:default",
        "k8s:pod-name:blog-24ck7",
        "k8s:pod-uid:2c48913c-b29f-11e7-9350-020968147796",
        "k8s:pod-label:k8s-app:blog",
        "k8s:pod-label:version:v0",
        "k8s:container-name:blog",
        "k8s:container-image-digest:sha256:0cfdaced91cb46dd7af48309799a3c351e4ca2d5e1ee9737ca0cbd932cb79898",
        "k8s:node-name:k8s-node-1",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn recorded_pod_lists_give_the_callers_selectors() {
    let list = parse_pod_list(&read_testdata("k8s/spire_pod_list.json")).unwrap();
    assert_eq!(list.len(), 4);
    for f in [
        "spire_cgroups_pid_in_pod.txt",
        "spire_systemd_cgroups_pid_in_pod.txt",
    ] {
        assert_eq!(
            list.selectors(&cgroup(f)).unwrap(),
            Some(blog_selectors()),
            "{f}"
        );
    }
    // The init container of the flannel pod.
    let s = list
        .selectors(&cgroup("spire_cgroups_init_pid_in_pod.txt"))
        .unwrap()
        .unwrap();
    assert!(s.contains(&"k8s:ns:kube-system".to_string()));
    assert!(s.contains(&"k8s:sa:flannel".to_string()));
    assert!(s.contains(&"k8s:container-name:install-cni".to_string()));
    assert!(s.contains(&"k8s:pod-label:tier:node".to_string()));
    // kind (containerd), CRI-O with systemd, CRI-O in a cgroup namespace: the same pod.
    let kind = parse_pod_list(&read_testdata("k8s/spire_kind_pod_list.json")).unwrap();
    let s = kind
        .selectors(&cgroup("spire_cgroups_pid_in_kind_pod.txt"))
        .unwrap()
        .unwrap();
    assert_eq!(
        s,
        [
            "k8s:ns:default",
            "k8s:sa:default",
            "k8s:pod-name:sample-workload-6658cb9566-5n4b4",
            "k8s:pod-uid:a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80",
            "k8s:pod-label:app:sample-workload",
            "k8s:pod-label:pod-template-hash:6658cb9566",
            "k8s:container-name:workload-api-client",
            "k8s:container-image-digest:sha256:1e4c481d76e9ecbd3d8684891e0e46aa021a30920ca04936e1fdcc552747d941",
            "k8s:node-name:kind-control-plane",
        ]
    );
    let crio = parse_pod_list(&read_testdata("k8s/spire_crio_pod_list.json")).unwrap();
    for f in [
        "spire_systemd_crio_cgroups_pid_in_pod.txt",
        "spire_cgroups_pid_in_crio_pod.txt",
    ] {
        let s = crio.selectors(&cgroup(f)).unwrap().unwrap();
        assert!(s.contains(&"k8s:ns:sfh-199".to_string()), "{f}");
    }
    // Not in the list: the blog pod's containers in a kind node's list, and a container not
    // yet running (no containerID in its status).
    assert_eq!(
        kind.selectors(&cgroup("spire_cgroups_pid_in_pod.txt"))
            .unwrap(),
        None
    );
    let not_running =
        parse_pod_list(&read_testdata("k8s/spire_pod_list_not_running.json")).unwrap();
    assert_eq!(
        not_running
            .selectors(&cgroup("spire_cgroups_pid_in_pod.txt"))
            .unwrap(),
        None
    );
    // In no container: nothing to look up.
    assert_eq!(
        list.selectors(&cgroup("spire_cgroups_pid_not_in_pod.txt"))
            .unwrap(),
        None
    );
}

#[test]
fn a_container_in_two_pods_or_in_another_pod_than_its_cgroup_is_refused() {
    let dup = parse_pod_list(&read_testdata(
        "k8s/spire_crio_pod_list_duplicate_containerId.json",
    ))
    .unwrap();
    assert!(matches!(
        dup.selectors(&cgroup("spire_cgroups_pid_in_crio_pod.txt")),
        Err(K8sError::Ambiguous(..))
    ));
    // The cgroup names another pod uid than the one listing the container.
    let list = parse_pod_list(&read_testdata("k8s/spire_pod_list.json")).unwrap();
    let t = text("spire_cgroups_pid_in_pod.txt")
        .replace(BLOG_UID, "d488d63b-b2a0-11e7-9350-020968147796");
    assert!(matches!(
        list.selectors(&pod_of_cgroup(&t).unwrap()),
        Err(K8sError::PodMismatch { .. })
    ));
}

#[test]
fn malformed_pod_lists_are_errors_never_panics() {
    let real = read_testdata("k8s/spire_pod_list.json");
    for bad in [
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        br#"{"kind":"Status","status":"Failure","code":401}"#.to_vec(),
        br#"{"items":[{"metadata":{}}]}"#.to_vec(),
        real[..real.len() / 2].to_vec(),
    ] {
        assert!(
            parse_pod_list(&bad).is_err(),
            "{}",
            String::from_utf8_lossy(&bad)
        );
    }
    // Every one-byte truncation point and a flipped byte at many places: no panic.
    for i in (0..real.len()).step_by(97) {
        let _ = parse_pod_list(&real[..i]);
        let mut m = real.clone();
        m[i] ^= 0x20;
        let _ = parse_pod_list(&m);
    }
}

/// What the loopback kubelet saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    auth: Mutex<Vec<String>>,
}

/// A loopback HTTPS server standing in for the kubelet: `GET /pods` answers `body` to a
/// request bearing `token`, 401 otherwise; `delay` before answering. Answers the URL, the
/// server's certificate (PEM) and what it saw.
async fn kubelet(body: Vec<u8>, token: &str, delay: Duration) -> (String, Vec<u8>, Arc<Seen>) {
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
    let seen = Arc::new(Seen::default());
    let (body, want, seen2) = (Arc::new(body), format!("Bearer {token}"), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, body, want, seen) =
                (acceptor.clone(), body.clone(), want.clone(), seen2.clone());
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
                seen.requests.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&head).to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                seen.auth.lock().unwrap().push(auth.clone());
                tokio::time::sleep(delay).await;
                let ok = head.starts_with("GET /pods HTTP/1.1") && auth == want;
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
        seen,
    )
}

struct Files {
    _dir: tempfile::TempDir,
    token: std::path::PathBuf,
    ca: std::path::PathBuf,
}

fn files(token: &str, ca: &[u8]) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("token");
    std::fs::write(&t, format!("{token}\n")).unwrap();
    let c = dir.path().join("ca.crt");
    std::fs::write(&c, ca).unwrap();
    Files {
        _dir: dir,
        token: t,
        ca: c,
    }
}

fn config(url: &str, f: &Files) -> K8sConfig {
    K8sConfig {
        kubelet_url: url.into(),
        token_path: f.token.clone(),
        kubelet_ca: Some(f.ca.clone()),
        skip_kubelet_verification: false,
        timeout_ms: 2000,
        cache_ms: 60_000,
        refetch_min_ms: 0,
    }
}

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.agent-token.sig";

#[tokio::test]
async fn the_recorded_pod_list_is_fetched_from_a_verified_kubelet_with_the_token() {
    let (url, ca, seen) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::ZERO,
    )
    .await;
    let f = files(TOKEN, &ca);
    let k = K8sAttestor::new(config(&url, &f)).unwrap();
    let blog = cgroup("spire_cgroups_pid_in_pod.txt");
    assert_eq!(k.selectors(&blog).await.unwrap(), blog_selectors());
    assert_eq!(
        seen.auth.lock().unwrap().as_slice(),
        [format!("Bearer {TOKEN}")]
    );
    // Cached: another caller of the same list costs no fetch.
    let flannel = cgroup("spire_cgroups_init_pid_in_pod.txt");
    assert!(
        k.selectors(&flannel)
            .await
            .unwrap()
            .contains(&"k8s:sa:flannel".to_string())
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    // A pod container the list does not hold: fetched once more, then refused.
    let kind = cgroup("spire_cgroups_pid_in_kind_pod.txt");
    let e = k.selectors(&kind).await.unwrap_err();
    assert!(
        matches!(e, K8sError::NotListed(ref id) if id == KIND_CONTAINER),
        "{e}"
    );
    assert!(e.is_transient());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    // A process in no container: nothing asked.
    let none = cgroup("spire_cgroups_pid_not_in_pod.txt");
    assert_eq!(k.selectors(&none).await.unwrap(), Vec::<String>::new());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    // A container outside any pod (cgroup namespace, not listed): no k8s selectors, no error.
    let crio_ns = cgroup("spire_cgroups_pid_in_crio_pod.txt");
    assert_eq!(k.selectors(&crio_ns).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn the_refetch_on_a_miss_is_rate_limited() {
    let (url, ca, seen) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::ZERO,
    )
    .await;
    let f = files(TOKEN, &ca);
    let k = K8sAttestor::new(K8sConfig {
        refetch_min_ms: 60_000,
        ..config(&url, &f)
    })
    .unwrap();
    let kind = cgroup("spire_cgroups_pid_in_kind_pod.txt");
    for _ in 0..5 {
        assert!(matches!(
            k.selectors(&kind).await,
            Err(K8sError::NotListed(_))
        ));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unverified_kubelet_a_wrong_token_and_a_slow_kubelet_are_errors() {
    let (url, ca, seen) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::ZERO,
    )
    .await;
    let blog = cgroup("spire_cgroups_pid_in_pod.txt");
    // Another CA than the kubelet's: the TLS handshake fails, nothing is read.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let f = files(TOKEN, other.cert.pem().as_bytes());
    let e = K8sAttestor::new(config(&url, &f))
        .unwrap()
        .selectors(&blog)
        .await
        .unwrap_err();
    assert!(
        matches!(e, K8sError::Kubelet { ref why, .. } if why.to_lowercase().contains("certificate")),
        "{e}"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    // Explicitly opted out of verification (SPIRE's skip_kubelet_verification): answered.
    let k = K8sAttestor::new(K8sConfig {
        kubelet_ca: None,
        skip_kubelet_verification: true,
        ..config(&url, &f)
    })
    .unwrap();
    assert_eq!(k.selectors(&blog).await.unwrap(), blog_selectors());
    // Neither a CA nor the opt-out: a configuration error.
    assert!(matches!(
        K8sAttestor::new(K8sConfig {
            kubelet_ca: None,
            ..config(&url, &f)
        }),
        Err(K8sError::Config(_))
    ));
    // Plain http is refused.
    assert!(
        K8sAttestor::new(K8sConfig {
            kubelet_url: "http://127.0.0.1:10255".into(),
            ..config(&url, &f)
        })
        .is_err()
    );
    // A token the kubelet does not take: HTTP 401.
    let f = files("another-token", &ca);
    let e = K8sAttestor::new(config(&url, &f))
        .unwrap()
        .selectors(&blog)
        .await
        .unwrap_err();
    assert!(
        matches!(e, K8sError::Kubelet { ref why, .. } if why.contains("401")),
        "{e}"
    );
    // No token file.
    let mut cfg = config(&url, &f);
    cfg.token_path = "/nonexistent/token".into();
    assert!(matches!(
        K8sAttestor::new(cfg).unwrap().selectors(&blog).await,
        Err(K8sError::Config(_))
    ));
    // A kubelet slower than the timeout.
    let (url, ca, _) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::from_secs(5),
    )
    .await;
    let f = files(TOKEN, &ca);
    let k = K8sAttestor::new(K8sConfig {
        timeout_ms: 300,
        ..config(&url, &f)
    })
    .unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(
        k.selectors(&blog).await,
        Err(K8sError::Kubelet { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_oversized_pod_list_is_refused() {
    let big = vec![b' '; vouch_agent::K8S_MAX_POD_LIST_BYTES + 10];
    let (url, ca, _) = kubelet(big, TOKEN, Duration::ZERO).await;
    let f = files(TOKEN, &ca);
    let e = K8sAttestor::new(config(&url, &f))
        .unwrap()
        .selectors(&cgroup("spire_cgroups_pid_in_pod.txt"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, K8sError::Kubelet { ref why, .. } if why.contains("longer than")),
        "{e}"
    );
}

#[tokio::test]
async fn a_real_process_on_this_host_is_read_from_proc() {
    // This host's processes run in no pod: their real /proc/<pid>/cgroup gives no container
    // and the kubelet is not asked.
    let (url, ca, seen) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::ZERO,
    )
    .await;
    let f = files(TOKEN, &ca);
    let k = K8sAttestor::new(config(&url, &f)).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let cg = vouch_agent::pod_of(pid).unwrap();
    assert!(cg.containers.is_empty() || !cg.kubepods, "{cg:?}");
    if cg.containers.is_empty() {
        assert_eq!(
            k.selectors_of(Some(pid)).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(k.selectors_of(None).await, Err(K8sError::NoPid)));
    // An exited pid: its cgroup file is gone.
    assert!(matches!(
        k.selectors_of(Some(pid)).await,
        Err(K8sError::Cgroup(_))
    ));
}

#[test]
fn labels_are_bounded_and_unusable_values_left_out() {
    // The real list with the blog pod's labels replaced: 40 labels, one with a space, one
    // too long for a selector.
    let mut v: serde_json::Value =
        serde_json::from_slice(&read_testdata("k8s/spire_pod_list.json")).unwrap();
    let blog = v["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["metadata"]["uid"] == BLOG_UID)
        .unwrap();
    let mut labels = serde_json::Map::new();
    labels.insert("a-space".into(), "two words".into());
    labels.insert("a-long".into(), "x".repeat(300).into());
    for i in 0..40 {
        labels.insert(format!("l{i:02}"), format!("v{i}").into());
    }
    blog["metadata"]["labels"] = labels.into();
    let list = parse_pod_list(&serde_json::to_vec(&v).unwrap()).unwrap();
    let s = list
        .selectors(&cgroup("spire_cgroups_pid_in_pod.txt"))
        .unwrap()
        .unwrap();
    let l: Vec<&String> = s
        .iter()
        .filter(|s| s.starts_with("k8s:pod-label:"))
        .collect();
    assert_eq!(l.len(), vouch_agent::K8S_MAX_POD_LABELS);
    assert!(
        !s.iter()
            .any(|s| s.contains("a-space") || s.contains("a-long"))
    );
    assert!(s.iter().all(|s| s.len() <= 4 + 256));
    assert!(s.contains(&"k8s:container-name:blog".to_string()));
}

/// A cgroup this test makes in the host's cgroup v1 `pids` hierarchy, removed when dropped.
struct PodCgroupDir {
    root: std::path::PathBuf,
    leaf: std::path::PathBuf,
}

impl PodCgroupDir {
    /// `/sys/fs/cgroup/pids/vouch-test-<pid>/kubepods/burstable/pod<uid>/<container>`: the
    /// cgroupfs driver's layout, under a parent of this test's own (as a kind node's is under
    /// its container). `None` where there is no such hierarchy (cgroup v2 only) or it cannot
    /// be written (not root).
    fn make(pod_uid: &str, container: &str) -> Option<Self> {
        let base = std::path::Path::new("/sys/fs/cgroup/pids");
        if !base.join("cgroup.procs").exists() {
            return None;
        }
        let root = base.join(format!("vouch-test-{}", std::process::id()));
        let leaf = root.join(format!("kubepods/burstable/pod{pod_uid}/{container}"));
        if let Err(e) = std::fs::create_dir_all(&leaf) {
            use std::os::unix::fs::MetadataExt as _;
            // Root with a v1 pids hierarchy (as where this was written): it must work.
            let root_user = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
            assert!(!root_user, "{}: {e}", leaf.display());
            return None;
        }
        Some(Self { root, leaf })
    }

    fn enter(&self, pid: u32) {
        std::fs::write(self.leaf.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for PodCgroupDir {
    fn drop(&mut self) {
        // Leaves first; a cgroup with a live process in it stays (its process is killed first).
        let mut dirs: Vec<std::path::PathBuf> =
            self.leaf.ancestors().map(|p| p.to_path_buf()).collect();
        dirs.retain(|d| d.starts_with(&self.root));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[tokio::test]
async fn a_real_process_in_a_kubepods_cgroup_gets_its_pods_selectors() {
    // A real process put in a cgroup laid out as the kubelet lays out the blog pod's
    // container (pod uid and container id from the recorded pod list), then attested through
    // its real /proc/<pid>/cgroup and the recorded list served by the loopback kubelet.
    let Some(dir) = PodCgroupDir::make(BLOG_UID, BLOG_CONTAINER) else {
        eprintln!(
            "no writable cgroup v1 pids hierarchy here: the recorded-cgroup tests cover the mapping"
        );
        return;
    };
    let (url, ca, seen) = kubelet(
        read_testdata("k8s/spire_pod_list.json"),
        TOKEN,
        Duration::ZERO,
    )
    .await;
    let f = files(TOKEN, &ca);
    let k = K8sAttestor::new(config(&url, &f)).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    dir.enter(child.id());
    let pid = child.id() as i32;
    let cg = vouch_agent::pod_of(pid).unwrap();
    assert_eq!(cg.pod_uid.as_deref(), Some(BLOG_UID));
    assert_eq!(ids(&cg), [BLOG_CONTAINER]);
    // The Workload API pins the same containers when the caller connects.
    let caller = vouch_agent::Caller::pin(0, 0, Some(pid));
    assert_eq!(
        caller.containers().unwrap().as_ref().unwrap(),
        &cg.containers
    );
    assert_eq!(k.selectors_of(Some(pid)).await.unwrap(), blog_selectors());
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    child.kill().unwrap();
    child.wait().unwrap();

    // A process in a pod cgroup whose container the kubelet does not list: refused, after
    // one refetch.
    let Some(other) = PodCgroupDir::make(
        "0b5d7e4c-59ef-4a4e-8cbc-31d04d1de0a1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ) else {
        panic!("the second cgroup could not be made");
    };
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    other.enter(child.id());
    let e = k.selectors_of(Some(child.id() as i32)).await.unwrap_err();
    assert!(matches!(e, K8sError::NotListed(_)), "{e}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(other);
    drop(dir);
}

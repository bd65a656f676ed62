//! A real OCI registry on loopback (Debian's docker-registry, over TLS under a CA only this
//! test holds), images built from scratch by buildah and pushed by skopeo, signatures in
//! cosign's layout pushed by an independent signer (tests/cosign_sign.py, Python's
//! `cryptography`; Debian's skopeo and podman have sigstore signing compiled out). Vouch
//! resolves the tag, fetches `sha256-<hex>.sig` and its payload, and verifies; each tampered
//! signature is refused, and a registry answering an oversized manifest is cut off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vouch_image::{
    ClientOptions, Digest, ImageError, ImageRef, PublicKey, RegistryClient, verify_image,
};

const PYTHON: &str = "/usr/bin/python3";

struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(env: &[(&str, PathBuf)], prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// docker-registry with TLS on a free loopback port, storage in `dir`.
fn start_registry(dir: &Path) -> Registry {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (the Python signer's TLS) takes a leaf named like its issuer
    // for a self-signed certificate.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vouch-image test registry CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    let port = vouch_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(
        dir.join("registry.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("store").display(),
            dir.join("tls.crt").display(),
            dir.join("tls.key").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .args(["serve", dir.join("registry.yml").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .unwrap();
    let r = Registry { child, addr };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&r.addr).is_ok() {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "docker-registry did not listen: {}",
        std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    );
}

/// Build an image from scratch holding `content`, push it as `repo:tag`, return the digest
/// skopeo reports for it.
fn build_and_push(dir: &Path, reg: &Registry, repo: &str, tag: &str, content: &str) -> String {
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\ntmp_dir = \"{}\"\n",
            dir.join("tmp").display()
        ),
    )
    .unwrap();
    let storage = dir.join("storage.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("graph").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    let env = [
        ("CONTAINERS_CONF", conf),
        ("CONTAINERS_STORAGE_CONF", storage),
    ];
    let file = dir.join(format!("{tag}.txt"));
    std::fs::write(&file, content).unwrap();
    let ctr = run(&env, "buildah", &["from", "scratch"]);
    run(
        &env,
        "buildah",
        &[
            "copy",
            "--quiet",
            &ctr,
            file.to_str().unwrap(),
            "/content.txt",
        ],
    );
    let layout = format!("oci:{}:{tag}", dir.join("layout").display());
    run(&env, "buildah", &["commit", "--quiet", &ctr, &layout]);
    run(&env, "buildah", &["rm", &ctr]);
    let certs = dir.join("certs");
    let dest = format!("docker://{}/{repo}:{tag}", reg.addr);
    run(
        &env,
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &layout,
            &dest,
        ],
    );
    run(
        &env,
        "skopeo",
        &[
            "inspect",
            "--cert-dir",
            certs.to_str().unwrap(),
            "--format",
            "{{.Digest}}",
            &dest,
        ],
    )
}

fn signer(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cosign_sign.py");
    let mut a = vec![script];
    a.extend_from_slice(args);
    run(&[], PYTHON, &a);
}

fn missing_tools() -> Option<String> {
    for tool in ["docker-registry", "skopeo", "buildah", PYTHON] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed (scripts/deps.sh --test)"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signatures_in_a_real_registry() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED cosign_signatures_in_a_real_registry: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = start_registry(dir);
    let signed = build_and_push(dir, &reg, "team/app", "v1", "signed image\n");
    let unsigned = build_and_push(dir, &reg, "team/app", "v2", "unsigned image\n");
    assert_ne!(signed, unsigned);

    let d = dir.to_str().unwrap();
    signer(&["genkey", d, "trusted"]);
    signer(&["genkey", d, "other"]);
    let trusted =
        PublicKey::from_pem(&std::fs::read_to_string(dir.join("trusted.pub")).unwrap()).unwrap();
    let keys = [trusted.clone()];
    let ca = dir.join("certs/ca.crt");
    let client = RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(&ca).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let v1 = ImageRef::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let v2 = ImageRef::parse(&format!("{}/team/app:v2", reg.addr)).unwrap();
    let sign = |key: &str, mode: &str| {
        signer(&[
            "sign",
            &reg.addr,
            "team/app",
            &signed,
            dir.join(format!("{key}.key")).to_str().unwrap(),
            ca.to_str().unwrap(),
            mode,
        ]);
    };

    // No signature tag yet.
    let e = verify_image(&client, &v1, &keys).await.unwrap_err();
    assert!(
        matches!(&e, ImageError::Unsigned(d, tag) if *d == signed && tag.ends_with(".sig")),
        "{e}"
    );

    // Signed by the trusted key: verified, the digest is the one skopeo reports.
    sign("trusted", "good");
    let ok = verify_image(&client, &v1, &keys).await.unwrap();
    assert_eq!(ok.digest.as_str(), signed);
    assert_eq!(ok.signed_by, vec![trusted.id().to_string()]);
    assert_eq!(
        ok.signatures[0].docker_reference,
        format!("{}/team/app", reg.addr)
    );
    // By digest too.
    let by_digest = ImageRef::parse(&format!("{}/team/app@{signed}", reg.addr)).unwrap();
    assert_eq!(
        verify_image(&client, &by_digest, &keys)
            .await
            .unwrap()
            .digest,
        ok.digest
    );
    // The other image stays unsigned.
    let e = verify_image(&client, &v2, &keys).await.unwrap_err();
    assert!(matches!(e, ImageError::Unsigned(..)), "{e}");

    // Each tampered signature replaces the tag in turn and is refused with its reason.
    for (key, mode, reason) in [
        ("trusted", "flip-signature", "by no trusted key"),
        ("trusted", "flip-payload", "by no trusted key"),
        (
            "trusted",
            &*format!("other-digest:{unsigned}"),
            "payload names sha256:",
        ),
        ("other", "good", "by no trusted key"),
        (
            "trusted",
            "no-annotation",
            "no dev.cosignproject.cosign/signature",
        ),
    ] {
        sign(key, mode);
        let e = verify_image(&client, &v1, &keys).await.unwrap_err();
        assert!(
            matches!(&e, ImageError::NotVerified { digest, reasons } if *digest == signed && reasons.contains(reason)),
            "{key} {mode}: {e}"
        );
    }
    // The other key verifies its own signature when trusted.
    let other =
        PublicKey::from_pem(&std::fs::read_to_string(dir.join("other.pub")).unwrap()).unwrap();
    sign("other", "good");
    let ok = verify_image(&client, &v1, std::slice::from_ref(&other))
        .await
        .unwrap();
    assert_eq!(ok.signed_by, vec![other.id().to_string()]);

    // Without the test's CA the registry's certificate is not trusted.
    let public_roots = RegistryClient::new(&ClientOptions::default()).unwrap();
    let e = verify_image(&public_roots, &v1, &keys).await.unwrap_err();
    assert!(matches!(e, ImageError::Registry(_)), "{e}");
}

/// A hostile registry streaming an endless manifest (chunked, no length), and one announcing
/// a huge Content-Length: both cut off at the bound.
#[tokio::test]
async fn oversized_manifest_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent2 = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let sent = sent2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                if req.contains("/announced/") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n{")
                        .await;
                    return;
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                // Up to 64 MiB; the client hangs up long before.
                for _ in 0..1024 {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    sent.fetch_add(0x10000, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let client = RegistryClient::new(&ClientOptions {
        plain_http: true,
        ..ClientOptions::default()
    })
    .unwrap();
    let digest = Digest::of(b"x");
    for repo in ["endless", "announced"] {
        let image = ImageRef::parse(&format!("{addr}/{repo}@{digest}")).unwrap();
        let e = verify_image(&client, &image, &[]).await.unwrap_err();
        assert!(
            e.to_string().contains("longer than 4194304 bytes"),
            "{repo}: {e}"
        );
    }
    // The client stopped reading near the bound (socket buffers hold a few MiB more).
    let n = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n < 32 * 1024 * 1024, "{n} bytes sent");
}

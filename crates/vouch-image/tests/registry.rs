//! A real OCI registry on loopback (Debian's docker-registry, over TLS under a CA only this
//! test holds), images built from scratch by buildah and pushed by skopeo, signatures in
//! cosign's layout pushed by an independent signer (vouch-testkit's cosign_sign.py, Python's
//! `cryptography`; Debian's skopeo and podman have sigstore signing compiled out). Vouch
//! resolves the tag, fetches `sha256-<hex>.sig` and its payload, and verifies; each tampered
//! signature is refused, and a registry answering an oversized manifest is cut off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_image::{
    ClientOptions, Digest, ImageError, ImageRef, PublicKey, RegistryClient, verify_image,
};
use vouch_testkit::registry::{Registry, missing_tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signatures_in_a_real_registry() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED cosign_signatures_in_a_real_registry: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let signed = reg.push_image("team/app", "v1", "signed image\n");
    let unsigned = reg.push_image("team/app", "v2", "unsigned image\n");
    assert_ne!(signed, unsigned);
    let read_key =
        |p: std::path::PathBuf| PublicKey::from_pem(&std::fs::read_to_string(p).unwrap()).unwrap();
    let trusted = read_key(reg.cosign_key("trusted"));
    let other = read_key(reg.cosign_key("other"));
    let keys = [trusted.clone()];
    let client = RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(reg.ca()).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let v1 = ImageRef::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let v2 = ImageRef::parse(&format!("{}/team/app:v2", reg.addr)).unwrap();
    let sign = |key: &str, mode: &str| reg.cosign_sign("team/app", &signed, key, mode);

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

/// A registry substituting content: a signature manifest whose payload blob is served with
/// other bytes than its digest, and a manifest asked for by digest answered with another one.
#[tokio::test]
async fn substituted_blobs_and_manifests_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let payload = br#"{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"sha256:0"},"type":"cosign container image signature"},"optional":null}"#;
    let image = Digest::of(b"the image manifest");
    let sig_manifest = serde_json::json!({
        "schemaVersion": 2,
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": Digest::of(payload).as_str(),
            "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
        }],
    })
    .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sig_manifest = sig_manifest.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body: Vec<u8> = if req.contains("/manifests/sha256-") {
                    sig_manifest.into_bytes()
                } else if req.contains("/blobs/") {
                    // The payload with one byte changed.
                    let mut p = payload.to_vec();
                    p[2] ^= 0x01;
                    p
                } else {
                    b"{\"schemaVersion\":2,\"layers\":[]}".to_vec()
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    let client = RegistryClient::new(&ClientOptions {
        plain_http: true,
        ..ClientOptions::default()
    })
    .unwrap();
    let r = ImageRef::parse(&format!("{addr}/app@{image}")).unwrap();
    let e = verify_image(&client, &r, &[]).await.unwrap_err();
    assert!(e.to_string().contains("does not match its digest"), "{e}");
    let m = client.manifest(&r, image.as_str()).await.unwrap_err();
    assert!(m.to_string().contains("manifest has digest"), "{m}");
}

/// A genuine signature copied, with its image, into another repository (skopeo, digests
/// preserved) names the first repository in `critical.identity.docker-reference`: refused
/// there by default, accepted when the policy says the second is a mirror of the first, or
/// when the reference is not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_copied_from_another_repository_is_refused() {
    use vouch_image::{SignedIdentity, Trust, verify_image_with};
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED a_signature_copied_from_another_repository_is_refused: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let digest = reg.push_image("team/app", "v1", "signed image\n");
    let key = PublicKey::from_pem(&std::fs::read_to_string(reg.cosign_key("k")).unwrap()).unwrap();
    reg.cosign_sign("team/app", &digest, "k", "good");
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    reg.copy("team/app:v1", "evil/app:v1");
    reg.copy(
        &format!("team/app:{sig_tag}"),
        &format!("evil/app:{sig_tag}"),
    );
    let client = RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(reg.ca()).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let original = ImageRef::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let copied = ImageRef::parse(&format!("{}/evil/app:v1", reg.addr)).unwrap();
    let trust = |identity| Trust {
        keys: vec![key.clone()],
        identity,
        ..Trust::default()
    };
    let ok = verify_image_with(&client, &original, &trust(SignedIdentity::default()))
        .await
        .unwrap();
    assert_eq!(ok.digest.as_str(), digest);
    // The same digest and the same signature bytes, asked for under the other repository.
    let e = verify_image_with(&client, &copied, &trust(SignedIdentity::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ImageError::NotVerified { reasons, .. } if reasons.contains(&format!("signed for \"{}/team/app\"", reg.addr))),
        "{e}"
    );
    // Declared a mirror of team/app: accepted; a mirror of another repository: still refused.
    let remap = |from: &str, to: &str| SignedIdentity::Remap {
        prefix: format!("{}/{from}", reg.addr),
        signed_prefix: format!("{}/{to}", reg.addr),
    };
    verify_image_with(&client, &copied, &trust(remap("evil", "team")))
        .await
        .unwrap();
    let e = verify_image_with(&client, &copied, &trust(remap("evil", "other")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("signed for"), "{e}");
    // A prefix matches at path boundaries only: evil/app is not under evil/ap.
    let e = verify_image_with(&client, &copied, &trust(remap("evil/ap", "team/ap")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("signed for"), "{e}");
    verify_image_with(&client, &copied, &trust(SignedIdentity::Any))
        .await
        .unwrap();
}

#[test]
fn docker_reference_repositories() {
    use vouch_image::reference_repository as repo;
    assert_eq!(repo("reg:5000/team/app"), "reg:5000/team/app");
    assert_eq!(repo("reg:5000/team/app:v1"), "reg:5000/team/app");
    assert_eq!(
        repo(
            "reg:5000/team/app@sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a"
        ),
        "reg:5000/team/app"
    );
    assert_eq!(repo("reg/team/app:v1@sha256:00"), "reg/team/app");
}

//! Provenance attached to images as `cosign attest --key` stores it, in a real OCI registry on
//! loopback (Debian's docker-registry over TLS under a CA only this test holds; images built
//! by buildah, pushed by skopeo). The attestations are made by an independent producer: the
//! PyPI in-toto-attestation (Statement v1, SLSA provenance v1) and securesystemslib (DSSE
//! envelope and signature) packages, pushed in cosign's layout (`sha256-<hex>.att`, a layer of
//! type application/vnd.dsse.envelope.v1+json) by vouch-testkit's cosign_sign.py.
//! `ImageChecker::provenance` accepts the good one and refuses each tampered one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_image::provenance::{Policy, VerifyingKey};
use vouch_image::{
    ClientOptions, Digest, ImageChecker, ImageError, ImageRef, PublicKey, RegistryClient,
};
use vouch_testkit::registry::{
    Registry, TEST_BUILDER, TEST_SOURCE, missing_attester, missing_tools,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_provenance_verifies_and_each_tampered_one_is_refused() {
    if let Some(why) = missing_tools().or_else(missing_attester) {
        eprintln!("SKIPPED attached_provenance_verifies_and_each_tampered_one_is_refused: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let digest = reg.push_image("team/app", "v1", "an image with provenance\n");
    let other_image = reg.push_image("team/app", "v2", "another image\n");
    let trusted_pem = std::fs::read_to_string(reg.cosign_key("trusted")).unwrap();
    reg.cosign_key("other");
    let client = RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(reg.ca()).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let checker = ImageChecker::new(
        client,
        vec![PublicKey::from_pem(&trusted_pem).unwrap()],
        vec![VerifyingKey::from_pem(&trusted_pem).unwrap()],
    );
    let image = ImageRef::parse(&format!("{}/team/app:v1", reg.addr)).unwrap();
    let d = Digest::parse(&digest).unwrap();

    // Nothing attached yet.
    let e = checker.provenance(&image, &d).await.unwrap_err();
    assert!(
        matches!(&e, ImageError::NoProvenance(x, tag) if *x == digest && tag.ends_with(".att")),
        "{e}"
    );

    // Good: signed by the trusted key, naming this digest.
    reg.cosign_attest("team/app", &digest, "trusted", "good");
    let p = checker.provenance(&image, &d).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].builder_id, TEST_BUILDER);
    assert_eq!(p[0].source_repo.as_deref(), Some(TEST_SOURCE));
    assert_eq!(p[0].source_ref.as_deref(), Some("refs/tags/v1.2.0"));
    assert_eq!(p[0].digest, digest);
    assert_eq!(
        p[0].key_id,
        VerifyingKey::from_pem(&trusted_pem).unwrap().id()
    );
    // A policy naming another builder refuses it; the same builder accepts it.
    let strict = checker.clone().with_policy(Policy {
        builder_id: Some("https://builder.example/other".into()),
        ..Policy::default()
    });
    let e = strict.provenance(&image, &d).await.unwrap_err();
    assert!(e.to_string().contains("policy: builder id"), "{e}");
    let same = checker.clone().with_policy(Policy {
        builder_id: Some(TEST_BUILDER.into()),
        source_repo: Some(TEST_SOURCE.into()),
        ..Policy::default()
    });
    assert!(same.provenance(&image, &d).await.is_ok());

    // Each tampered attestation, replacing the good one, is refused with its reason.
    for (key, mode, reason) in [
        ("other", "good", "none of 1 signature(s) verifies"),
        (
            "trusted",
            "flip-signature",
            "none of 1 signature(s) verifies",
        ),
        (
            "trusted",
            &format!("other-digest:{other_image}") as &str,
            "subject: no subject",
        ),
    ] {
        reg.cosign_attest("team/app", &digest, key, mode);
        let e = checker.provenance(&image, &d).await.unwrap_err();
        assert!(
            matches!(&e, ImageError::ProvenanceNotVerified { digest: x, reasons } if *x == digest && reasons.contains(reason)),
            "{key} {mode}: {e}"
        );
    }
    // Provenance attached under another image's tag does not count for this one, and this
    // image's .att (good again) does not count for the other image.
    reg.cosign_attest("team/app", &digest, "trusted", "good");
    let other_d = Digest::parse(&other_image).unwrap();
    let e = checker.provenance(&image, &other_d).await.unwrap_err();
    assert!(matches!(e, ImageError::NoProvenance(..)), "{e}");
    // The signature side of the same checker: the image is unsigned.
    assert!(matches!(
        checker.signature(&image, &d).await.unwrap_err(),
        ImageError::Unsigned(..)
    ));
}

/// A hostile registry: an attestation layer announcing more than an envelope may hold is not
/// fetched, and one announcing a small size but serving an endless body is cut off at the
/// bound (the client stops reading); neither is a verified provenance.
#[tokio::test]
async fn oversized_attestations_are_not_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let digest = Digest::of(b"an image manifest");
    let big = format!("sha256:{}", "b".repeat(64));
    let endless = format!("sha256:{}", "e".repeat(64));
    let manifest = |layer: &str, size: u64| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "layers": [{"mediaType": vouch_image::attestation::DSSE_MEDIA_TYPE,
                        "digest": layer, "size": size}],
        }))
        .unwrap()
    };
    let announced = manifest(&big, 2 << 20);
    let small = manifest(&endless, 100);
    let blob_requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = blob_requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (announced, small, seen) = (announced.clone(), small.clone(), seen.clone());
            let big = big.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                if req.contains("/manifests/") {
                    let body = if req.contains("/announced/") {
                        announced
                    } else {
                        small
                    };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                    return;
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert!(
                    !req.contains(&big),
                    "the announced-too-large layer was fetched"
                );
                if s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                for _ in 0..256 {
                    if s.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = RegistryClient::new(&ClientOptions {
        plain_http: true,
        ..ClientOptions::default()
    })
    .unwrap();
    let checker = ImageChecker::new(client, vec![], vec![]);
    let image = ImageRef::parse(&format!("{addr}/announced@{digest}")).unwrap();
    let e = checker.provenance(&image, &digest).await.unwrap_err();
    assert!(
        matches!(&e, ImageError::ProvenanceNotVerified { reasons, .. } if reasons.contains("envelope of 2097152 bytes, more than 1048576")),
        "{e}"
    );
    assert_eq!(blob_requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    let image = ImageRef::parse(&format!("{addr}/endless@{digest}")).unwrap();
    let e = checker.provenance(&image, &digest).await.unwrap_err();
    assert!(
        matches!(&e, ImageError::Registry(m) if m.contains("longer than 1048576 bytes")),
        "{e}"
    );
}

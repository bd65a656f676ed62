//! Container image signatures at attestation time: a verifier configured with
//! `[image_signatures]` (a real docker-registry over TLS on loopback, a trusted cosign key)
//! appraises the image digest each workload reports. With `require_image_signature`, a
//! workload whose image is signed by the trusted key is affirming; one whose image is unsigned,
//! or signed by another key, is contraindicated with a reason naming the digest. Images built by
//! buildah and pushed by skopeo; signatures in cosign's layout by an independent Python signer
//! (vouch-testkit's registry module).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use vouch_core::ArStatus;
use vouch_server::ImageSignatureSettings;
use vouch_testkit::registry::{Registry, missing_tools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_from_unsigned_images_are_contraindicated() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED workloads_from_unsigned_images_are_contraindicated: {why}");
        return;
    }
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(reg_dir.path());
    let signed = reg.push_image("shop/web", "v1", "the web image\n");
    let unsigned = reg.push_image("shop/web", "v2", "an image nobody signed\n");
    let by_other = reg.push_image("shop/web", "v3", "an image signed by someone else\n");
    let trusted = reg.cosign_key("trusted");
    reg.cosign_key("other");
    reg.cosign_sign("shop/web", &signed, "trusted", "good");
    reg.cosign_sign("shop/web", &by_other, "other", "good");

    let settings = ImageSignatureSettings {
        // The first repository holds nothing: the second is looked in too.
        repositories: vec![
            format!("{}/empty/repo", reg.addr),
            format!("{}/shop/web", reg.addr),
        ],
        keys: vec![trusted.clone()],
        registry_ca: Some(reg.ca()),
        plain_http: false,
        ttl: 300,
        cache_entries: 16,
        provenance: false,
        provenance_keys: vec![],
    };
    let h = common::Harness::new(|c| c.image_signatures = Some(settings.clone())).await;
    h.refvalue("require_image_signature", "*", "true").await;

    let mut outcomes = Vec::new();
    for (name, digest) in [
        ("signed", &signed),
        ("unsigned", &unsigned),
        ("other-key", &by_other),
    ] {
        let mut agent = h
            .agent_with(name, |c| c.image_digest = Some(digest.clone()))
            .await;
        h.trust(&mut agent).await;
        outcomes.push((name, digest, agent.attest_once().await.unwrap()));
    }
    let (_, _, ok) = &outcomes[0];
    assert_eq!(ok.status, ArStatus::Affirming, "{:?}", ok.reasons);
    for (name, digest, r) in &outcomes[1..] {
        assert_eq!(
            r.status,
            ArStatus::Contraindicated,
            "{name}: {:?}",
            r.reasons
        );
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains(digest.as_str()) && x.contains("not signed by a trusted key")),
            "{name}: {:?}",
            r.reasons
        );
    }
    let (_, _, other) = &outcomes[2];
    assert!(
        other
            .reasons
            .iter()
            .any(|x| x.contains("by no trusted key")),
        "{:?}",
        other.reasons
    );

    // Only the listed key counts once `signed_by` names keys: the trusted key's id is not
    // listed, so the signed image is refused too.
    h.refvalue(
        "require_image_signature",
        "signed_by",
        &format!("sha256:{}", "0".repeat(64)),
    )
    .await;
    let mut agent = h
        .agent_with("signed-2", |c| c.image_digest = Some(signed.clone()))
        .await;
    h.trust(&mut agent).await;
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("none of them a required key")),
        "{:?}",
        r.reasons
    );

    // Answers are cached by digest for `ttl`: a signature replaced by a tampered one is seen
    // only once the answer has expired.
    let checker = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        ttl: 60,
        ..settings
    })
    .unwrap();
    let key_ids = serde_json::json!(checker.key_ids());
    let now = 1_000_000;
    assert_eq!(checker.check(&signed, now).await["signed_by"], key_ids);
    reg.cosign_sign("shop/web", &signed, "trusted", "flip-signature");
    assert_eq!(checker.check(&signed, now + 59).await["signed_by"], key_ids);
    let v = checker.check(&signed, now + 60).await;
    assert_eq!(v["signed_by"], serde_json::json!([]), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("by no trusted key"),
        "{v}"
    );
}

/// No `[image_signatures]` on the verifier: a required signature cannot be checked, and the
/// workload reporting an image is contraindicated, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_image_signature_without_a_checker_is_contraindicated() {
    let h = common::Harness::new(|_| {}).await;
    h.refvalue("require_image_signature", "*", "true").await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut agent = h
        .agent_with("app", |c| c.image_digest = Some(digest.clone()))
        .await;
    h.trust(&mut agent).await;
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains(&digest) && x.contains("checks none")),
        "{:?}",
        r.reasons
    );
    // A workload without an image is not concerned.
    let mut plain = h.agent("plain").await;
    h.trust(&mut plain).await;
    let r = plain.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
}

/// A registry that cannot be reached: the image counts as unsigned (fail closed, the reason
/// naming the registry), and the answer is not cached, so the next attestation asks again.
#[tokio::test]
async fn an_unreachable_registry_fails_closed_and_is_asked_again() {
    // A port nothing listens on.
    let port = vouch_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pub");
    std::fs::write(
        &key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .public_key_pem(),
    )
    .unwrap();
    let checker = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        repositories: vec![format!("127.0.0.1:{port}/shop/web")],
        keys: vec![key],
        registry_ca: None,
        plain_http: true,
        ttl: 300,
        cache_entries: 16,
        provenance: false,
        provenance_keys: vec![],
    })
    .unwrap();
    let digest = format!("sha256:{}", "cd".repeat(32));
    let v = checker.check(&digest, 1000).await;
    assert_eq!(v["signed_by"], serde_json::json!([]), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{v}"
    );
    // A registry now listening on that port is asked at once (nothing was cached): it
    // answers 404 for the signature tag, a definite "no signature".
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let v = checker.check(&digest, 1001).await;
    assert!(
        v["reason"].as_str().unwrap().contains("no signature"),
        "{v}"
    );
    // Malformed digests are refused without asking anyone.
    let v = checker.check("sha256:XYZ", 1002).await;
    assert!(v["reason"].as_str().unwrap().contains("digest"), "{v}");
}

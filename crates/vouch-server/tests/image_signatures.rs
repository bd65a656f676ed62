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

/// Provenance at attestation time: `[image_signatures] provenance = true` fetches the SLSA
/// provenance attached to each reported image as `cosign attest` stores it (`sha256-<hex>.att`,
/// DSSE envelopes made by the PyPI in-toto-attestation and securesystemslib packages), and
/// `require_provenance_builder` / `require_provenance_source` accept only images built by an
/// allowed builder from an allowed source. Each refusal is a real tampered attestation in the
/// registry: none, another builder, another source, a subject naming another digest, a flipped
/// DSSE signature bit, an envelope signed by another key; and an unsigned image with good
/// provenance is still refused by `require_image_signature`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_provenance_from_an_allowed_builder_are_contraindicated() {
    use vouch_testkit::registry::{TEST_BUILDER, TEST_SOURCE, missing_attester};
    if let Some(why) = missing_tools().or_else(missing_attester) {
        eprintln!(
            "SKIPPED images_without_provenance_from_an_allowed_builder_are_contraindicated: {why}"
        );
        return;
    }
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(reg_dir.path());
    let trusted = reg.cosign_key("trusted");
    reg.cosign_key("other");
    let repo = "shop/api";
    // One image per case, each signed by the trusted key (but the unsigned one), each with
    // the provenance the case names.
    let cases = [
        ("good", "good", "trusted", true, None),
        ("none", "", "trusted", true, Some("no provenance")),
        (
            "builder",
            "builder:https://github.com/mallory/builder/.github/workflows/b.yml@refs/heads/main",
            "trusted",
            true,
            Some("built by https://github.com/mallory/builder"),
        ),
        (
            "source",
            "source:https://github.com/mallory/app",
            "trusted",
            true,
            Some("no provenance from an allowed source repository"),
        ),
        (
            "subject",
            "other-digest",
            "trusted",
            true,
            Some("subject: no subject"),
        ),
        (
            "flipped",
            "flip-signature",
            "trusted",
            true,
            Some("none of 1 signature(s) verifies"),
        ),
        (
            "other-key",
            "good",
            "other",
            true,
            Some("none of 1 signature(s) verifies"),
        ),
        (
            "unsigned",
            "good",
            "trusted",
            false,
            Some("not signed by a trusted key"),
        ),
    ];
    let other_digest = reg.push_image(repo, "elsewhere", "some other image\n");
    let mut digests = Vec::new();
    for (name, mode, key, signed, _) in &cases {
        let d = reg.push_image(repo, name, &format!("the {name} image\n"));
        if *signed {
            reg.cosign_sign(repo, &d, "trusted", "good");
        }
        match *mode {
            "" => {}
            "other-digest" => {
                reg.cosign_attest(repo, &d, key, &format!("other-digest:{other_digest}"))
            }
            m => reg.cosign_attest(repo, &d, key, m),
        }
        digests.push(d);
    }
    let settings = ImageSignatureSettings {
        repositories: vec![format!("{}/{repo}", reg.addr)],
        keys: vec![trusted],
        registry_ca: Some(reg.ca()),
        plain_http: false,
        ttl: 300,
        cache_entries: 64,
        provenance: true,
        provenance_keys: vec![],
    };
    let h = common::Harness::new(|c| c.image_signatures = Some(settings.clone())).await;
    h.refvalue("require_image_signature", "*", "true").await;
    h.refvalue("require_provenance_builder", "*", TEST_BUILDER)
        .await;
    h.refvalue("require_provenance_source", "*", TEST_SOURCE)
        .await;

    for ((name, _, _, _, reason), digest) in cases.iter().zip(&digests) {
        let mut agent = h
            .agent_with(&format!("p-{name}"), |c| {
                c.image_digest = Some(digest.clone())
            })
            .await;
        h.trust(&mut agent).await;
        let r = agent.attest_once().await.unwrap();
        match reason {
            None => assert_eq!(r.status, ArStatus::Affirming, "{name}: {:?}", r.reasons),
            Some(why) => {
                assert_eq!(
                    r.status,
                    ArStatus::Contraindicated,
                    "{name}: {:?}",
                    r.reasons
                );
                assert!(
                    r.reasons
                        .iter()
                        .any(|x| x.contains(digest.as_str()) && x.contains(why)),
                    "{name}: {:?}",
                    r.reasons
                );
            }
        }
    }

    // What the policy sees for the good image: the provenance's fields and its key.
    let checker = vouch_server::ImageSignatures::new(&settings).unwrap();
    let v = checker.check(&digests[0], 1000).await;
    let p = &v["provenance"];
    assert_eq!(p["builder_id"], TEST_BUILDER, "{v}");
    assert_eq!(p["source_repo"], TEST_SOURCE, "{v}");
    assert_eq!(p["source_ref"], "refs/tags/v1.2.0", "{v}");
    assert_eq!(
        p["build_type"], "https://actions.github.io/buildtypes/workflow/v1",
        "{v}"
    );
    assert_eq!(p["verified_by"], checker.key_ids()[0], "{v}");
    // Without `provenance = true` nothing is fetched, and a required builder cannot be met.
    let off = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        provenance: false,
        ..settings
    })
    .unwrap();
    let v = off.check(&digests[0], 1000).await;
    assert!(v.get("provenance").is_none(), "{v}");
}

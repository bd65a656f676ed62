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
        ..Default::default()
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
        ..Default::default()
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
        ..Default::default()
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

/// A verifier with `require_image_signature` and `settings`: the attestation result of one
/// workload reporting `digest`.
async fn attest_image(
    settings: &ImageSignatureSettings,
    name: &str,
    digest: &str,
) -> vouch_core::wire::AttestationResult {
    let h = common::Harness::new(|c| c.image_signatures = Some(settings.clone())).await;
    h.refvalue("require_image_signature", "*", "true").await;
    let mut agent = h
        .agent_with(name, |c| c.image_digest = Some(digest.to_string()))
        .await;
    h.trust(&mut agent).await;
    agent.attest_once().await.unwrap()
}

/// A registry closed to anonymous pulls (docker-registry's `auth: htpasswd`, the file made by
/// apache2-utils' htpasswd): with `auth_file` (a Docker config.json) the verifier reads the
/// signatures and the workload is affirming; without it, or with a wrong password, the image
/// counts as unsigned, the reason naming the registry's refusal, and the workload is
/// contraindicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_registry_is_read_with_the_auth_file() {
    use base64::Engine as _;
    use vouch_testkit::registry::{
        REGISTRY_PASSWORD, REGISTRY_USER, RegistryAuth, missing_auth_tools,
    };
    if let Some(why) = missing_auth_tools() {
        eprintln!("SKIPPED a_private_registry_is_read_with_the_auth_file: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(tmp.path());
    let digest = reg.push_image("team/app", "v1", "a private image\n");
    let key = reg.cosign_key("k");
    reg.cosign_sign("team/app", &digest, "k", "good");
    reg.require_auth(RegistryAuth::Htpasswd);
    let config = |password: &str| {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{password}"));
        let path = tmp.path().join(format!("config-{}.json", password.len()));
        std::fs::write(
            &path,
            serde_json::json!({"auths": {(reg.addr.clone()): {"auth": auth}}}).to_string(),
        )
        .unwrap();
        path
    };
    let settings = ImageSignatureSettings {
        repositories: vec![format!("{}/team/app", reg.addr)],
        keys: vec![key],
        registry_ca: Some(reg.ca()),
        auth_file: Some(config(REGISTRY_PASSWORD)),
        ..Default::default()
    };
    let r = attest_image(&settings, "private", &digest).await;
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);

    let anonymous = ImageSignatureSettings {
        auth_file: None,
        ..settings.clone()
    };
    let r = attest_image(&anonymous, "anonymous", &digest).await;
    assert_eq!(r.status, ArStatus::Contraindicated, "{:?}", r.reasons);
    assert!(
        r.reasons.iter().any(|x| x.contains(&digest)
            && x.contains("not signed by a trusted key")
            && x.contains("the registry asks for credentials and none are configured")),
        "{:?}",
        r.reasons
    );
    // A wrong password: the registry answers 401 again.
    let wrong = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        auth_file: Some(config("wrong password")),
        ..settings.clone()
    })
    .unwrap();
    let v = wrong.check(&digest, 1000).await;
    assert_eq!(v["signed_by"], serde_json::json!([]), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("401"), "{v}");
    // An auth file that is not one refuses the settings.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"auths\": {\"x\": {\"auth\": \"%%%\"}}}").unwrap();
    let e = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        auth_file: Some(bad),
        ..settings
    })
    .unwrap_err();
    assert!(e.contains("auth_file") && e.contains("not base64"), "{e}");
}

/// The key-less signature containers/image keeps for its tests (testdata/cosign-keyless: a
/// Fulcio certificate for a GitHub login, logged in the public-good Rekor), signed for
/// `192.168.64.2:5000/cosign-signed/fulcio-rekor-1`.
const KEYLESS_IDENTITY: &str = "mitr@redhat.com";
const KEYLESS_ISSUER: &str = "https://github.com/login/oauth";
const KEYLESS_REPO: &str = "cosign-signed/fulcio-rekor-1";

/// A real registry holding the key-less signature (pushed byte for byte) in [`KEYLESS_REPO`],
/// the signed manifest's digest, and settings trusting [`KEYLESS_IDENTITY`] under the
/// public-good trusted root with this registry declared the signer's mirror.
fn keyless_registry(dir: &std::path::Path) -> (Registry, String, ImageSignatureSettings) {
    let reg = Registry::start(dir);
    let digest = vouch_image::Digest::of(&vouch_testkit::read_testdata(
        "cosign-keyless/fulcio-rekor.manifest.json",
    ))
    .to_string();
    reg.cosign_copy(
        KEYLESS_REPO,
        &digest,
        &vouch_testkit::testdata("cosign-keyless/fulcio-rekor.signature"),
    );
    let settings = ImageSignatureSettings {
        repositories: vec![format!("{}/{KEYLESS_REPO}", reg.addr)],
        registry_ca: Some(reg.ca()),
        trusted_root: Some(vouch_testkit::testdata("slsa/trusted_root.json")),
        identities: vec![vouch_server::KeylessSigner {
            identity: KEYLESS_IDENTITY.into(),
            issuer: KEYLESS_ISSUER.into(),
        }],
        remap_identity: vec![format!("{}=192.168.64.2:5000", reg.addr)],
        ..Default::default()
    };
    (reg, digest, settings)
}

/// Key-less image signatures at attestation time: with `trusted_root` and the signer's
/// identity, the workload is affirming and `input.images[].signed_by` names the Fulcio
/// identity (which `require_image_signature signed_by` can require); another identity,
/// another issuer, or the staging trusted root make it contraindicated; and without the mirror
/// declaration the signature, made for another repository, does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_less_signatures_by_a_trusted_identity_are_affirming() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED key_less_signatures_by_a_trusted_identity_are_affirming: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_reg, digest, settings) = keyless_registry(tmp.path());
    let id = format!("fulcio:{KEYLESS_ISSUER}#{KEYLESS_IDENTITY}");

    // What the policy sees.
    let checker = vouch_server::ImageSignatures::new(&settings).unwrap();
    assert_eq!(checker.key_ids(), vec![id.clone()]);
    let v = checker.check(&digest, 1000).await;
    assert_eq!(v["signed_by"], serde_json::json!([id]), "{v}");

    // Affirming, also when the policy names the signer.
    let h = common::Harness::new(|c| c.image_signatures = Some(settings.clone())).await;
    h.refvalue("require_image_signature", "signed_by", &id)
        .await;
    let mut agent = h
        .agent_with("keyless", |c| c.image_digest = Some(digest.clone()))
        .await;
    h.trust(&mut agent).await;
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);

    let signer = |identity: &str, issuer: &str| {
        vec![vouch_server::KeylessSigner {
            identity: identity.into(),
            issuer: issuer.into(),
        }]
    };
    let refused = [
        (
            "identity",
            ImageSignatureSettings {
                identities: signer("someone@example.com", KEYLESS_ISSUER),
                ..settings.clone()
            },
            "certificate for \"mitr@redhat.com\"",
        ),
        (
            "issuer",
            ImageSignatureSettings {
                identities: signer(KEYLESS_IDENTITY, "https://accounts.google.com"),
                ..settings.clone()
            },
            "from \"https://github.com/login/oauth\"",
        ),
        (
            "staging",
            ImageSignatureSettings {
                trusted_root: Some(vouch_testkit::testdata("slsa/trusted_root_staging.json")),
                ..settings.clone()
            },
            "not one of the",
        ),
    ];
    for (name, s, why) in &refused {
        let r = attest_image(s, name, &digest).await;
        assert_eq!(
            r.status,
            ArStatus::Contraindicated,
            "{name}: {:?}",
            r.reasons
        );
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains(&digest) && x.contains("not signed by a trusted key")),
            "{name}: {:?}",
            r.reasons
        );
        let v = vouch_server::ImageSignatures::new(s)
            .unwrap()
            .check(&digest, 1000)
            .await;
        assert!(v["reason"].as_str().unwrap().contains(why), "{name}: {v}");
    }
    // No mirror declaration: signed for 192.168.64.2:5000/..., not this repository.
    let v = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        remap_identity: vec![],
        ..settings.clone()
    })
    .unwrap()
    .check(&digest, 1000)
    .await;
    assert_eq!(v["signed_by"], serde_json::json!([]), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("signed for \"192.168.64.2:5000/cosign-signed/fulcio-rekor-1\""),
        "{v}"
    );
    // A verifier trusting keys only does not take the key-less signature.
    let key = tmp.path().join("k.pub");
    std::fs::write(
        &key,
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .public_key_pem(),
    )
    .unwrap();
    let v = vouch_server::ImageSignatures::new(&ImageSignatureSettings {
        keys: vec![key],
        trusted_root: None,
        identities: vec![],
        ..settings
    })
    .unwrap()
    .check(&digest, 1000)
    .await;
    assert!(
        v["reason"].as_str().unwrap().contains("by no trusted key"),
        "{v}"
    );
}

/// Settings that can verify nothing, or that say something else than meant, refuse to start.
#[test]
fn image_signature_settings_that_verify_nothing_are_refused() {
    let root = vouch_testkit::testdata("slsa/trusted_root.json");
    let base = ImageSignatureSettings {
        repositories: vec!["registry.example/shop/web".into()],
        trusted_root: Some(root.clone()),
        identities: vec![vouch_server::KeylessSigner {
            identity: KEYLESS_IDENTITY.into(),
            issuer: KEYLESS_ISSUER.into(),
        }],
        ..Default::default()
    };
    assert!(vouch_server::ImageSignatures::new(&base).is_ok());
    let cases = [
        (
            ImageSignatureSettings {
                trusted_root: None,
                identities: vec![],
                ..base.clone()
            },
            "no key and no key-less signer",
        ),
        (
            ImageSignatureSettings {
                identities: vec![],
                ..base.clone()
            },
            "no identities",
        ),
        (
            ImageSignatureSettings {
                trusted_root: None,
                ..base.clone()
            },
            "identities without a trusted_root",
        ),
        (
            ImageSignatureSettings {
                identities: vec![vouch_server::KeylessSigner {
                    identity: KEYLESS_IDENTITY.into(),
                    issuer: String::new(),
                }],
                ..base.clone()
            },
            "empty identity or issuer",
        ),
        (
            ImageSignatureSettings {
                remap_identity: vec!["registry.example".into()],
                ..base.clone()
            },
            "not PREFIX=SIGNED_PREFIX",
        ),
        (
            ImageSignatureSettings {
                remap_identity: vec!["mirror.example=registry.example".into()],
                ..base.clone()
            },
            "no configured repository is under it",
        ),
        (
            // A prefix that is a string prefix, not a path prefix.
            ImageSignatureSettings {
                remap_identity: vec!["registry.example/sh=upstream.example/sh".into()],
                ..base.clone()
            },
            "no configured repository is under it",
        ),
        (
            ImageSignatureSettings {
                trusted_root: Some(vouch_testkit::testdata(
                    "cosign-keyless/fulcio-rekor.manifest.json",
                )),
                ..base.clone()
            },
            "trusted_root",
        ),
    ];
    for (s, why) in cases {
        let e = vouch_server::ImageSignatures::new(&s).unwrap_err();
        assert!(e.contains(why), "{why}: {e}");
    }
    // The settings as the configuration gives them (the same serde form as TOML).
    let s: ImageSignatureSettings = serde_json::from_value(serde_json::json!({
        "repositories": ["mirror.local/team/app"],
        "trusted_root": "/etc/vouch/trusted_root.json",
        "identities": [{
            "identity": "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main",
            "issuer": "https://token.actions.githubusercontent.com"
        }],
        "remap_identity": ["mirror.local/team=registry.example/team"],
        "auth_file": "/etc/vouch/registry-auth.json"
    }))
    .unwrap();
    assert!(s.keys.is_empty());
    assert_eq!(s.identities.len(), 1);
    assert_eq!(s.ttl, 300);
    // An unknown field in an identity (a misspelt or unsupported constraint) is refused.
    assert!(
        serde_json::from_value::<ImageSignatureSettings>(serde_json::json!({
            "repositories": [],
            "identities": [{"identity": "a", "issuer": "b", "subject": "c"}]
        }))
        .is_err()
    );
}

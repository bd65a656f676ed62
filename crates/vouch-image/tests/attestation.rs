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

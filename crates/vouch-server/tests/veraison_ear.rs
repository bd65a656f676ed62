//! Verified by others (issue 17 item 2): Veraison's `ear` crate (crates.io, the reference
//! EAR library behind Veraison's verifier; a dev-dependency only; 0.5, the release of the
//! EAR profile Vouch emits, `tag:github.com,2023:veraison/ear`) decodes and verifies a real
//! Vouch result with the verifier's published JWK, reads the claims Vouch meant (profile,
//! verifier id, the workload submodule's status and trust vector), and refuses the result
//! with one byte of its signature changed or under another verifier's key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_core::ArStatus;

mod common;
use common::Harness;

/// The verifier's classical JWK for `kid` (its JWKS also holds the AKP ML-DSA key, which the
/// `ear` crate does not read).
async fn jwk(h: &Harness, kid: &str) -> serde_json::Value {
    let jwks: serde_json::Value = serde_json::from_str(&h.client().jwks().await.unwrap()).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn veraison_ear_verifies_a_vouch_result() {
    // The `ear` crate validates `aud` the jsonwebtoken way: it has no audience to expect, so a
    // result naming one is refused ("InvalidAudience"). Results for Veraison-based relying
    // parties are therefore requested without `result_audience`; that refusal is checked below.
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent_with("app", |c| c.result_audience = None).await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    assert_eq!(good.status, ArStatus::Affirming, "{:?}", good.reasons);
    let kid = kid_of(&good.result);
    let key = jwk(&h, &kid).await;
    assert_eq!(key["alg"], "EdDSA");

    let ear = ear::Ear::from_jwt_jwk(
        &good.result,
        ear::Algorithm::EdDSA,
        key.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("Veraison's ear refused a Vouch result: {e:?}"));
    assert_eq!(ear.profile, vouch_core::EAR_PROFILE);
    let w = &ear.submods[vouch_core::SUBMOD_NAME];
    assert_eq!(w.status, ear::TrustTier::Affirming);
    // Vouch's own view of the same claims agrees, claim by claim.
    let ours = h
        .rp()
        .await
        .verify(
            &good.result,
            &vouch_rp::Requirements {
                audience: vouch_rp::Audience::Unchecked,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(ear.iat, ours.ear.iat as i64);
    assert_eq!(ear.vid.build, ours.ear.verifier_id.build);
    assert_eq!(ear.vid.developer, ours.ear.verifier_id.developer);
    let tv = &ours.ear.submods[vouch_core::SUBMOD_NAME].trust_vector;
    for (claim, theirs) in [
        (
            vouch_core::TrustClaim::Executables,
            &w.trust_vector.executables,
        ),
        (
            vouch_core::TrustClaim::Configuration,
            &w.trust_vector.configuration,
        ),
        (vouch_core::TrustClaim::Hardware, &w.trust_vector.hardware),
    ] {
        assert_eq!(theirs.get(), tv.get(claim), "{claim:?}");
    }

    // One changed byte of the signature.
    let (head, sig) = good.result.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head}.{}", String::from_utf8(sig).unwrap());
    assert!(
        ear::Ear::from_jwt_jwk(&forged, ear::Algorithm::EdDSA, key.to_string().as_bytes()).is_err()
    );

    // Another verifier's key.
    let other = Harness::new(|_| {}).await;
    let other_key = jwk(
        &other,
        &kid_of(&{
            let mut a = other.agent_with("app", |c| c.result_audience = None).await;
            a.attest_once().await.unwrap().result
        }),
    )
    .await;
    assert!(
        ear::Ear::from_jwt_jwk(
            &good.result,
            ear::Algorithm::EdDSA,
            other_key.to_string().as_bytes()
        )
        .is_err()
    );

    // A result naming an audience: the `ear` crate cannot be told one and refuses it.
    let mut with_aud = h.agent("aud").await;
    let r = with_aud.attest_once().await.unwrap();
    let e = ear::Ear::from_jwt_jwk(&r.result, ear::Algorithm::EdDSA, key.to_string().as_bytes())
        .unwrap_err();
    assert!(format!("{e:?}").contains("InvalidAudience"), "{e:?}");
}

//! Post-quantum result signatures (issue 17 item 3): a verifier with `pq_signatures` (the
//! default) returns `result_pq`, the result as JWS JSON with its classical signature and an
//! ML-DSA-65 one, and publishes the ML-DSA-65 key in its JWKS as an `AKP` key; relying parties
//! require the classical signature, the post-quantum one, or both (`SignatureMode`). Each mode
//! accepts and refuses on real results from a running verifier, tampered one byte at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use vouch_core::ArStatus;
use vouch_core::jws::GeneralJws;
use vouch_rp::{Audience, Requirements, ResultVerifier, RpError, SignatureMode};

mod common;
use common::{Harness, rp_requirements};

fn mode(m: SignatureMode) -> Requirements {
    Requirements {
        signatures: m,
        ..rp_requirements()
    }
}

/// Change one character in the middle of a base64url string (so decoded bits change).
fn flip(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let i = b.len() / 2;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn results_carry_ml_dsa_65_and_each_mode_accepts_and_refuses() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    assert_eq!(good.status, ArStatus::Affirming, "{:?}", good.reasons);

    // The JWKS publishes the ML-DSA-65 key as an AKP JWK beside the classical key.
    let jwks: serde_json::Value = serde_json::from_str(&h.client().jwks().await.unwrap()).unwrap();
    let akp: Vec<&serde_json::Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kty"] == "AKP")
        .collect();
    assert_eq!(akp.len(), 1, "{jwks}");
    assert_eq!(akp[0]["alg"], "ML-DSA-65");
    assert_eq!(
        B64.decode(akp[0]["pub"].as_str().unwrap()).unwrap().len(),
        1952
    );
    let pq_kid = akp[0]["kid"].as_str().unwrap().to_string();
    let rp = h.rp().await;

    // result_pq: the classical signature first, unchanged, then ML-DSA-65 over its own
    // header and the same payload.
    let pq = good.result_pq.clone().expect("result_pq");
    // The agent keeps it beside result.jwt.
    assert_eq!(
        std::fs::read_to_string(h.path("agent-app/result.pq.json")).unwrap(),
        pq
    );
    // Sizes for docs/PERFORMANCE.md (run with --nocapture).
    eprintln!(
        "result: {} bytes (signing input {} bytes); result_pq: {} bytes",
        good.result.len(),
        good.result.rsplit_once('.').unwrap().0.len(),
        pq.len()
    );
    let jws = GeneralJws::parse(&pq).unwrap();
    assert_eq!(jws.signatures.len(), 2);
    assert_eq!(jws.compact(0).unwrap(), good.result);
    let h1: serde_json::Value =
        serde_json::from_slice(&B64.decode(&jws.signatures[1].protected).unwrap()).unwrap();
    assert_eq!(h1["alg"], "ML-DSA-65");
    assert_eq!(h1["kid"], pq_kid.as_str());
    assert_eq!(
        B64.decode(&jws.signatures[1].signature).unwrap().len(),
        3309
    );

    let classical = mode(SignatureMode::Classical);
    let post_quantum = mode(SignatureMode::PostQuantum);
    let both = mode(SignatureMode::Both);

    // Accepted: the classical mode takes either form; the others need result_pq.
    let v = rp.verify(&good.result, &classical).unwrap();
    assert_eq!(v.subject.as_deref(), Some(good.workload_id.as_str()));
    for req in [&classical, &post_quantum, &both] {
        let v = rp.verify(&pq, req).unwrap();
        assert_eq!(v.status, ArStatus::Affirming);
        assert_eq!(v.subject.as_deref(), Some(good.workload_id.as_str()));
    }

    // Downgrade: a classical-only result where the post-quantum signature is required.
    for req in [&post_quantum, &both] {
        assert_eq!(
            rp.verify(&good.result, req),
            Err(RpError::PostQuantumMissing)
        );
        let mut stripped = jws.clone();
        stripped.signatures.truncate(1);
        assert_eq!(
            rp.verify(&stripped.to_json(), req),
            Err(RpError::PostQuantumMissing)
        );
    }

    // One changed byte of the ML-DSA-65 signature.
    let mut bad_pq = jws.clone();
    bad_pq.signatures[1].signature = flip(&bad_pq.signatures[1].signature);
    let bad_pq = bad_pq.to_json();
    assert_eq!(
        rp.verify(&bad_pq, &both),
        Err(RpError::PostQuantumSignature)
    );
    assert_eq!(
        rp.verify(&bad_pq, &post_quantum),
        Err(RpError::PostQuantumSignature)
    );
    // The classical mode does not look at it (documented in SignatureMode::Classical).
    assert!(rp.verify(&bad_pq, &classical).is_ok());

    // One changed byte of the classical signature.
    let mut bad_classical = jws.clone();
    bad_classical.signatures[0].signature = flip(&bad_classical.signatures[0].signature);
    let bad_classical = bad_classical.to_json();
    assert_eq!(rp.verify(&bad_classical, &both), Err(RpError::Signature));
    assert_eq!(
        rp.verify(&bad_classical, &classical),
        Err(RpError::Signature)
    );
    // The post-quantum mode trusts the ML-DSA-65 signature alone.
    assert!(rp.verify(&bad_classical, &post_quantum).is_ok());

    // One changed byte of the payload breaks both signatures.
    let mut bad_payload = jws.clone();
    bad_payload.payload = flip(&bad_payload.payload);
    let bad_payload = bad_payload.to_json();
    for req in [&post_quantum, &both] {
        let e = rp.verify(&bad_payload, req).unwrap_err();
        assert!(
            matches!(e, RpError::PostQuantumSignature | RpError::Malformed(_)),
            "{e:?}"
        );
    }
    assert!(rp.verify(&bad_payload, &classical).is_err());

    // The ML-DSA signature moved under another kid: no such key.
    let mut other_kid = jws.clone();
    other_kid.signatures[1].protected =
        B64.encode(br#"{"alg":"ML-DSA-65","kid":"mldsa65-0000000000000000","typ":"JWT"}"#);
    assert_eq!(
        rp.verify(&other_kid.to_json(), &post_quantum),
        Err(RpError::UnknownKey("mldsa65-0000000000000000".into()))
    );

    // The claims are still checked when only the ML-DSA-65 signature is: another audience.
    let elsewhere = Requirements {
        audience: Audience::Required("another-rp".into()),
        ..post_quantum.clone()
    };
    assert_eq!(
        rp.verify(&pq, &elsewhere),
        Err(RpError::Audience("another-rp".into()))
    );

    // A relying party whose JWKS lacks the ML-DSA key cannot accept in PQ modes.
    let classical_only_jwks = serde_json::json!({
        "keys": jwks["keys"].as_array().unwrap().iter()
            .filter(|k| k["kty"] != "AKP").cloned().collect::<Vec<_>>()
    });
    let old_rp = ResultVerifier::from_jwks_json(&classical_only_jwks.to_string()).unwrap();
    assert_eq!(
        old_rp.verify(&pq, &both),
        Err(RpError::UnknownKey(pq_kid.clone()))
    );
    assert!(old_rp.verify(&pq, &classical).is_ok());

    // A recorded result looked up later carries the post-quantum signature too.
    let looked = h.client().result(&good.attestation_id).await.unwrap();
    assert_eq!(looked.result, good.result);
    let again = looked.result_pq.expect("result_pq on lookup");
    rp.verify(&again, &both).unwrap();
}

#[tokio::test]
async fn pq_signatures_off_publishes_no_ml_dsa_key() {
    let h = Harness::new(|c| c.pq_signatures = false).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    assert_eq!(good.result_pq, None);
    let jwks = h.client().jwks().await.unwrap();
    assert!(!jwks.contains("AKP"), "{jwks}");
    let rp = h.rp().await;
    rp.verify(&good.result, &rp_requirements()).unwrap();
    assert_eq!(
        rp.verify(&good.result, &mode(SignatureMode::Both)),
        Err(RpError::PostQuantumMissing)
    );
}

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

/// Revocation records, revocation heads and audit heads carry an ML-DSA-65 signature too
/// (`records_pq`, `head_pq`): a relying party in `PostQuantum` or `Both` mode takes only those,
/// and refuses a compact one, a stripped or flipped ML-DSA signature, an unknown key, and a
/// post-quantum signature moved from one kind of statement to another.
#[tokio::test]
async fn revocations_and_heads_carry_ml_dsa_65() {
    use vouch_rp::RevocationSet;
    use vouch_server::unix_now;

    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    let jwks = h.client().jwks().await.unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let r = http
        .post(format!("{}/v1/revocations", h.server.base_url))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({
            "kind": "result", "target": good.attestation_id, "reason": "test"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let feed: serde_json::Value = http
        .get(format!("{}/v1/revocations?after=0", h.server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = feed["records"][0].as_str().unwrap();
    let record_pq = feed["records_pq"][0].as_str().unwrap();
    // Asked again, the same signed record is served: signed once per replica certificate, not
    // once per request (an ML-DSA-65 signature is randomised, so a new one would differ).
    let again: serde_json::Value = http
        .get(format!("{}/v1/revocations?after=0", h.server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["records"][0].as_str(), Some(record));
    assert_eq!(again["records_pq"][0].as_str(), Some(record_pq));
    let head = feed["head"].as_str().unwrap();
    let head_pq = feed["head_pq"].as_str().unwrap();
    // The classical signature is the first, unchanged.
    assert_eq!(
        GeneralJws::parse(record_pq).unwrap().compact(0).unwrap(),
        record
    );
    assert_eq!(
        GeneralJws::parse(head_pq).unwrap().compact(0).unwrap(),
        head
    );
    let now = unix_now();

    // Classical mode takes either form.
    for (rec, hd) in [(record, head), (record_pq, head_pq)] {
        let mut set = RevocationSet::new(h.trust_bundle());
        assert!(set.insert_record(rec, now).unwrap());
        assert!(set.insert_head(hd, now).unwrap());
        assert!(set.check_current(now).is_ok());
    }
    for m in [SignatureMode::PostQuantum, SignatureMode::Both] {
        let set = || {
            RevocationSet::new(h.trust_bundle())
                .with_signatures(m, &jwks)
                .unwrap()
        };
        // The post-quantum forms are accepted, and revoke.
        let mut s = set();
        assert!(s.insert_record(record_pq, now).unwrap());
        assert!(s.insert_head(head_pq, now).unwrap());
        assert!(s.check_current(now).is_ok());
        assert!(
            s.revoked(vouch_rp::RevocationKind::Result, &good.attestation_id)
                .is_some()
        );
        // Compact ones are not.
        assert!(matches!(
            set().insert_record(record, now),
            Err(RpError::PostQuantumMissing)
        ));
        assert!(matches!(
            set().insert_head(head, now),
            Err(RpError::PostQuantumMissing)
        ));
        // The ML-DSA signature stripped, or one character of it changed.
        let mut stripped = GeneralJws::parse(record_pq).unwrap();
        stripped.signatures.truncate(1);
        assert!(matches!(
            set().insert_record(&stripped.to_json(), now),
            Err(RpError::PostQuantumMissing)
        ));
        let mut flipped = GeneralJws::parse(head_pq).unwrap();
        flipped.signatures[1].signature = flip(&flipped.signatures[1].signature);
        assert!(matches!(
            set().insert_head(&flipped.to_json(), now),
            Err(RpError::PostQuantumSignature)
        ));
        // The head's ML-DSA signature moved onto the record: refused.
        let mut moved = GeneralJws::parse(record_pq).unwrap();
        moved.signatures[1] = GeneralJws::parse(head_pq).unwrap().signatures[1].clone();
        assert!(set().insert_record(&moved.to_json(), now).is_err());
        // A genuine ML-DSA signature by the verifier's own key over the record's payload, but
        // made for another kind of statement (`typ` JWT, as on results): refused by its typ.
        let mut retyped = GeneralJws::parse(record_pq).unwrap();
        retyped.signatures[1] = ml_dsa_sign(&h, &retyped.payload, "JWT");
        let e = set().insert_record(&retyped.to_json(), now).unwrap_err();
        assert!(e.to_string().contains("not vouch-revocation+jwt"), "{e}");
        // The same signature made with the right typ is accepted: the check above refused the
        // typ, nothing else.
        retyped.signatures[1] = ml_dsa_sign(&h, &retyped.payload, "vouch-revocation+jwt");
        assert!(set().insert_record(&retyped.to_json(), now).unwrap());
    }
    // The feed saved as is loads in post-quantum mode (its records_pq and head_pq), and
    // `vouch verify --revocations` takes it.
    let saved = h.path("feed.json");
    std::fs::write(&saved, feed.to_string()).unwrap();
    let mut s = RevocationSet::new(h.trust_bundle())
        .with_signatures(SignatureMode::Both, &jwks)
        .unwrap();
    assert_eq!(s.load(&saved, now).unwrap(), 1);
    assert!(s.check_current(now).is_ok());
    // A JWKS without ML-DSA keys cannot make a post-quantum set; another verifier's ML-DSA key
    // does not verify this one's signatures.
    let classical_only = r#"{"keys":[]}"#;
    assert!(
        RevocationSet::new(h.trust_bundle())
            .with_signatures(SignatureMode::Both, classical_only)
            .is_err()
    );
    let other = Harness::new(|_| {}).await;
    let other_jwks = other.client().jwks().await.unwrap();
    let mut s = RevocationSet::new(h.trust_bundle())
        .with_signatures(SignatureMode::Both, &other_jwks)
        .unwrap();
    assert!(matches!(
        s.insert_record(record_pq, now),
        Err(RpError::UnknownKey(_))
    ));

    // Audit heads: `head_pq` verifies in post-quantum mode, the compact one does not.
    let audit: serde_json::Value = http
        .get(format!("{}/v1/audit/head", h.server.base_url))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bundle = h.trust_bundle();
    let a_pq = audit["head_pq"].as_str().unwrap();
    let a = audit["head"].as_str().unwrap();
    let checked = vouch_rp::audit::verify_audit_head_pq(a_pq, &bundle, &jwks, now).unwrap();
    assert_eq!(checked.size, audit["size"].as_u64().unwrap());
    assert!(vouch_rp::audit::verify_audit_head(a_pq, &bundle, now).is_ok());
    assert!(matches!(
        vouch_rp::audit::verify_audit_head_pq(a, &bundle, &jwks, now),
        Err(RpError::PostQuantumMissing)
    ));
    let mut flipped = GeneralJws::parse(a_pq).unwrap();
    flipped.signatures[1].signature = flip(&flipped.signatures[1].signature);
    assert!(
        vouch_rp::audit::verify_audit_head_pq(&flipped.to_json(), &bundle, &jwks, now).is_err()
    );
    // A revocation head's ML-DSA signature is not an audit head's.
    let mut moved = GeneralJws::parse(a_pq).unwrap();
    moved.signatures[1] = GeneralJws::parse(head_pq).unwrap().signatures[1].clone();
    assert!(vouch_rp::audit::verify_audit_head_pq(&moved.to_json(), &bundle, &jwks, now).is_err());
}

/// An ML-DSA-65 signature by the verifier's own key (`keys/mldsa65.p8`) over `payload`, with
/// `typ` in its protected header.
fn ml_dsa_sign(h: &Harness, payload: &str, typ: &str) -> vouch_core::jws::JwsSignature {
    use aws_lc_rs::signature::{KeyPair as _, ML_DSA_65_SIGNING, PqdsaKeyPair};
    use sha2::Digest as _;
    let der = std::fs::read(h.cfg.data_dir.join("keys/mldsa65.p8")).unwrap();
    let pair = PqdsaKeyPair::from_pkcs8(&ML_DSA_65_SIGNING, &der).unwrap();
    let kid = format!(
        "mldsa65-{}",
        hex::encode(&sha2::Sha256::digest(pair.public_key().as_ref())[..8])
    );
    let protected =
        B64.encode(serde_json::json!({"alg": "ML-DSA-65", "kid": kid, "typ": typ}).to_string());
    let mut sig = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
    let n = pair
        .sign(format!("{protected}.{payload}").as_bytes(), &mut sig)
        .unwrap();
    sig.truncate(n);
    vouch_core::jws::JwsSignature {
        protected,
        signature: B64.encode(sig),
    }
}

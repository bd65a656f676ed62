//! The real quote from Trustee's test data (RSA-2048 RSASSA-SHA256 over 24 SHA-256 PCRs),
//! verified, and each tampering refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use vouch_tpm::{Ak, HashAlg, PcrValues, QuotePolicy, TpmError, TpmsAttest, verify_quote};

struct Sample {
    ak: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
}

fn sample() -> Sample {
    let v: serde_json::Value = serde_json::from_slice(&vouch_testkit::read_testdata(
        "tpm/trustee_tpm_evidence.json",
    ))
    .unwrap();
    let q = &v["tpm_quote"];
    let mut bank = std::collections::BTreeMap::new();
    for (i, p) in q["pcrs"].as_array().unwrap().iter().enumerate() {
        bank.insert(i as u8, hex::decode(p.as_str().unwrap()).unwrap());
    }
    let mut pcrs = PcrValues::default();
    pcrs.0.insert(HashAlg::Sha256, bank);
    Sample {
        ak: B64.decode(v["ak_public"].as_str().unwrap()).unwrap(),
        message: B64.decode(q["message"].as_str().unwrap()).unwrap(),
        signature: B64.decode(q["signature"].as_str().unwrap()).unwrap(),
        pcrs,
    }
}

/// The 64-byte nonce binding the sample was made with (its `extraData`).
fn nonce(s: &Sample) -> Vec<u8> {
    TpmsAttest::parse(&s.message).unwrap().extra_data
}

#[test]
fn the_real_quote_verifies() {
    let s = sample();
    let n = nonce(&s);
    assert_eq!(n.len(), 64);
    let c = verify_quote(
        &Ak::from_spki(&s.ak),
        &s.message,
        &s.signature,
        &s.pcrs,
        &n,
        &QuotePolicy::default(),
    )
    .unwrap();
    assert_eq!(c.signature, "rsassa-sha256");
    assert!(
        !c.qualified_signer_checked,
        "an SPKI-only AK has no name to compare"
    );
    assert_eq!(s.pcrs.to_hex()["sha256"].len(), 24);
    assert!(c.clock.safe);
}

#[test]
fn any_flipped_byte_of_the_signed_quote_is_refused() {
    let s = sample();
    let n = nonce(&s);
    let ak = Ak::from_spki(&s.ak);
    for i in 0..s.message.len() {
        let mut m = s.message.clone();
        m[i] ^= 0x01;
        assert!(
            verify_quote(&ak, &m, &s.signature, &s.pcrs, &n, &QuotePolicy::default()).is_err(),
            "byte {i} flipped and still accepted"
        );
    }
    let mut sig = s.signature.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x01;
    assert_eq!(
        verify_quote(&ak, &s.message, &sig, &s.pcrs, &n, &QuotePolicy::default()),
        Err(TpmError::Signature)
    );
}

#[test]
fn another_nonce_is_refused() {
    let s = sample();
    let mut n = nonce(&s);
    n[0] ^= 1;
    assert_eq!(
        verify_quote(
            &Ak::from_spki(&s.ak),
            &s.message,
            &s.signature,
            &s.pcrs,
            &n,
            &QuotePolicy::default()
        ),
        Err(TpmError::ExtraData)
    );
}

#[test]
fn pcr_values_relabelled_or_dropped_are_refused() {
    let s = sample();
    let n = nonce(&s);
    let ak = Ak::from_spki(&s.ak);
    // Move PCR 17's value (non-zero) to PCR 0 and PCR 0's (zero) to 17.
    let mut relabelled = s.pcrs.clone();
    let bank = relabelled.0.get_mut(&HashAlg::Sha256).unwrap();
    let (a, b) = (bank[&0].clone(), bank[&17].clone());
    bank.insert(0, b);
    bank.insert(17, a);
    assert_eq!(
        verify_quote(
            &ak,
            &s.message,
            &s.signature,
            &relabelled,
            &n,
            &QuotePolicy::default()
        ),
        Err(TpmError::PcrDigest)
    );
    // Present fewer PCRs than were quoted.
    let mut fewer = s.pcrs.clone();
    fewer.0.get_mut(&HashAlg::Sha256).unwrap().remove(&23);
    assert!(matches!(
        verify_quote(
            &ak,
            &s.message,
            &s.signature,
            &fewer,
            &n,
            &QuotePolicy::default()
        ),
        Err(TpmError::PcrSelection { .. })
    ));
    // Present the same values as another bank.
    let mut other_bank = PcrValues::default();
    other_bank
        .0
        .insert(HashAlg::Sha384, s.pcrs.0[&HashAlg::Sha256].clone());
    assert!(
        verify_quote(
            &ak,
            &s.message,
            &s.signature,
            &other_bank,
            &n,
            &QuotePolicy::default()
        )
        .is_err()
    );
}

#[test]
fn a_policy_without_sha256_refuses_it() {
    let s = sample();
    let n = nonce(&s);
    let policy = QuotePolicy {
        allowed_hashes: vec![HashAlg::Sha384],
        ..QuotePolicy::default()
    };
    assert_eq!(
        verify_quote(
            &Ak::from_spki(&s.ak),
            &s.message,
            &s.signature,
            &s.pcrs,
            &n,
            &policy
        ),
        Err(TpmError::HashNotAllowed("sha256".into()))
    );
}

#[test]
fn truncations_are_errors_not_panics() {
    let s = sample();
    for cut in 0..s.message.len() {
        assert!(TpmsAttest::parse(&s.message[..cut]).is_err());
    }
    for cut in 0..s.signature.len() {
        assert!(vouch_tpm::TpmtSignature::parse(&s.signature[..cut]).is_err());
    }
}

//! Quotes produced by tpm2-tools on a real software TPM (a producer no one here wrote),
//! verified by the pure-Rust verifier, and every tampering the verifier must catch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_testkit::Swtpm;
use vouch_tpm::{
    Ak, ClockInfo, HashAlg, QuotePolicy, RH_ENDORSEMENT, TpmError, TpmtPublic,
    check_clock_progress, parse_tpm2_tools_pcrs, qualified_name, verify_quote,
};

fn ak_under_ek(ek: &[u8], ak: &[u8]) -> Ak {
    let ek = TpmtPublic::from_tpm2b(ek).unwrap();
    let ak = TpmtPublic::from_tpm2b(ak).unwrap();
    let ek_qn = qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name());
    Ak::from_public(&ak, &ek_qn).unwrap()
}

const NONCE: &str = "5f6e6f6e63655f746869735f71756f74655f69735f626f756e645f746f5f5f";

#[test]
fn rsa_and_ecc_quotes_from_tpm2_tools_verify_and_tampering_is_refused() {
    let tpm = Swtpm::start("sha1,sha256");
    tpm.extend(10, "sha256", "aa");
    tpm.extend(10, "sha1", "bb");
    for alg in ["rsa", "ecc"] {
        let (ek, ak_pub) = tpm.ek_and_ak(alg);
        let ak = ak_under_ek(&ek, &ak_pub);
        // The AK's name as computed here equals what tpm2-tools reported.
        assert_eq!(
            TpmtPublic::from_tpm2b(&ak_pub).unwrap().name(),
            tpm.read("ak.name"),
            "{alg}"
        );
        let (msg, sig, pcrs) = tpm.quote("sha256:0,1,2,3,10", NONCE, "sha256");
        let values = parse_tpm2_tools_pcrs(&pcrs).unwrap();
        let nonce = hex::decode(NONCE).unwrap();
        let p = QuotePolicy::default();
        let c = verify_quote(&ak, &msg, &sig, &values, &nonce, &p).unwrap();
        assert!(c.qualified_signer_checked);
        assert_ne!(
            values.to_hex()["sha256"][&10],
            "0".repeat(64),
            "PCR 10 was extended"
        );

        // A quote over another nonce.
        let mut other = nonce.clone();
        other[3] ^= 0x20;
        assert_eq!(
            verify_quote(&ak, &msg, &sig, &values, &other, &p),
            Err(TpmError::ExtraData),
            "{alg}"
        );
        // PCR values relabelled to other indices (PCR 10's value presented as PCR 3).
        let mut relabelled = values.clone();
        let bank = relabelled.0.get_mut(&HashAlg::Sha256).unwrap();
        let (v3, v10) = (bank[&3].clone(), bank[&10].clone());
        bank.insert(3, v10);
        bank.insert(10, v3);
        assert_eq!(
            verify_quote(&ak, &msg, &sig, &relabelled, &nonce, &p),
            Err(TpmError::PcrDigest)
        );
        let mut shifted = values.clone();
        let bank = shifted.0.get_mut(&HashAlg::Sha256).unwrap();
        let v = bank.remove(&10).unwrap();
        bank.insert(11, v);
        assert!(matches!(
            verify_quote(&ak, &msg, &sig, &shifted, &nonce, &p),
            Err(TpmError::PcrSelection { .. })
        ));
        // A qualifiedSigner mismatch: the same AK key, but claimed to live under another parent.
        let wrong_parent = Ak {
            qualified_name: Some(qualified_name(
                HashAlg::Sha256,
                &0x4000_0001u32.to_be_bytes(),
                &TpmtPublic::from_tpm2b(&ak_pub).unwrap().name(),
            )),
            ..ak.clone()
        };
        assert!(matches!(
            verify_quote(&wrong_parent, &msg, &sig, &values, &nonce, &p),
            Err(TpmError::QualifiedSigner { .. })
        ));
        // Every flipped byte of the signed structure.
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 0x80;
            assert!(
                verify_quote(&ak, &m, &sig, &values, &nonce, &p).is_err(),
                "{alg} byte {i}"
            );
        }
        // A replayed (older) quote after a newer one: the clock check catches it.
        let (msg2, sig2, pcrs2) = tpm.quote("sha256:0,1,2,3,10", NONCE, "sha256");
        let c2 = verify_quote(
            &ak,
            &msg2,
            &sig2,
            &parse_tpm2_tools_pcrs(&pcrs2).unwrap(),
            &nonce,
            &p,
        )
        .unwrap();
        check_clock_progress(Some(&c.clock), &c2.clock).unwrap();
        assert!(matches!(
            check_clock_progress(Some(&c2.clock), &c.clock),
            Err(TpmError::ClockRollback(_))
        ));
    }
}

#[test]
fn a_sha1_downgrade_is_refused() {
    let tpm = Swtpm::start("sha1,sha256");
    let (ek, ak_pub) = tpm.ek_and_ak("rsa");
    // The AK is bound to RSASSA-SHA256, so ask for a quote over the SHA-1 bank only.
    let (msg, sig, pcrs) = tpm.quote("sha1:0,1,2,3", NONCE, "sha256");
    let values = parse_tpm2_tools_pcrs(&pcrs).unwrap();
    let nonce = hex::decode(NONCE).unwrap();
    let ak = ak_under_ek(&ek, &ak_pub);
    assert_eq!(
        verify_quote(&ak, &msg, &sig, &values, &nonce, &QuotePolicy::default()),
        Err(TpmError::HashNotAllowed("sha1 PCR bank".into()))
    );
    // With SHA-1 explicitly allowed the same quote verifies: the refusal is the policy's.
    let legacy = QuotePolicy {
        allowed_hashes: vec![HashAlg::Sha1, HashAlg::Sha256],
        ..QuotePolicy::default()
    };
    verify_quote(&ak, &msg, &sig, &values, &nonce, &legacy).unwrap();
}

#[test]
fn keys_without_ak_attributes_are_refused() {
    let tpm = Swtpm::start("sha256");
    tpm.tool(&["tpm2_createprimary", "-C", "o", "-c", "primary.ctx"]);
    // An unrestricted signing key: it could sign a forged TPMS_ATTEST.
    tpm.tool(&[
        "tpm2_create",
        "-C",
        "primary.ctx",
        "-G",
        "rsa2048:rsassa-sha256:null",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
        "-u",
        "key.pub",
        "-r",
        "key.priv",
    ]);
    let public = TpmtPublic::from_tpm2b(&tpm.read("key.pub")).unwrap();
    assert!(matches!(
        Ak::from_public(&public, &[0; 4]),
        Err(TpmError::AkAttributes(m)) if m.contains("restricted")
    ));
    // A decryption key.
    tpm.tool(&[
        "tpm2_create",
        "-C",
        "primary.ctx",
        "-G",
        "rsa2048",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt",
        "-u",
        "dec.pub",
        "-r",
        "dec.priv",
    ]);
    let public = TpmtPublic::from_tpm2b(&tpm.read("dec.pub")).unwrap();
    assert!(Ak::from_public(&public, &[0; 4]).is_err());
}

#[test]
fn clock_progress_rules() {
    let c = |reset, restart, clock| ClockInfo {
        clock,
        reset_count: reset,
        restart_count: restart,
        safe: true,
    };
    check_clock_progress(None, &c(0, 0, 1)).unwrap();
    check_clock_progress(Some(&c(1, 0, 500)), &c(2, 0, 10)).unwrap();
    check_clock_progress(Some(&c(1, 0, 500)), &c(1, 1, 10)).unwrap();
    assert!(check_clock_progress(Some(&c(2, 0, 5)), &c(1, 9, 900)).is_err());
    assert!(check_clock_progress(Some(&c(1, 3, 5)), &c(1, 2, 900)).is_err());
    assert!(check_clock_progress(Some(&c(1, 3, 5)), &c(1, 3, 5)).is_err());
}

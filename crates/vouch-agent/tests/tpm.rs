//! The agent's TPM side against a real swtpm: EK and its certificate, a persistent AK, quotes
//! the pure-Rust verifier accepts, and credential activation of a credential made in Rust.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_agent::{Tpm, TpmConfig};
use vouch_testkit::Swtpm;
use vouch_tpm::{
    Ak, QuotePolicy, RH_ENDORSEMENT, TpmtPublic, make_credential, qualified_name, verify_quote,
};

fn tpm_for(sw: &Swtpm, alg: &str, dir: &std::path::Path) -> Tpm {
    Tpm::new(
        TpmConfig {
            tcti: sw.tcti(),
            key_alg: alg.into(),
            pcrs: vec![0, 1, 2, 3, 16],
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        },
        dir,
    )
}

#[test]
fn ek_ak_quote_and_credential_activation_on_swtpm() {
    let sw = Swtpm::start("sha256");
    sw.extend(16, "sha256", "42");
    for alg in ["rsa", "ecc"] {
        let state = tempfile::tempdir().unwrap();
        let tpm = tpm_for(&sw, alg, state.path());
        let id = tpm.identity().unwrap();
        let ek = TpmtPublic::from_tpm2b(&id.ek_public).unwrap();
        let ak = TpmtPublic::from_tpm2b(&id.ak_public).unwrap();
        ak.check_ak_attributes().unwrap();
        assert!(
            id.ek_cert.as_ref().is_some_and(|c| c[0] == 0x30),
            "{alg}: EK certificate from NV"
        );

        // The AK persists: a second open loads the same key.
        assert_eq!(tpm.identity().unwrap().ak_public, id.ak_public, "{alg}");

        let nonce = [7u8; 32];
        let q = tpm.quote(&nonce).unwrap();
        let parent = qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name());
        let c = verify_quote(
            &Ak::from_public(&ak, &parent).unwrap(),
            &q.attest,
            &q.signature,
            &q.pcrs,
            &nonce,
            &QuotePolicy::default(),
        )
        .unwrap();
        assert!(c.qualified_signer_checked);
        assert_eq!(q.pcrs.to_hex()["sha256"].len(), 5);

        // Credential activation, for the RSA EK (PolicyA) and the high-range P-384 ECC EK
        // (PolicyB = PolicyOR(PolicyA, PolicyC) under SHA-384, ECDH + KDFe on the verifier).
        {
            let secret = [0x3c; 32];
            let made = make_credential(&ek, &ak.name(), &secret, &[9; 32]).unwrap();
            assert_eq!(
                tpm.activate_credential(&made.id_object, &made.encrypted_secret)
                    .unwrap(),
                secret
            );
            let mut other = ak.name();
            other[4] ^= 1;
            let wrong = make_credential(&ek, &other, &secret, &[9; 32]).unwrap();
            assert!(
                tpm.activate_credential(&wrong.id_object, &wrong.encrypted_secret)
                    .is_err()
            );
        }
    }
}

#[test]
fn a_persistent_ek_is_used_and_left_in_place() {
    let sw = Swtpm::start("sha256");
    // swtpm_setup persisted the RSA EK at the TCG handle 0x81010001; move it to another handle
    // and point the agent there.
    sw.tool(&["tpm2_evictcontrol", "-C", "o", "-c", "0x81010001"]);
    sw.tool(&[
        "tpm2_createek",
        "-c",
        "0x81010005",
        "-G",
        "rsa",
        "-u",
        "ek.pub",
    ]);
    let state = tempfile::tempdir().unwrap();
    let tpm = Tpm::new(
        TpmConfig {
            tcti: sw.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![0],
            ima_log: None,
            eventlog: None,
            ek_handle: Some(0x8101_0005),
        },
        state.path(),
    );
    let id = tpm.identity().unwrap();
    let ek = TpmtPublic::from_tpm2b(&id.ek_public).unwrap();
    assert_eq!(
        ek.name(),
        TpmtPublic::from_tpm2b(&sw.read("ek.pub")).unwrap().name()
    );
    let ak = TpmtPublic::from_tpm2b(&id.ak_public).unwrap();
    let made = make_credential(&ek, &ak.name(), &[1; 32], &[2; 32]).unwrap();
    assert_eq!(
        tpm.activate_credential(&made.id_object, &made.encrypted_secret)
            .unwrap(),
        [1; 32]
    );
    // Still there: the agent closed the persistent EK, it did not flush or evict it.
    sw.tool(&["tpm2_readpublic", "-c", "0x81010005"]);
    // A configured handle that holds nothing is an error, not a silent fallback.
    let wrong = Tpm::new(
        TpmConfig {
            tcti: sw.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![0],
            ima_log: None,
            eventlog: None,
            ek_handle: Some(0x8101_0009),
        },
        state.path(),
    );
    assert!(wrong.identity().is_err());
}

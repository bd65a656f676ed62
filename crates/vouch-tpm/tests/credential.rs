//! MakeCredential in pure Rust, checked by the other side: tpm2_activatecredential on swtpm
//! recovers the secret only for the AK the credential names, under the EK it was made for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_testkit::Swtpm;
use vouch_tpm::{TpmtPublic, kdfa, make_credential};

#[test]
fn swtpm_activates_a_credential_made_here_only_for_the_named_ak() {
    let tpm = Swtpm::start("sha256");
    let (ek_pub, ak_pub) = tpm.ek_and_ak("rsa");
    let ek = TpmtPublic::from_tpm2b(&ek_pub).unwrap();
    let ak = TpmtPublic::from_tpm2b(&ak_pub).unwrap();
    let secret = b"vouch-challenge-0123456789abcdef";
    let made = make_credential(&ek, &ak.name(), secret, &[0x5a; 32]).unwrap();
    assert_eq!(
        tpm.activate_credential(&made.to_tpm2_tools()).unwrap(),
        secret
    );

    // Another seed gives other blobs that still activate.
    let made2 = make_credential(&ek, &ak.name(), secret, &[0x11; 32]).unwrap();
    assert_ne!(made, made2);
    assert_eq!(
        tpm.activate_credential(&made2.to_tpm2_tools()).unwrap(),
        secret
    );

    // Made for another key's name: the TPM refuses (integrity check), so an AK that is not
    // the one the verifier examined cannot complete activation.
    let mut other_name = ak.name();
    other_name[5] ^= 1;
    let wrong = make_credential(&ek, &other_name, secret, &[0x5a; 32]).unwrap();
    assert!(tpm.activate_credential(&wrong.to_tpm2_tools()).is_err());

    // A flipped byte anywhere in the blobs is refused too.
    let mut blob = made.to_tpm2_tools();
    let i = 8 + 10;
    blob[i] ^= 1;
    assert!(tpm.activate_credential(&blob).is_err());
}

#[test]
fn ecc_ek_credentials_activate_too() {
    let tpm = Swtpm::start("sha256");
    let (ek_pub, ak_pub) = tpm.ek_and_ak("ecc");
    let ek = TpmtPublic::from_tpm2b(&ek_pub).unwrap();
    let ak = TpmtPublic::from_tpm2b(&ak_pub).unwrap();
    let secret = b"ecc-challenge-0123456789abcdef01";
    let made = make_credential(&ek, &ak.name(), secret, &[]).unwrap();
    assert_eq!(
        tpm.activate_credential(&made.to_tpm2_tools()).unwrap(),
        secret
    );
    let mut other = ak.name();
    other[9] ^= 1;
    let wrong = make_credential(&ek, &other, secret, &[]).unwrap();
    assert!(tpm.activate_credential(&wrong.to_tpm2_tools()).is_err());
}

#[test]
fn kdfa_matches_the_specification_shape() {
    // KDFa output length and determinism; labels are NUL-terminated whether or not given so.
    let a = kdfa(
        vouch_tpm::HashAlg::Sha256,
        b"key",
        "STORAGE",
        b"u",
        b"",
        128,
    );
    assert_eq!(a.len(), 16);
    assert_eq!(
        a,
        kdfa(
            vouch_tpm::HashAlg::Sha256,
            b"key",
            "STORAGE\0",
            b"u",
            b"",
            128
        )
    );
    let long = kdfa(
        vouch_tpm::HashAlg::Sha256,
        b"key",
        "INTEGRITY",
        b"",
        b"",
        512,
    );
    assert_eq!(long.len(), 64);
    assert_ne!(long[..32], long[32..]);
}

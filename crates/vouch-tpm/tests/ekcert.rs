//! EK certificates provisioned by swtpm_setup, validated against the swtpm-localca that issued
//! them, and refused under another CA, for another key, or outside their validity.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_testkit::Swtpm;
use vouch_tpm::{EkTrustStore, TpmError, TpmtPublic};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ek_and_cert(tpm: &Swtpm) -> (TpmtPublic, Vec<u8>) {
    tpm.ek_and_ak("rsa");
    tpm.tool(&["tpm2_nvread", "0x01c00002", "-C", "o", "-o", "ekcert.der"]);
    (
        TpmtPublic::from_tpm2b(&tpm.read("ek.pub")).unwrap(),
        tpm.read("ekcert.der"),
    )
}

#[test]
fn ek_certificate_chain_key_and_validity() {
    let a = Swtpm::start("sha256");
    let b = Swtpm::start("sha256");
    let (ek_a, cert_a) = ek_and_cert(&a);
    let (ek_b, _) = ek_and_cert(&b);
    let trust_a = EkTrustStore::from_dir(&a.path("ca")).unwrap();
    assert!(trust_a.len() >= 2, "root and issuing CA");

    let info = trust_a.verify(&cert_a, &ek_a, now()).unwrap();
    assert!(info.issuer.contains("swtpm-localca"), "{info:?}");

    // Another manufacturer's CA does not vouch for this EK.
    let trust_b = EkTrustStore::from_dir(&b.path("ca")).unwrap();
    let e = trust_b.verify(&cert_a, &ek_a, now()).unwrap_err();
    assert!(
        matches!(e, TpmError::EkCertificate(ref m) if m.contains("no trusted")),
        "{e}"
    );

    // A genuine certificate presented with another TPM's EK.
    let e = trust_a.verify(&cert_a, &ek_b, now()).unwrap_err();
    assert!(
        matches!(e, TpmError::EkCertificate(ref m) if m.contains("another key")),
        "{e}"
    );

    // Before its validity (a clock far in the past).
    assert!(trust_a.verify(&cert_a, &ek_a, 1_000_000).is_err());

    // One flipped byte in the signature, and in the signed body.
    let mut sig_flip = cert_a.clone();
    let n = sig_flip.len();
    sig_flip[n - 5] ^= 1;
    assert!(trust_a.verify(&sig_flip, &ek_a, now()).is_err());
    let mut body_flip = cert_a.clone();
    body_flip[40] ^= 1;
    assert!(trust_a.verify(&body_flip, &ek_a, now()).is_err());
    assert!(trust_a.verify(b"not a certificate", &ek_a, now()).is_err());
}

//! The real AWS Nitro Enclaves attestation document in testdata/nitro (debug mode,
//! see SOURCES.md): it verifies at a time inside its signing certificate's three-hour window
//! on 2023-09-18, and is refused after a one-byte change anywhere, with another root, and
//! outside that window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use vouch_tee::TeeError;
use vouch_tee::nitro::NitroVerifier;
use vouch_testkit::read_testdata;

fn doc() -> Vec<u8> {
    let b64 = String::from_utf8(read_testdata("nitro/attestation_doc.b64")).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap()
}

fn verifier() -> NitroVerifier {
    let pem = String::from_utf8(read_testdata("nitro/aws_nitro_root.pem")).unwrap();
    NitroVerifier::new(&vouch_x509::pem_certificates(&pem)[0]).unwrap()
}

/// 2023-09-18 15:00 UTC, inside the signing certificate's 14:37:09–17:37:12 window.
const NOW: u64 = 1_695_049_200;

#[test]
fn the_real_document_verifies_with_its_claims() {
    let c = verifier().verify(&doc(), NOW).unwrap();
    assert!(
        c.module_id
            .starts_with("i-0918f6c55e3b61d89-enc018aa8b8e2285d13"),
        "{}",
        c.module_id
    );
    assert_eq!(c.digest, "SHA384");
    assert!(c.debug, "a debug-mode enclave has PCRs 0-2 all zero");
    assert!(c.pcrs.len() >= 3);
    assert!(c.pcrs.values().all(|p| p.len() == 96));
    assert!(
        c.certificate.contains("enc018aa8b8e2285d13"),
        "{}",
        c.certificate
    );
    assert!(c.timestamp_ms / 1000 >= 1_695_047_829 && c.timestamp_ms / 1000 <= 1_695_058_632);
}

#[test]
fn a_one_byte_change_anywhere_is_refused() {
    let v = verifier();
    let doc = doc();
    for at in 0..doc.len() {
        let mut bad = doc.clone();
        bad[at] ^= 0x01;
        assert!(
            v.verify(&bad, NOW).is_err(),
            "byte {at} changed, still accepted"
        );
    }
    // A changed PCR byte inside the payload: still CBOR, the signature fails.
    let zeros = [0u8; 48];
    let at = doc.windows(48).position(|w| w == zeros).unwrap();
    let mut bad = doc.clone();
    bad[at + 5] = 1;
    assert!(matches!(v.verify(&bad, NOW), Err(TeeError::Signature(_))));
    assert!(v.verify(&doc[..doc.len() - 1], NOW).is_err());
    assert!(v.verify(&[], NOW).is_err());
}

#[test]
fn another_root_or_another_time_is_refused() {
    let doc = doc();
    // AMD's ARK is a valid self-signed root, but not the Nitro root.
    let amd = vouch_x509::pem_certificates(
        &String::from_utf8(read_testdata("snp/milan_ask_ark_asvk.pem")).unwrap(),
    );
    let e = NitroVerifier::new(&amd[1])
        .unwrap()
        .verify(&doc, NOW)
        .unwrap_err();
    assert!(e.to_string().contains("trusted Nitro root"), "{e}");
    // An intermediate is not accepted as a root.
    assert!(NitroVerifier::new(&amd[0]).is_err());
    let v = verifier();
    let e = v.verify(&doc, NOW - 3 * 3600).unwrap_err();
    assert!(e.to_string().contains("not valid before"), "{e}");
    let e = v.verify(&doc, NOW + 3 * 3600).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
}

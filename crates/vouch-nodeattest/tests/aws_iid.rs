//! `aws_iid` on a real EC2 instance identity document (testdata/cloud/aws, see SOURCES.md):
//! a t4g.small in ap-southeast-2, launched 2026-02-16, with both its `/rsa2048` PKCS#7 and its
//! base64 `/signature`, checked against AWS's published certificates for the region. It
//! verifies in both forms and yields its selectors; a flipped byte in the document or in
//! either signature, another region's certificates, an expired certificate, a verification
//! time before the launch and an account not allowed are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::path::PathBuf;
use vouch_nodeattest::{
    AwsIidAttestor, AwsIidConfig, AwsIidData, NodeAttestError, NodeAttestation, NodeAttestor,
};
use vouch_testkit::{read_testdata, testdata};

/// 2026-03-01, after the launch and inside both certificates' validity.
const NOW: u64 = 1_772_323_200;

fn text(p: &str) -> String {
    String::from_utf8(read_testdata(p)).unwrap()
}

fn document() -> String {
    text("cloud/aws/iid_ap-southeast-2.document")
}

fn config(dir: PathBuf) -> AwsIidConfig {
    AwsIidConfig {
        certificates_dir: dir,
        allowed_accounts: vec![],
        max_clock_skew_secs: 300,
    }
}

fn attestor() -> AwsIidAttestor {
    AwsIidAttestor::from_config(config(testdata("cloud/aws/certs"))).unwrap()
}

fn attest(
    a: &AwsIidAttestor,
    data: &AwsIidData,
    now: u64,
) -> Result<vouch_nodeattest::NodeIdentity, NodeAttestError> {
    let bytes = serde_json::to_vec(data).unwrap();
    a.attest(
        &NodeAttestation {
            data: &bytes,
            nonce: "n",
            audience: "vouch",
        },
        now,
    )
}

fn rsa2048() -> AwsIidData {
    AwsIidData {
        rsa2048: Some(text("cloud/aws/iid_ap-southeast-2.rsa2048")),
        ..Default::default()
    }
}

fn signature() -> AwsIidData {
    AwsIidData {
        document: Some(document()),
        signature: Some(text("cloud/aws/iid_ap-southeast-2.signature")),
        ..Default::default()
    }
}

/// Flip one bit of byte `at` of a base64 text's decoded bytes.
fn flip_b64(b64: &str, at: usize) -> String {
    let e = base64::engine::general_purpose::STANDARD;
    let mut d = e.decode(b64.trim()).unwrap();
    d[at] ^= 0x01;
    e.encode(d)
}

#[test]
fn the_real_document_verifies_with_its_rsa2048_pkcs7() {
    let id = attest(&attestor(), &rsa2048(), NOW).unwrap();
    assert_eq!(
        id.key,
        "aws_iid:189292791360:ap-southeast-2:i-0c5541936caf78c12"
    );
    for s in [
        "aws_iid:account:189292791360",
        "aws_iid:region:ap-southeast-2",
        "aws_iid:instance_id:i-0c5541936caf78c12",
        "aws_iid:image_id:ami-0cbde744623b7506b",
        "aws_iid:instance_type:t4g.small",
        "aws_iid:az:ap-southeast-2a",
    ] {
        assert!(
            id.selectors.iter().any(|x| x == s),
            "{s} in {:?}",
            id.selectors
        );
    }
    assert!(
        !id.reattestable,
        "a long-lived document is trusted on first use"
    );
    // The same document sent beside it, byte for byte, is accepted too.
    let mut with_doc = rsa2048();
    with_doc.document = Some(document());
    assert_eq!(attest(&attestor(), &with_doc, NOW).unwrap(), id);
}

#[test]
fn the_real_document_verifies_with_its_base64_signature() {
    let id = attest(&attestor(), &signature(), NOW).unwrap();
    assert_eq!(
        id.key,
        "aws_iid:189292791360:ap-southeast-2:i-0c5541936caf78c12"
    );
    assert_eq!(id, attest(&attestor(), &rsa2048(), NOW).unwrap());
}

#[test]
fn a_document_that_is_not_the_signed_content_is_refused() {
    let mut d = rsa2048();
    d.document = Some(document().replace("t4g.small", "t4g.large"));
    let e = attest(&attestor(), &d, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn one_flipped_byte_in_the_signed_document_is_refused() {
    // Inside the PKCS#7: a byte of the content ("accountId" value) changes the messageDigest.
    let p7 = text("cloud/aws/iid_ap-southeast-2.rsa2048");
    let der = base64::engine::general_purpose::STANDARD
        .decode(p7.trim())
        .unwrap();
    let at = der.windows(12).position(|w| w == b"189292791360").unwrap();
    let d = AwsIidData {
        rsa2048: Some(flip_b64(&p7, at + 3)),
        ..Default::default()
    };
    let e = attest(&attestor(), &d, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    // Beside the base64 signature: the document as sent.
    let mut d = signature();
    d.document = Some(document().replacen("t4g.small", "t4g.smalm", 1));
    let e = attest(&attestor(), &d, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn one_flipped_byte_in_either_signature_is_refused() {
    let p7 = text("cloud/aws/iid_ap-southeast-2.rsa2048");
    let len = base64::engine::general_purpose::STANDARD
        .decode(p7.trim())
        .unwrap()
        .len();
    // The RSA signature is the last 256 bytes before the end-of-contents markers.
    let d = AwsIidData {
        rsa2048: Some(flip_b64(&p7, len - 40)),
        ..Default::default()
    };
    let e = attest(&attestor(), &d, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    let mut d = signature();
    d.signature = Some(flip_b64(d.signature.as_deref().unwrap(), 5));
    let e = attest(&attestor(), &d, NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
}

#[test]
fn another_regions_certificates_do_not_verify_it() {
    // Other regions' real certificates, filed as if they were ap-southeast-2's: us-east-1's
    // RSA-2048 one, and af-south-1's RSA one (us-east-1's RSA certificate carries the same
    // key as ap-southeast-2's: AWS signs `/signature` with one key in most regions).
    let dir = tempfile::tempdir().unwrap();
    let mut both = read_testdata("cloud/aws/other/us-east-1.rsa2048.pem");
    both.extend(read_testdata("cloud/aws/other/af-south-1.rsa.pem"));
    std::fs::write(dir.path().join("ap-southeast-2.pem"), both).unwrap();
    let a = AwsIidAttestor::from_config(config(dir.path().to_path_buf())).unwrap();
    for d in [rsa2048(), signature()] {
        let e = attest(&a, &d, NOW).unwrap_err();
        assert!(matches!(e, NodeAttestError::Signature { .. }), "{e}");
    }
    // And a directory without the region at all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("us-east-1.pem"),
        read_testdata("cloud/aws/other/us-east-1.rsa2048.pem"),
    )
    .unwrap();
    let a = AwsIidAttestor::from_config(config(dir.path().to_path_buf())).unwrap();
    let e = attest(&a, &rsa2048(), NOW).unwrap_err();
    assert!(
        e.to_string()
            .contains("no certificate configured for region"),
        "{e}"
    );
}

#[test]
fn an_expired_certificate_and_a_time_before_launch_are_refused() {
    // The `signature` certificate (RSA-1024) is valid 2024-04-29 .. 2029-04-28.
    let e = attest(&attestor(), &signature(), 1_893_456_000).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // 2026-01-01: before pendingTime 2026-02-16 (and outside any skew).
    let e = attest(&attestor(), &rsa2048(), 1_767_225_600).unwrap_err();
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
}

#[test]
fn an_account_not_allowed_is_refused() {
    let mut c = config(testdata("cloud/aws/certs"));
    c.allowed_accounts = vec!["123456789012".into()];
    let a = AwsIidAttestor::from_config(c.clone()).unwrap();
    let e = attest(&a, &rsa2048(), NOW).unwrap_err();
    assert!(matches!(e, NodeAttestError::Refused { .. }), "{e}");
    c.allowed_accounts.push("189292791360".into());
    let a = AwsIidAttestor::from_config(c).unwrap();
    assert!(attest(&a, &rsa2048(), NOW).is_ok());
}

#[test]
fn malformed_data_is_refused_with_a_reason() {
    let a = attestor();
    for bad in [
        &b"not json"[..],
        br#"{"document":"{}"}"#,
        br#"{"rsa2048":"AAAA","signature":"AAAA"}"#,
        br#"{"rsa2048":"!!"}"#,
        br#"{"rsa2048":"MIAGCSqGSIb3DQEHAqCAMIACAQEx"}"#,
        br#"{"rsa2048":"AAAA","extra":1}"#,
    ] {
        let e = a
            .attest(
                &NodeAttestation {
                    data: bad,
                    nonce: "n",
                    audience: "vouch",
                },
                NOW,
            )
            .unwrap_err();
        assert!(matches!(e, NodeAttestError::Malformed { .. }), "{e}");
    }
    // A configuration naming an empty directory is refused when built.
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        AwsIidAttestor::from_config(config(dir.path().to_path_buf())),
        Err(NodeAttestError::Config { .. })
    ));
}

#[test]
fn the_config_denies_unknown_fields() {
    let c: AwsIidConfig =
        serde_json::from_str(r#"{"certificates_dir":"/x","allowed_accounts":["1"]}"#).unwrap();
    assert_eq!(c.max_clock_skew_secs, 300);
    assert!(serde_json::from_str::<AwsIidConfig>(r#"{"certificates_dir":"/x","x":1}"#).is_err());
}

/// Every single-bit change anywhere in the real PKCS#7 (content, signed attributes, signer
/// identifiers, algorithms, lengths, the signature) and in the real document or signature
/// of the `/signature` form is refused: none is accepted, none panics.
#[test]
fn no_single_bit_flip_anywhere_is_accepted() {
    let e = base64::engine::general_purpose::STANDARD;
    let a = attestor();
    let der = e
        .decode(text("cloud/aws/iid_ap-southeast-2.rsa2048").trim())
        .unwrap();
    for i in 0..der.len() {
        for bit in [0x01u8, 0x80] {
            let mut d = der.clone();
            d[i] ^= bit;
            let data = AwsIidData {
                rsa2048: Some(e.encode(&d)),
                ..Default::default()
            };
            assert!(
                attest(&a, &data, NOW).is_err(),
                "byte {i} bit {bit:#x} accepted"
            );
        }
    }
    // Every truncation, too (the BER reader's bounds on the real structure).
    for n in 0..der.len() {
        let data = AwsIidData {
            rsa2048: Some(e.encode(&der[..n])),
            ..Default::default()
        };
        assert!(
            attest(&a, &data, NOW).is_err(),
            "truncation to {n} accepted"
        );
    }
    let doc = document().into_bytes();
    let sig = e
        .decode(text("cloud/aws/iid_ap-southeast-2.signature").trim())
        .unwrap();
    for i in 0..doc.len() + sig.len() {
        let (mut dd, mut ss) = (doc.clone(), sig.clone());
        if i < doc.len() {
            dd[i] ^= 0x01;
        } else {
            ss[i - doc.len()] ^= 0x01;
        }
        let Ok(dtext) = String::from_utf8(dd) else {
            continue;
        };
        let data = AwsIidData {
            document: Some(dtext),
            signature: Some(e.encode(&ss)),
            ..Default::default()
        };
        assert!(attest(&a, &data, NOW).is_err(), "byte {i} accepted");
    }
}

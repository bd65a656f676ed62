//! Cosign signatures made by real cosign: the `dir-img-cosign-valid` fixture of
//! containers/image (testdata/cosign/, see testdata/SOURCES.md), verified offline; one
//! flipped byte, another key, another digest refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use vouch_image::cosign::verify_payload;
use vouch_image::{Digest, ImageError, PublicKey};
use vouch_testkit::read_testdata;

/// containers/image stores a sigstore signature as `\0sigstore-json\n` and a JSON object:
/// the payload (base64) and the layer's annotations.
fn fixture() -> (Vec<u8>, String) {
    let raw = read_testdata("cosign/valid.signature");
    let json = raw.strip_prefix(b"\x00sigstore-json\n").unwrap();
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(v["payload"].as_str().unwrap())
        .unwrap();
    let sig = v["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_string();
    (payload, sig)
}

fn key(name: &str) -> PublicKey {
    PublicKey::from_pem(&String::from_utf8(read_testdata(name)).unwrap()).unwrap()
}

fn manifest_digest() -> Digest {
    Digest::of(&read_testdata("cosign/valid.manifest.json"))
}

#[test]
fn real_cosign_signature_verifies() {
    let (payload, sig) = fixture();
    let k = key("cosign/cosign.pub");
    let d = manifest_digest();
    assert_eq!(
        d.as_str(),
        "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
    );
    let p = verify_payload(&payload, &sig, std::slice::from_ref(&k), &d).unwrap();
    assert_eq!(p.key_id, k.id());
    assert_eq!(
        p.docker_reference,
        "192.168.64.2:5000/cosign-signed-single-sample"
    );
    // The second key alone does not verify it; with both trusted, the first one is named.
    let k2 = key("cosign/cosign2.pub");
    let e = verify_payload(&payload, &sig, std::slice::from_ref(&k2), &d).unwrap_err();
    assert!(e.to_string().contains("by no trusted key"), "{e}");
    let p = verify_payload(&payload, &sig, &[k2, k.clone()], &d).unwrap();
    assert_eq!(p.key_id, k.id());
}

#[test]
fn real_cosign_signature_tampered_is_refused() {
    let (payload, sig) = fixture();
    let keys = [key("cosign/cosign.pub")];
    let d = manifest_digest();
    // One flipped byte of the payload (in the digest it names).
    let mut p = payload.clone();
    let at = p.windows(6).position(|w| w == b"634a8f").unwrap();
    p[at] ^= 0x01;
    let e = verify_payload(&p, &sig, &keys, &d).unwrap_err();
    assert!(e.to_string().contains("by no trusted key"), "{e}");
    // One flipped byte of the signature (in the middle of r or s).
    let mut s = base64::engine::general_purpose::STANDARD
        .decode(&sig)
        .unwrap();
    let mid = s.len() / 2;
    s[mid] ^= 0x01;
    let s = base64::engine::general_purpose::STANDARD.encode(s);
    let e = verify_payload(&payload, &s, &keys, &d).unwrap_err();
    assert!(e.to_string().contains("by no trusted key"), "{e}");
    // A valid signature over a payload naming another image.
    let other = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let e = verify_payload(&payload, &sig, &keys, &other).unwrap_err();
    assert!(
        matches!(&e, ImageError::NotVerified { reasons, .. } if reasons.contains("payload names sha256:634a8f")),
        "{e}"
    );
    // Not base64.
    let e = verify_payload(&payload, "%%%", &keys, &d).unwrap_err();
    assert!(e.to_string().contains("not base64"), "{e}");
}

#[test]
fn public_keys_other_than_p256_are_refused() {
    // A P-384 key: cosign keys are P-256.
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let e = PublicKey::from_pem(&k.public_key_pem()).unwrap_err();
    assert!(e.to_string().contains("only P-256"), "{e}");
    assert!(PublicKey::from_pem("no key here").is_err());
}

#[test]
fn key_id_is_the_sha256_of_the_der_spki_as_openssl_writes_it() {
    let path = vouch_testkit::testdata("cosign/cosign.pub");
    let o = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success());
    let want = vouch_image::Digest::of(&o.stdout).to_string();
    assert_eq!(key("cosign/cosign.pub").id(), want);
}

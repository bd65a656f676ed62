//! Key-less cosign image signatures: a real one (made by cosign with a Fulcio certificate
//! for a GitHub login and logged in the public-good Rekor, as containers/image keeps it for
//! its tests: testdata/cosign-keyless, see testdata/SOURCES.md) verified offline against the
//! real public-good trusted_root.json, refused when tampered, and fetched from a real
//! docker-registry over TLS on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use vouch_image::cosign::{KeylessIdentity, verify_keyless_payload};
use vouch_image::{
    ClientOptions, Digest, ImageError, ImageRef, RegistryClient, SignedIdentity, Trust,
    verify_digest_with,
};
use vouch_testkit::read_testdata;

const IDENTITY: &str = "mitr@redhat.com";
const ISSUER: &str = "https://github.com/login/oauth";
const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The layer the signature was pushed as: payload bytes and annotations.
struct Layer {
    payload: Vec<u8>,
    signature: String,
    certificate: String,
    bundle: String,
}

fn layer() -> Layer {
    let raw = read_testdata("cosign-keyless/fulcio-rekor.signature");
    let json = raw.strip_prefix(b"\x00sigstore-json\n").unwrap();
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let a = &v["annotations"];
    Layer {
        payload: STD.decode(v["payload"].as_str().unwrap()).unwrap(),
        signature: a["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap()
            .into(),
        certificate: a["dev.sigstore.cosign/certificate"]
            .as_str()
            .unwrap()
            .into(),
        bundle: a["dev.sigstore.cosign/bundle"].as_str().unwrap().into(),
    }
}

fn digest() -> Digest {
    Digest::of(&read_testdata("cosign-keyless/fulcio-rekor.manifest.json"))
}

fn trusted(identity: &str, issuer: &str) -> Vec<KeylessIdentity> {
    vec![KeylessIdentity::new(&read_testdata("slsa/trusted_root.json"), identity, issuer).unwrap()]
}

fn check(l: &Layer, t: &[KeylessIdentity], d: &Digest) -> Result<String, String> {
    verify_keyless_payload(&l.payload, &l.signature, &l.certificate, &l.bundle, t, d)
        .map(|p| p.key_id)
        .map_err(|e| e.to_string())
}

fn edit_bundle(l: &mut Layer, f: impl FnOnce(&mut serde_json::Value)) {
    let mut b: serde_json::Value = serde_json::from_str(&l.bundle).unwrap();
    f(&mut b);
    l.bundle = serde_json::to_string(&b).unwrap();
}

#[test]
fn the_real_key_less_signature_verifies_offline() {
    let got = check(&layer(), &trusted(IDENTITY, ISSUER), &digest()).unwrap();
    assert_eq!(got, format!("fulcio:{ISSUER}#{IDENTITY}"));
}

#[test]
fn another_identity_issuer_or_trusted_root_is_refused() {
    let e = check(&layer(), &trusted("someone@example.com", ISSUER), &digest()).unwrap_err();
    assert!(e.contains("certificate for \"mitr@redhat.com\""), "{e}");
    let e = check(
        &layer(),
        &trusted(IDENTITY, "https://accounts.google.com"),
        &digest(),
    )
    .unwrap_err();
    assert!(e.contains("from \"https://github.com/login/oauth\""), "{e}");
    let staging = vec![
        KeylessIdentity::new(
            &read_testdata("slsa/trusted_root_staging.json"),
            IDENTITY,
            ISSUER,
        )
        .unwrap(),
    ];
    let e = check(&layer(), &staging, &digest()).unwrap_err();
    assert!(e.contains("not one of the"), "{e}");
    let e = check(&layer(), &[], &digest()).unwrap_err();
    assert!(e.contains("no key-less signer is trusted"), "{e}");
}

#[test]
fn tampered_key_less_signatures_are_refused() {
    let t = trusted(IDENTITY, ISSUER);
    let d = digest();
    // One flipped byte in the payload: the Rekor entry logged another artifact's hash.
    let mut l = layer();
    let at = l.payload.len() / 2;
    l.payload[at] ^= 1;
    let e = check(&l, &t, &d).unwrap_err();
    assert!(e.contains("names another artifact digest"), "{e}");
    // One flipped byte in the signature.
    let mut l = layer();
    let mut sig = STD.decode(&l.signature).unwrap();
    sig[10] ^= 1;
    l.signature = STD.encode(sig);
    let e = check(&l, &t, &d).unwrap_err();
    assert!(e.contains("names another signature"), "{e}");
    // Another real Fulcio certificate (containers/image's other fixture) in its place.
    let mut l = layer();
    l.certificate = String::from_utf8(read_testdata("cosign-keyless/fulcio-cert.pem")).unwrap();
    let e = check(&l, &t, &d).unwrap_err();
    assert!(e.contains("names another certificate"), "{e}");
    // The signed entry timestamp flipped, and the logged index and time changed.
    let mut l = layer();
    edit_bundle(&mut l, |b| {
        let mut set = STD
            .decode(b["SignedEntryTimestamp"].as_str().unwrap())
            .unwrap();
        set[20] ^= 1;
        b["SignedEntryTimestamp"] = STD.encode(set).into();
    });
    let e = check(&l, &t, &d).unwrap_err();
    assert!(e.contains("signed entry timestamp"), "{e}");
    for field in ["logIndex", "integratedTime"] {
        let mut l = layer();
        edit_bundle(&mut l, |b| {
            let n = b["Payload"][field].as_u64().unwrap();
            b["Payload"][field] = (n + 1).into();
        });
        let e = check(&l, &t, &d).unwrap_err();
        assert!(e.contains("signed entry timestamp"), "{field}: {e}");
    }
    // The Rekor bundle removed, or not JSON.
    let mut l = layer();
    l.bundle = String::new();
    let e = check(&l, &t, &d).unwrap_err();
    assert!(e.contains("cosign bundle annotation"), "{e}");
    // Genuine, but for another image.
    let e = check(&layer(), &t, &Digest::of(b"another image")).unwrap_err();
    assert!(e.contains("payload names sha256:0489474d"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_less_signature_in_a_real_registry() {
    use vouch_testkit::registry::{Registry, missing_tools};
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED key_less_signature_in_a_real_registry: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(tmp.path());
    let d = digest();
    let sig = vouch_testkit::testdata("cosign-keyless/fulcio-rekor.signature");
    reg.cosign_copy("cosign-signed/fulcio-rekor-1", d.as_str(), &sig);
    let client = RegistryClient::new(&ClientOptions {
        ca_pem: Some(std::fs::read(reg.ca()).unwrap()),
        ..ClientOptions::default()
    })
    .unwrap();
    let image = ImageRef::parse(&format!("{}/cosign-signed/fulcio-rekor-1@{d}", reg.addr)).unwrap();
    // Signed as 192.168.64.2:5000/cosign-signed/fulcio-rekor-1 (the signer's registry): not
    // this registry's repository, so refused unless this one is declared its mirror.
    let mut trust = Trust {
        keyless: trusted(IDENTITY, ISSUER),
        ..Trust::default()
    };
    let e = verify_digest_with(&client, &image, &d, &trust)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("signed for \"192.168.64.2:5000/cosign-signed/fulcio-rekor-1\""),
        "{e}"
    );
    trust.identity = SignedIdentity::Remap {
        prefix: reg.addr.clone(),
        signed_prefix: "192.168.64.2:5000".into(),
    };
    let ok = verify_digest_with(&client, &image, &d, &trust)
        .await
        .unwrap();
    assert_eq!(ok.signed_by, vec![format!("fulcio:{ISSUER}#{IDENTITY}")]);
    // Another identity is refused, and so is a verifier trusting keys only.
    let other = Trust {
        keyless: trusted("someone@example.com", ISSUER),
        ..trust.clone()
    };
    let e = verify_digest_with(&client, &image, &d, &other)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::NotVerified { .. }), "{e}");
    let keys_only = Trust {
        identity: trust.identity.clone(),
        ..Trust::default()
    };
    let e = verify_digest_with(&client, &image, &d, &keys_only)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("by no trusted key"), "{e}");
}

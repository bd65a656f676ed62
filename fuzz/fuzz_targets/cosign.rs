#![no_main]
//! What a registry answers about an image's cosign signatures: the signature manifest, a
//! simple-signing payload with its base64 signature annotation, image references and digests
//! typed by users, public keys read from PEM or DER; a registry's `WWW-Authenticate` challenge
//! and a Docker config.json / auth.json with credentials.
use libfuzzer_sys::fuzz_target;
use vouch_image::cosign::verify_payload;
use vouch_image::registry::signature_layers;
use vouch_image::{Digest, ImageRef, PublicKey};

fuzz_target!(|data: &[u8]| {
    let _ = signature_layers(data);
    let text = String::from_utf8_lossy(data);
    let _ = vouch_image::auth::parse_challenge(&text);
    let _ = vouch_image::auth::Credentials::from_docker_config(data);
    if let Ok(r) = ImageRef::parse(&text) {
        // What parses prints back to something that parses the same.
        assert_eq!(ImageRef::parse(&r.to_string()).ok(), Some(r));
    }
    let _ = Digest::parse(&text);
    let _ = PublicKey::from_pem(&text);
    let _ = PublicKey::from_spki_der(data);
    // The payload and the annotation split at the first newline.
    let (payload, sig) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..]).to_string()),
        None => (data, String::new()),
    };
    let digest = Digest::of(b"image");
    // No key: every payload is refused, and nothing panics on the way.
    assert!(verify_payload(payload, &sig, &[], &digest).is_err());
});

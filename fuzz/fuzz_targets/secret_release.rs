#![no_main]
//! Issue 17 item 4: what the verifier parses of a secret release request, what the agent
//! parses of the answer, and opening an answer of arbitrary bytes (HPKE decapsulation and
//! AEAD open must refuse, never panic).
use libfuzzer_sys::fuzz_target;
use vouch_core::wire::{SecretPutRequest, SecretReleaseRequest, SecretReleaseResponse};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<SecretReleaseRequest>(data);
    let _ = serde_json::from_slice::<SecretPutRequest>(data);
    if let Ok(r) = serde_json::from_slice::<SecretReleaseResponse>(data) {
        let key = vouch_evidence::ReleaseKey::from_seed(&[7; 32]);
        let _ = key.open(&r.enc, &r.ciphertext, b"info");
    }
    let _ = vouch_evidence::valid_release_key(&String::from_utf8_lossy(data));
});

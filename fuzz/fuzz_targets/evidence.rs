#![no_main]
use libfuzzer_sys::fuzz_target;

// The payload decoder and the software verifier on arbitrary evidence bodies.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = vouch_evidence::decode_payload(s);
    }
    if let Ok(ev) = serde_json::from_slice::<vouch_core::Evidence>(data) {
        let ctx = vouch_evidence::VerifyContext { public_key: &[1; 32], signers: &[] };
        if let Some(v) = vouch_evidence::verifier_for(ev.kind) {
            let _ = v.verify(&ev, &ctx);
        }
    }
});

#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_core::{Nonce, NonceKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Nonce::check(s, &[NonceKey::new([7; 32])], "vouch", 1_000, 60, 5);
    }
});

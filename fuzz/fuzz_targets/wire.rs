#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_core::wire::{AttestRequest, EnrollRequest};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<AttestRequest>(data);
    let _ = serde_json::from_slice::<EnrollRequest>(data);
    let _ = serde_json::from_slice::<vouch_core::SoftwareMeasurements>(data);
});

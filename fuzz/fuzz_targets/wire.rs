#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_core::wire::{AttestRequest, EnrollRequest, EntriesRequest, EntriesSyncResponse};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<AttestRequest>(data);
    let _ = serde_json::from_slice::<EnrollRequest>(data);
    // Issue 13: the entry watch and sync requests (verifier side) and sync answers (agent side).
    let _ = serde_json::from_slice::<EntriesRequest>(data);
    let _ = serde_json::from_slice::<EntriesSyncResponse>(data);
    let _ = serde_json::from_slice::<vouch_core::SoftwareMeasurements>(data);
});

#![no_main]
//! TEE evidence files as `vouch tee verify` and the agent read them: any bytes (raw, text,
//! JSON) decoded for every kind, and as a certificates file; never a panic, and what is
//! decoded stays within the input's bounds.
use libfuzzer_sys::fuzz_target;
use vouch_tee::TeeKind;
use vouch_tee::input::{MAX_INPUT, decode, decode_certs, identify};

fuzz_target!(|data: &[u8]| {
    let _ = identify(data);
    for kind in [
        TeeKind::SevSnp,
        TeeKind::Tdx,
        TeeKind::Sgx,
        TeeKind::Nitro,
        TeeKind::AzSnpVtpm,
        TeeKind::AzTdxVtpm,
    ] {
        if let Ok(d) = decode(kind, data) {
            assert!(d.report.len() <= MAX_INPUT);
        }
    }
    let _ = decode_certs(data);
    // Azure: the evidence JSON and the HCL report inside it, and the runtime data.
    let _ = vouch_tee::azure::Evidence::parse(data);
    let _ = vouch_tee::azure::HclReport::parse(data);
    let _ = vouch_tee::azure::runtime_data(data);
});

#![no_main]
//! SGX/TDX DCAP quotes as an attester could send them: any bytes, never a panic.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_tee::dcap::DcapVerifier;

const ROOT: &[u8] = include_bytes!("../../../shared/testdata/tdx/intel_sgx_root_ca.der");

fn verifier() -> &'static Option<DcapVerifier> {
    static V: OnceLock<Option<DcapVerifier>> = OnceLock::new();
    V.get_or_init(|| DcapVerifier::new(ROOT).ok())
}

fuzz_target!(|data: &[u8]| {
    if let Some(v) = verifier() {
        let _ = v.verify(data, 1_750_809_600);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = vouch_x509::pem_certificates_strict(s);
    }
});

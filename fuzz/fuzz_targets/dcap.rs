#![no_main]
//! SGX/TDX DCAP quotes as an attester could send them, and CRLs and QE identities as an
//! operator's store could hold them: any bytes, never a panic.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_tee::dcap::DcapVerifier;

const ROOT: &[u8] = include_bytes!("../../testdata/tdx/intel_sgx_root_ca.der");

fn root() -> &'static Option<x509_cert::Certificate> {
    static R: OnceLock<Option<x509_cert::Certificate>> = OnceLock::new();
    R.get_or_init(|| vouch_x509::parse(ROOT, "root").ok())
}

fn verifier() -> &'static Option<DcapVerifier> {
    static V: OnceLock<Option<DcapVerifier>> = OnceLock::new();
    V.get_or_init(|| DcapVerifier::new(ROOT).ok())
}

fuzz_target!(|data: &[u8]| {
    if let Some(v) = verifier() {
        let _ = v.verify(data, 1_750_809_600);
    }
    if let Some(root) = root()
        && let Ok(crl) = vouch_x509::verify_crl(data, root, 1_750_809_600)
    {
        let _ = crl.len();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = vouch_x509::pem_certificates_strict(s);
        let _ = vouch_tee::dcap::QeIdentity::parse(s);
    }
});

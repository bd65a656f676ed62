#![no_main]
//! Nitro attestation documents as an enclave could send them: any bytes, never a panic.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_tee::nitro::NitroVerifier;

const ROOT: &str = include_str!("../../testdata/nitro/aws_nitro_root.pem");

fn verifier() -> &'static Option<NitroVerifier> {
    static V: OnceLock<Option<NitroVerifier>> = OnceLock::new();
    V.get_or_init(|| NitroVerifier::new(vouch_x509::pem_certificates(ROOT).first()?).ok())
}

fuzz_target!(|data: &[u8]| {
    if let Some(v) = verifier() {
        let _ = v.verify(data, 1_695_049_200);
    }
});

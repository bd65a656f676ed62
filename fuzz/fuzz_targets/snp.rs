#![no_main]
//! SEV-SNP reports and VEK certificates as an attester could send them, and certificate tables
//! as a host could attach them: any bytes, never a panic. The real sample's chain is the trust
//! anchor, so well-formed inputs reach the signature check.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_tee::snp::{SnpReport, SnpVerifier};

const CHAIN: &str = include_str!("../../testdata/snp/milan_ask_ark_asvk.pem");
const VCEK: &[u8] = include_bytes!("../../testdata/snp/vcek.der");
const REPORT: &[u8] = include_bytes!("../../testdata/snp/report_v2.bin");

fn verifier() -> &'static Option<(SnpVerifier, Vec<Vec<u8>>)> {
    static V: OnceLock<Option<(SnpVerifier, Vec<Vec<u8>>)>> = OnceLock::new();
    V.get_or_init(|| {
        let certs = vouch_x509::pem_certificates(CHAIN);
        // The bundle is ASK, ARK, ASVK.
        let v = SnpVerifier::new(certs.get(1..2)?).ok()?;
        Some((v, certs))
    })
}

fuzz_target!(|data: &[u8]| {
    // The host's certificate table (configfs-tsm auxblob), parsed by the agent.
    if let Ok(t) = vouch_tee::snp::cert_table(data) {
        let _ = vouch_tee::snp::vek_chain(&t);
    }
    let _ = SnpReport::parse(data, false);
    let _ = SnpReport::parse(data, true);
    if let Some((v, certs)) = verifier() {
        // The input as the report (with the real VCEK), and as the VCEK (with the real report).
        let _ = v.verify(data, VCEK, certs, 1_717_200_000);
        let _ = v.verify(REPORT, data, certs, 1_717_200_000);
    }
});

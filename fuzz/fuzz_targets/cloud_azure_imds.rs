#![no_main]
//! `azure_imds` attested documents as an agent could send them: the IMDS JSON, and the raw
//! PKCS#7 inside it. Any bytes, never a panic (the real roots and intermediates in testdata
//! are the trust set).
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_nodeattest::{AzureImdsAttestor, AzureImdsConfig, NodeAttestation, NodeAttestor};

const CERTS: [&str; 4] = [
    include_str!("../../testdata/cloud/azure/certs/baltimore_cybertrust_root.pem"),
    include_str!("../../testdata/cloud/azure/certs/digicert_global_root_g2.pem"),
    include_str!("../../testdata/cloud/azure/certs/microsoft_rsa_tls_ca_01.pem"),
    include_str!("../../testdata/cloud/azure/certs/microsoft_azure_tls_issuing_ca_05_xsign.pem"),
];

fn attestor() -> &'static Option<AzureImdsAttestor> {
    static A: OnceLock<Option<AzureImdsAttestor>> = OnceLock::new();
    A.get_or_init(|| {
        let config = AzureImdsConfig {
            certificates_dir: "/nonexistent".into(),
            allowed_subscriptions: vec![],
            require_nonce: false,
            signer_domains: vec!["metadata.azure.com".into(), "metadata.azure.us".into()],
            max_clock_skew_secs: 300,
        };
        let ders = CERTS
            .iter()
            .flat_map(|p| vouch_x509::pem_certificates(p))
            .collect();
        AzureImdsAttestor::with_certificates(config, ders).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(a) = attestor() else { return };
    let att = NodeAttestation {
        data,
        nonce: "n",
        audience: "vouch",
    };
    let _ = a.attest(&att, 1_650_337_200);
    use base64::Engine as _;
    let json = format!(
        "{{\"encoding\":\"pkcs7\",\"signature\":\"{}\"}}",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let att = NodeAttestation {
        data: json.as_bytes(),
        nonce: "n",
        audience: "vouch",
    };
    let _ = a.attest(&att, 1_650_337_200);
});

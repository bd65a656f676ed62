#![no_main]
//! `aws_iid` attestation data as an agent could send it (JSON with a base64 PKCS#7 or
//! signature): any bytes, never a panic. The real ap-southeast-2 certificates are the trust
//! set, so inputs that reach the PKCS#7 reader find a signer to check against.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_nodeattest::{AwsIidAttestor, AwsIidConfig, NodeAttestation, NodeAttestor};

const RSA: &str = include_str!("../../testdata/cloud/aws/certs/rsa/ap-southeast-2.pem");
const RSA2048: &str = include_str!("../../testdata/cloud/aws/certs/rsa2048/ap-southeast-2.pem");

fn attestor() -> &'static Option<AwsIidAttestor> {
    static A: OnceLock<Option<AwsIidAttestor>> = OnceLock::new();
    A.get_or_init(|| {
        let certs = [RSA, RSA2048]
            .iter()
            .flat_map(|p| vouch_x509::pem_certificates(p))
            .map(|der| ("ap-southeast-2".to_string(), der))
            .collect();
        let config = AwsIidConfig {
            certificates_dir: "/nonexistent".into(),
            allowed_accounts: vec![],
            max_clock_skew_secs: 300,
        };
        AwsIidAttestor::with_certificates(config, certs).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some(a) = attestor() {
        let att = NodeAttestation {
            data,
            nonce: "n",
            audience: "vouch",
        };
        let _ = a.attest(&att, 1_772_323_200);
    }
    // The raw PKCS#7 path, without the JSON and base64 around it.
    if let Some(a) = attestor() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let json = format!("{{\"rsa2048\":\"{b64}\"}}");
        let att = NodeAttestation {
            data: json.as_bytes(),
            nonce: "n",
            audience: "vouch",
        };
        let _ = a.attest(&att, 1_772_323_200);
    }
});

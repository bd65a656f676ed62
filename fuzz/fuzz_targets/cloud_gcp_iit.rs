#![no_main]
//! `gcp_iit` tokens as an agent could send them: any bytes, never a panic (Google's 2021 keys
//! from testdata are the trust set).
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_nodeattest::{GcpIitAttestor, GcpIitConfig, NodeAttestation, NodeAttestor};

const KEYS: &[u8] = include_bytes!("../../testdata/cloud/gcp/google_oauth2_v3_certs_2021.json");

fn attestor() -> &'static Option<GcpIitAttestor> {
    static A: OnceLock<Option<GcpIitAttestor>> = OnceLock::new();
    A.get_or_init(|| {
        let config = GcpIitConfig {
            keys_dir: "/nonexistent".into(),
            allowed_projects: vec![],
            bind_nonce: false,
            max_clock_skew_secs: 300,
        };
        GcpIitAttestor::with_key_files(config, vec![("keys.json".into(), KEYS.to_vec())]).ok()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some(a) = attestor() {
        let att = NodeAttestation {
            data,
            nonce: "n",
            audience: "https://subscription.rhsm.redhat.com:443/subscription",
        };
        let _ = a.attest(&att, 1_616_598_000);
    }
});

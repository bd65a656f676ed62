#![no_main]
//! Revocation records and heads as they arrive from gossip peers: any bytes, checked against a
//! trust bundle, never a panic.
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use vouch_identity::{SvidCa, TrustDomain};
use vouch_rp::{AllowedIds, RevocationSet, SpiffeVerifier};

fn bundle() -> Option<Arc<SpiffeVerifier>> {
    static B: OnceLock<Option<Arc<SpiffeVerifier>>> = OnceLock::new();
    B.get_or_init(|| {
        let td = TrustDomain::parse("vouch.local").ok()?;
        let ca = SvidCa::generate(&td, 3600, 1_700_000_000).ok()?;
        SpiffeVerifier::new(&td, &[ca.cert_der().to_vec()], AllowedIds::AnyInTrustDomain).ok()
    })
    .clone()
}

fuzz_target!(|data: &str| {
    if let Some(b) = bundle() {
        let mut set = RevocationSet::new(b);
        let _ = set.insert_record(data, 1_700_000_100);
        let _ = set.insert_head(data, 1_700_000_100);
        let _ = set.view();
    }
});

//! The appraisal pipeline alone on a temporary SQLite store, with real measurements of this
//! machine: `cargo run --release -p vouch-verifier --example pipeline -- [N]`.

use std::sync::Arc;

use vouch_evidence::{CollectConfig, SoftwareCollector};
use vouch_store::SqliteStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("vouch.db")).await?);
    let m = SoftwareCollector::new(CollectConfig {
        workload_name: "bench".into(),
        exe: std::env::current_exe()?,
        root: "/".into(),
        ..CollectConfig::default()
    })
    .collect("", vouch_verifier::unix_now())?;
    let b = vouch_verifier::bench::pipeline(store, m, n).await?;
    let raw = b.raw_signature.as_secs_f64();
    let row = |name: &str, d: std::time::Duration| {
        println!(
            "{name:<40} {:>9.1} µs  {:>6.2}x the raw signature work",
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() / raw
        );
    };
    println!(
        "{} attestations per mode, payload {} bytes",
        b.n, b.payload_bytes
    );
    row("raw signature work", b.raw_signature);
    row("appraise, repeated claims", b.appraise_repeat);
    println!(
        "  parts by digest ({} bytes): {:.1} µs, {:.2}x its own raw signature work ({:.1} µs)",
        b.held_payload_bytes,
        b.appraise_held.as_secs_f64() * 1e6,
        b.appraise_held.as_secs_f64() / b.raw_signature_held.as_secs_f64(),
        b.raw_signature_held.as_secs_f64() * 1e6
    );
    row("appraise, changed claims", b.appraise_changed);
    row(
        "appraise + durable record, one at a time",
        b.appraise_and_record,
    );
    row("policy alone", b.policy);
    Ok(())
}

//! Durable attestation writes per second, with and without group commit:
//!
//! ```sh
//! cargo run --release -p vouch-store --example records_bench -- [sqlite|postgres] \
//!     [--records N] [--concurrency C] [--claims-bytes B] [--no-group] [--max-batch M]
//! ```
//!
//! SQLite goes to a fresh file in a temporary directory (WAL, `synchronous=FULL`); PostgreSQL
//! to `VOUCH_TEST_DATABASE_URL` or a throwaway server (`fsync=on`) started for the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_store::{PgStore, RecordsBenchConfig, SqliteStore, Store, WriteOptions, bench_records};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "sqlite".into());
    let mut cfg = RecordsBenchConfig::default();
    let mut write = WriteOptions::default();
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a number")
        };
        match a.as_str() {
            "--records" => cfg.records = num(),
            "--concurrency" => cfg.concurrency = num(),
            "--claims-bytes" => cfg.claims_bytes = num(),
            "--max-batch" => write.max_batch = num(),
            "--no-group" => write.group_commit = false,
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut _pg = None;
    let (store, stats): (Arc<dyn Store>, Box<dyn Fn() -> vouch_store::CommitStats>) =
        match backend.as_str() {
            "sqlite" => {
                let s = SqliteStore::open_with(&dir.path().join("vouch.db"), write)
                    .await
                    .unwrap();
                let s2 = s.clone();
                (Arc::new(s), Box::new(move || s2.commit_stats()))
            }
            "postgres" => {
                let pg = vouch_testkit::Postgres::start();
                let s = PgStore::connect_with(&pg.fresh_database(), write)
                    .await
                    .unwrap();
                _pg = Some(pg);
                let s2 = s.clone();
                (Arc::new(s), Box::new(move || s2.commit_stats()))
            }
            other => panic!("unknown backend {other} (sqlite or postgres)"),
        };
    let r = bench_records(store, &cfg).await.unwrap();
    let st = stats();
    println!(
        "{backend} group_commit={} records={} concurrency={} claims={} B: {:.0} records/s, \
         p50 {} µs, p99 {} µs; {} transactions ({:.1} records each, largest {}); claim parts \
         sent {}, known stored {}",
        write.group_commit,
        r.records,
        cfg.concurrency,
        r.claims_bytes,
        r.per_sec,
        r.p50_us,
        r.p99_us,
        st.transactions,
        st.records as f64 / st.transactions.max(1) as f64,
        st.largest_batch,
        st.parts_sent,
        st.parts_known,
    );
}

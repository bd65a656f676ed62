//! A measurement of durable attestation writes: [`bench_records`] drives
//! [`Store::record_attestation`] from many concurrent callers with attestation-sized records,
//! as the verifier does under load, and reports records per second and per-call latency. Run
//! it on a store opened with and without group commit ([`WriteOptions`](crate::WriteOptions))
//! to compare.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::{AttestationRecord, Result, Store};

/// What [`bench_records`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsBenchConfig {
    /// Attestation records to write in all.
    pub records: usize,
    /// Concurrent callers (each awaits its record before it writes the next).
    pub concurrency: usize,
    /// Roughly how many bytes of claims JSON each record carries (software evidence of a real
    /// machine is ~30 KB: files, processes, packages).
    pub claims_bytes: usize,
}

impl Default for RecordsBenchConfig {
    fn default() -> Self {
        Self {
            records: 10_000,
            concurrency: 64,
            claims_bytes: 30_000,
        }
    }
}

/// What [`bench_records`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsBench {
    /// Records written (each acknowledged, so committed).
    pub records: u64,
    /// Bytes of claims JSON per record.
    pub claims_bytes: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Records per second.
    pub per_sec: f64,
    /// Median latency of one `record_attestation` call, µs.
    pub p50_us: u64,
    /// 99th-percentile latency, µs.
    pub p99_us: u64,
}

/// Write `cfg.records` attestation records into `store` from `cfg.concurrency` concurrent
/// tasks, each record with its own fresh nonce and realistic claims (see
/// [`RecordsBenchConfig`]), and time them. It enrolls a few nodes of its own first (join
/// tokens and keys unique to this run, so it can run twice on one store). The figure is for
/// durable writes: a record counts once its call returned, i.e. once it committed.
///
/// Must run inside a multi-threaded tokio runtime for the callers to run in parallel (as the
/// verifier's request handlers do). Fails on the first store error.
pub async fn bench_records(
    store: Arc<dyn Store>,
    cfg: &RecordsBenchConfig,
) -> Result<RecordsBench> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let concurrency = cfg.concurrency.max(1);
    let node_count = concurrency.min(16);
    let mut nodes = Vec::with_capacity(node_count);
    for n in 0..node_count {
        let token = format!("bench-{run}-{n}");
        store
            .create_join_token(&token, None, 0, u64::MAX / 2)
            .await?;
        let key = crate::rows::hex_sha256(token.as_bytes());
        let e = store.enroll(&token, key.as_bytes(), "bench", 1).await?;
        nodes.push(e);
    }
    let claims = Arc::new(claims_of_size(cfg.claims_bytes));
    let claims_bytes = claims.to_string().len();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(cfg.records)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        // Worker w writes records w, w + concurrency, …
        let count = cfg.records / concurrency + usize::from(w < cfg.records % concurrency);
        let node = nodes[w % node_count].clone();
        let (store, claims, latencies, run) = (
            store.clone(),
            claims.clone(),
            latencies.clone(),
            run.clone(),
        );
        tasks.spawn(async move {
            let mut mine = Vec::with_capacity(count);
            let mut rec = AttestationRecord {
                id: String::new(),
                workload_id: format!("{}/bench-{w}", node.node_id),
                node_id: node.node_id.clone(),
                key_id: node.key_id.clone(),
                evidence_kind: "software".into(),
                evidence_sha256: String::new(),
                claims: (*claims).clone(),
                status: "affirming".into(),
                trust_vector: json!({"instance_identity": 2, "executables": 2}),
                reasons: vec![],
                policy_id: "default".into(),
                policy_version: 1,
                result: "e".repeat(900),
                created_at: 0,
                expires_at: 0,
            };
            for k in 0..count {
                let at = 1_000 + u64::try_from(k).unwrap_or(0);
                rec.id = format!("bench-{run}-{w}-{k}");
                rec.evidence_sha256 = crate::rows::hex_sha256(rec.id.as_bytes());
                rec.claims["evidence"]["collected_at"] = json!(at);
                rec.created_at = at;
                rec.expires_at = at + 300;
                let nonce = format!("bench-{run}-{w}-{k}");
                let t = Instant::now();
                store
                    .record_attestation(&rec, at + 600, Some((&nonce, at + 120)))
                    .await?;
                mine.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            latencies.lock().await.extend(mine);
            Ok::<(), crate::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(r) => r?,
            // A worker panicked: a bug here, so the panic goes on (nothing aborts them).
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed();
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    let pct = |p: usize| {
        lat.get(lat.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let records = u64::try_from(lat.len()).unwrap_or(u64::MAX);
    Ok(RecordsBench {
        records,
        claims_bytes,
        elapsed,
        per_sec: records as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: pct(50),
        p99_us: pct(99),
    })
}

/// Claims shaped like software evidence's (files, processes, packages), about `bytes` long.
fn claims_of_size(bytes: usize) -> Value {
    let mut files = serde_json::Map::new();
    let mut processes = Vec::new();
    let mut packages = Vec::new();
    let mut i = 0usize;
    let mut doc = json!({});
    loop {
        files.insert(
            format!("/etc/app/conf.d/{i:04}.conf"),
            json!({"sha256": crate::rows::hex_sha256(&i.to_le_bytes()), "signers": [], "error": null}),
        );
        processes.push(
            json!({"pid": 1000 + i, "name": format!("worker-{i}"), "exe": "/usr/bin/worker"}),
        );
        packages.push(json!({"name": format!("lib{i}"), "version": format!("1.{i}.0-1")}));
        doc = json!({
            "evidence": {"kind": "software", "key_id": "ak-bench", "signature_verified": true,
                         "hardware_backed": false, "collected_at": 0},
            "hostname": "bench",
            "workload": {"name": "bench", "exe_path": "/usr/bin/bench", "exe_sha256": "00".repeat(32)},
            "files": files,
            "os": {"id": "debian", "version_id": "12"},
            "kernel": "6.1.0",
            "processes": processes,
            "listening": [],
            "packages": packages,
        });
        i += 1;
        if i.is_multiple_of(8) && doc.to_string().len() >= bytes {
            return doc;
        }
        if i > 100_000 {
            return doc;
        }
    }
}

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
/// tasks, each record with its own fresh nonce, and time them. Each task is one machine of a
/// fleet attesting again and again, with claims that repeat as a real fleet's do: the machines
/// run one of four images (the same `packages` and `files` on a quarter of them each), each
/// has its own process table and listening sockets, and one attestation in ten sees its
/// process table change; `collected_at` is new every time. It enrolls a few nodes of its own first (join
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
    let images: Arc<Vec<Value>> = Arc::new(
        (0..IMAGES)
            .map(|img| image_claims(cfg.claims_bytes, img))
            .collect(),
    );
    let claims_bytes = machine_claims(&images, cfg.claims_bytes, 0)
        .to_string()
        .len();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(cfg.records)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        // Worker w writes records w, w + concurrency, …
        let count = cfg.records / concurrency + usize::from(w < cfg.records % concurrency);
        let node = nodes[w % node_count].clone();
        let (store, images, latencies, run) = (
            store.clone(),
            images.clone(),
            latencies.clone(),
            run.clone(),
        );
        let bytes = cfg.claims_bytes;
        tasks.spawn(async move {
            let mut mine = Vec::with_capacity(count);
            let mut rec = AttestationRecord {
                id: String::new(),
                workload_id: format!("{}/bench-{w}", node.node_id),
                node_id: node.node_id.clone(),
                key_id: node.key_id.clone(),
                evidence_kind: "software".into(),
                evidence_sha256: String::new(),
                claims: machine_claims(&images, bytes, w),
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
                // Every CHANGE_EVERY-th attestation of a machine sees its process table
                // change: a process appears, and at the next change it goes.
                if k > 0
                    && k.is_multiple_of(CHANGE_EVERY)
                    && let Some(ps) = rec.claims["processes"].as_array_mut()
                {
                    if k.is_multiple_of(2 * CHANGE_EVERY) {
                        ps.pop();
                    } else {
                        ps.push(
                            json!({"pid": 90_000 + k, "name": "sshd", "exe": "/usr/sbin/sshd"}),
                        );
                    }
                }
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

/// Images (package lists and configuration files) in the simulated fleet: the machines of a
/// fleet run a few images, so many of them send the same `packages` and `files`.
const IMAGES: usize = 4;

/// Every this many attestations a machine's process table changes (10 %, `vouch bench load`'s
/// default `--changed-percent`); between changes it repeats.
const CHANGE_EVERY: usize = 10;

/// The part of an image's claims every machine running it shares, at about `bytes` of claims
/// per machine: `files` ~20 % of them and `packages` ~45 % (a few entries differ from image to
/// image: different versions, different configuration).
fn image_claims(bytes: usize, image: usize) -> Value {
    let mut files = serde_json::Map::new();
    let mut len = 0;
    let mut i = 0usize;
    while len < bytes / 5 {
        let path = format!("/etc/app/conf.d/{i:04}.conf");
        let seed = if i.is_multiple_of(8) {
            i + 1_000_000 * image
        } else {
            i
        };
        let v = json!({"sha256": crate::rows::hex_sha256(&seed.to_le_bytes()), "signers": [], "error": null});
        len += path.len() + v.to_string().len() + 4;
        files.insert(path, v);
        i += 1;
    }
    let mut packages = serde_json::Map::new();
    let (mut len, mut i) = (0, 0usize);
    while len < bytes * 45 / 100 {
        let name = format!("lib{i}-common");
        let version = format!("1.{i}.{}-1", if i.is_multiple_of(16) { image } else { 0 });
        len += name.len() + version.len() + 6;
        packages.insert(name, json!(version));
        i += 1;
    }
    json!({
        "evidence": {"kind": "software", "key_id": "ak-bench", "signature_verified": true,
                     "hardware_backed": false, "collected_at": 0},
        "workload": {"name": "bench", "exe_path": "/usr/bin/bench", "exe_sha256": "00".repeat(32)},
        "files": files,
        "os": {"id": "debian", "version_id": "12"},
        "kernel": "6.1.0",
        "packages": packages,
    })
}

/// The claims of machine `m`, shaped like software evidence's: its image's (`m % IMAGES`)
/// with its own host name, process table (~30 % of `bytes`, its own pids) and listening
/// sockets.
fn machine_claims(images: &[Value], bytes: usize, m: usize) -> Value {
    let mut c = images
        .get(m % IMAGES.max(1))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut processes = Vec::new();
    let (mut len, mut i) = (0, 0usize);
    while len < bytes * 3 / 10 {
        let p = json!({"pid": 1000 + 37 * m + i, "name": format!("worker-{i}"), "exe": "/usr/bin/worker"});
        len += p.to_string().len() + 1;
        processes.push(p);
        i += 1;
    }
    let listening: Vec<Value> = (0..8)
        .map(|i| json!({"proto": "tcp", "address": "0.0.0.0", "port": 8000 + i + m % 3}))
        .collect();
    c["hostname"] = json!(format!("node-{m}"));
    c["processes"] = json!(processes);
    c["listening"] = json!(listening);
    c
}

//! `vouch bench scale` (issue 13 item 5): the verifier on a store holding N workloads and N
//! registration entries (bulk-filled), against the same measurements at 1,000: resident memory
//! per workload, start-up time, attestation and SVID cost; then an entry change reaching
//! watching agents (time to the last one told) and an agent holding 10,000 entries syncing
//! incrementally. Absolute figures are printed; nothing is asserted.

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::Digest as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_agent::{EntryMirror, VerifierClient, signed_entries_request};
use vouch_core::wire::{SvidRequest, svid_signing_input};
use vouch_evidence::AgentKey;
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_server::{ServerConfig, unix_now};
use vouch_store::{SqliteStore, Store};

use super::cluster::{Cluster, Template, full_path, quantile};
use crate::cli::ScaleArgs;

/// Workloads per node in the filled store.
const PER_NODE: usize = 10;
/// Distinct uids the filler entries spread over.
const UIDS: usize = 65_536;
/// Entries per bulk transaction.
const ENTRY_CHUNK: usize = 50_000;

/// What one store size measured.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Size {
    pub(super) workloads: usize,
    entries: usize,
    fill_s: f64,
    pub(super) startup_ms: f64,
    rss_verifier_bytes: u64,
    rss_process_bytes: u64,
    pub(super) bytes_per_workload_verifier: f64,
    bytes_per_workload_process: f64,
    pub(super) attest_p50_us: f64,
    pub(super) svid_p50_us: f64,
    pub(super) watchers: usize,
    pub(super) watch_last_ms: f64,
    watch_p50_ms: f64,
    agent_entries: usize,
    full_sync_ms: f64,
    full_sync_entries: usize,
    incremental_sync_ms: f64,
    incremental_sync_entries: usize,
}

/// Both sizes of `a` (the large one first), each on a temporary store of its own.
pub(super) async fn both_sizes(a: &ScaleArgs) -> Result<Vec<Size>> {
    raise_fd_limit();
    let base = std::env::temp_dir().join(format!("vouch-scale-{}", std::process::id()));
    let mut sizes = Vec::new();
    // The large store first, so its memory is measured in a process that has not yet
    // allocated for another verifier.
    for (n, watchers) in [(a.workloads, a.watchers), (a.baseline, a.watchers)] {
        let dir = base.join(n.to_string());
        std::fs::create_dir_all(&dir)?;
        let r = one_size(a, n, watchers, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        sizes.push(r.with_context(|| format!("at {n} workloads"))?);
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(sizes)
}

/// Run `vouch bench scale`.
pub async fn run(a: ScaleArgs, json: bool) -> Result<ExitCode> {
    let sizes = both_sizes(&a).await?;
    if json {
        crate::output::json(&sizes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (big, small) = (&sizes[0], &sizes[1]);
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
    println!(
        "{:<58} {:>14} {:>14} {:>7}",
        "measurement",
        format!("{}", big.workloads),
        format!("{}", small.workloads),
        "ratio"
    );
    let row = |name: &str, x: f64, y: f64, unit: &str| {
        println!(
            "{:<58} {:>14} {:>14} {:>7.2}",
            name,
            format!("{x:.1} {unit}"),
            format!("{y:.1} {unit}"),
            ratio(x, y)
        );
    };
    row(
        "fill (bulk insert, workloads + entries)",
        big.fill_s,
        small.fill_s,
        "s",
    );
    row(
        "verifier start-up (migrations, TLS, entry index)",
        big.startup_ms,
        small.startup_ms,
        "ms",
    );
    // The baseline runs second, in memory the large run freed: its RSS says nothing.
    let alone = |name: &str, x: f64, unit: &str| {
        println!(
            "{name:<58} {:>14} {:>14} {:>7}",
            format!("{x:.1} {unit}"),
            "-",
            "-"
        );
    };
    alone(
        "verifier RSS per workload (start-up + warm, upper bound)",
        big.bytes_per_workload_verifier,
        "B",
    );
    alone(
        "process RSS per workload (fill included, upper bound)",
        big.bytes_per_workload_process,
        "B",
    );
    row(
        "attestation, full HTTPS path, p50",
        big.attest_p50_us,
        small.attest_p50_us,
        "µs",
    );
    row(
        "X.509-SVID request (entry match + issue), p50",
        big.svid_p50_us,
        small.svid_p50_us,
        "µs",
    );
    row(
        &format!("entry change to the last of {} watchers", big.watchers),
        big.watch_last_ms,
        small.watch_last_ms,
        "ms",
    );
    row(
        "entry change to a watcher, p50",
        big.watch_p50_ms,
        small.watch_p50_ms,
        "ms",
    );
    row(
        &format!("full sync of an agent's {} entries", big.agent_entries),
        big.full_sync_ms,
        small.full_sync_ms,
        "ms",
    );
    row(
        "incremental sync after one change",
        big.incremental_sync_ms,
        small.incremental_sync_ms,
        "ms",
    );
    println!(
        "entries sent: full sync {} / incremental {} (at {}), {} / {} (at {})",
        big.full_sync_entries,
        big.incremental_sync_entries,
        big.workloads,
        small.full_sync_entries,
        small.incremental_sync_entries,
        small.workloads
    );
    Ok(ExitCode::SUCCESS)
}

async fn one_size(a: &ScaleArgs, n: usize, watchers: usize, dir: &Path) -> Result<Size> {
    let mut out = Size {
        workloads: n,
        entries: n + a.agent_entries,
        watchers,
        agent_entries: a.agent_entries,
        ..Size::default()
    };
    let rss_start = rss_bytes();
    // Fill the store the verifier will open.
    let db = ServerConfig {
        data_dir: dir.join("r0"),
        ..ServerConfig::default()
    }
    .database_path();
    let t = Instant::now();
    {
        let store = SqliteStore::open(&db).await?;
        let nodes = n.div_ceil(PER_NODE);
        let now = unix_now();
        store.fill_for_scale(nodes, n, now, now + 86_400).await?;
        for start in (0..n).step_by(ENTRY_CHUNK) {
            let chunk = (start..(start + ENTRY_CHUNK).min(n))
                .map(|i| {
                    entry(
                        &format!("scale-{i}"),
                        &format!("spiffe://vouch.local/scale/{i}"),
                        &format!("scale-n{}", i % nodes),
                        i % UIDS,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            store.add_entries(&chunk).await?;
        }
    }
    out.fill_s = t.elapsed().as_secs_f64();
    let rss_before = rss_bytes();

    let t = Instant::now();
    let cluster = Cluster::start(dir, 1, None, |c| {
        c.max_connections = watchers + 256;
        c.max_connections_per_client = 0;
        c.max_entry_watchers = watchers + 16;
    })
    .await?;
    out.startup_ms = t.elapsed().as_secs_f64() * 1e3;
    let result = measure(a, &cluster, dir, &mut out, rss_start, rss_before).await;
    cluster.shutdown().await;
    result?;
    Ok(out)
}

async fn measure(
    a: &ScaleArgs,
    cluster: &Cluster,
    dir: &Path,
    out: &mut Size,
    rss_start: u64,
    rss_before: u64,
) -> Result<()> {
    let n = out.workloads.max(1) as f64;
    let template = Template::enroll(cluster, dir).await?;
    let key = template.agent.key();
    let key_id = template.agent.enrollment().key_id.clone();
    let node = cluster
        .store
        .agent_key(&key_id)
        .await?
        .context("bench key not enrolled")?
        .node_id;
    // The agent's own entries, one per uid on its node.
    let mine = (0..a.agent_entries)
        .map(|k| {
            entry(
                &format!("bench-{k}"),
                &format!("spiffe://vouch.local/bench/{k}"),
                &node,
                k,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    cluster.store.add_entries(&mine).await?;
    drop(mine);
    let clients = cluster.clients()?;
    let c = clients.first().context("no client")?;

    // SVIDs: one request signed by the agent, matching one entry among all.
    let leaf = rcgen::KeyPair::generate()?;
    let pk = B64.encode(rcgen::PublicKeyData::subject_public_key_info(&leaf));
    let selectors = vec![format!("unix:uid:{}", 7 % a.agent_entries.max(1))];
    let svid_req = || SvidRequest {
        signature: key.sign_b64(&svid_signing_input(&key_id, "bench", &pk, &selectors)),
        key_id: key_id.clone(),
        workload: "bench".into(),
        public_key: pk.clone(),
        selectors: selectors.clone(),
    };
    let first = c.svid(&svid_req()).await?;
    anyhow::ensure!(first.svids.len() == 1, "{} SVIDs", first.svids.len());
    let rss_warm = rss_bytes();
    out.rss_verifier_bytes = rss_warm.saturating_sub(rss_before);
    out.rss_process_bytes = rss_warm.saturating_sub(rss_start);
    out.bytes_per_workload_verifier = out.rss_verifier_bytes as f64 / n;
    out.bytes_per_workload_process = out.rss_process_bytes as f64 / n;

    let mut svid = Vec::with_capacity(a.n);
    for _ in 0..a.n {
        let req = svid_req();
        let t = Instant::now();
        c.svid(&req).await?;
        svid.push(t.elapsed());
    }
    svid.sort();
    out.svid_p50_us = quantile(&svid, 0.5).as_secs_f64() * 1e6;
    let attest = full_path(&clients, &template, a.n, 1, false).await?;
    out.attest_p50_us = attest.quantile(0.5).as_secs_f64() * 1e6;

    // The agent's entries: in full, then after one change only the change.
    let mut mirror = EntryMirror::default();
    let t = Instant::now();
    let full = mirror.sync(c, key, &key_id).await?;
    out.full_sync_ms = t.elapsed().as_secs_f64() * 1e3;
    out.full_sync_entries = mirror.len();
    anyhow::ensure!(full.full, "the first sync is in full");

    watch_spread(a, cluster, c, &dir.join("r0"), out).await?;

    let t = Instant::now();
    let before = mirror.len();
    let r = mirror.sync(c, key, &key_id).await?;
    out.incremental_sync_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(!r.full, "the second sync is incremental");
    out.incremental_sync_entries = mirror.len().saturating_sub(before).max(1);
    Ok(())
}

/// `watchers` agents (each its own enrolled key) hold `POST /v1/entries/watch` open; one entry
/// is added through the management API; the time from the request to each answer.
async fn watch_spread(
    a: &ScaleArgs,
    cluster: &Cluster,
    c: &VerifierClient,
    data_dir: &Path,
    out: &mut Size,
) -> Result<()> {
    let store = cluster.store.clone();
    let mut keys = Vec::with_capacity(out.watchers);
    for i in 0..out.watchers {
        let token = vouch_server::create_join_token(store.as_ref(), 600, None).await?;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let key = AgentKey::generate()?;
        let e = store
            .enroll(&hash, key.public_key(), &format!("watcher-{i}"), unix_now())
            .await?;
        keys.push((Arc::new(key), e.key_id));
    }
    let rev = store.revision(vouch_store::ENTRIES_REVISION).await?;
    let mut tasks = Vec::with_capacity(keys.len());
    for (key, key_id) in keys {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let req = signed_entries_request(&key, "watch", &key_id, rev);
            let r = c.entries_watch(&req, Duration::from_secs(120)).await?;
            let at = Instant::now();
            anyhow::ensure!(r.changed, "a watch timed out before the change");
            Ok::<_, anyhow::Error>(at)
        }));
    }
    // Every watch waiting (a watch answers only on the change, so waiting for the gauge).
    let read_token = std::fs::read_to_string(data_dir.join("keys/read.token"))?;
    let admin = std::fs::read_to_string(data_dir.join("keys/admin.token"))?;
    let http = http_client(cluster)?;
    let base = &cluster.running.first().context("no replica")?.base_url;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = http
            .get(format!("{base}/metrics"))
            .bearer_auth(read_token.trim())
            .send()
            .await?
            .text()
            .await?;
        let waiting = m
            .lines()
            .find_map(|l| l.strip_prefix("vouch_entry_watchers "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if waiting >= out.watchers {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {waiting} of {} watchers waiting",
            out.watchers
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let start = Instant::now();
    let res = http
        .post(format!("{base}/v1/entries"))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({
            "spiffe_id": "spiffe://vouch.local/bench/changed",
            "selectors": [format!("unix:uid:{}", a.agent_entries + 1)],
        }))
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "entry not created: {}",
        res.status()
    );
    let mut told = Vec::with_capacity(tasks.len());
    for t in tasks {
        told.push(
            t.await
                .context("watch task")??
                .saturating_duration_since(start),
        );
    }
    told.sort();
    out.watch_last_ms = told.last().copied().unwrap_or_default().as_secs_f64() * 1e3;
    out.watch_p50_ms = quantile(&told, 0.5).as_secs_f64() * 1e3;
    Ok(())
}

fn http_client(cluster: &Cluster) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if let Some(p) = &cluster.ca_cert {
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&std::fs::read(p)?)?);
    }
    Ok(b.build()?)
}

/// An entry for `spiffe_id` on node `node` for uid `uid`.
fn entry(id: &str, spiffe_id: &str, node: &str, uid: usize) -> Result<Entry> {
    Ok(Entry::new(
        id.into(),
        &SpiffeId::parse(spiffe_id)?,
        vec![
            Selector::parse(&format!("vouch:node:{node}"))?,
            Selector::parse(&format!("unix:uid:{uid}"))?,
        ],
        3600,
        unix_now(),
    )?)
}

/// Resident set size of this process, bytes (`/proc/self/statm`).
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Two sockets per watcher in one process: raise the open-file limit to its hard maximum.
fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

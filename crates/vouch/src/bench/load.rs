//! `vouch bench load`: a fleet of simulated agents against one or more verifiers.
//!
//! Each simulated agent is what a real one is on the wire: its own Ed25519 key, enrolled with
//! its own one-time join token through `POST /v1/enroll`; its own [`VerifierClient`] (so its
//! own connection pool: one keep-alive HTTPS connection per agent, as a fleet of machines
//! would hold, not a shared pool multiplexing many agents over a few connections); and a
//! schedule: the first attestation at a random point of the first interval, then one every
//! interval ± jitter. An attestation is `POST /v1/challenge`, evidence signed over this
//! machine's real measurements with the new nonce, `POST /v1/attest`. A chosen share of them
//! carries changed claims (a process appears or goes); the rest repeat the agent's previous
//! claims with only the nonce and time new. Latencies (challenge to result, as the agent sees
//! them) go into an HDR histogram.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vouch_agent::{AgentError, VerifierClient};
use vouch_core::SoftwareMeasurements;
use vouch_core::wire::{AttestRequest, EnrollRequest, enroll_signing_input};
use vouch_evidence::{AgentKey, CollectConfig, SoftwareCollector, sign_software_evidence};
use vouch_server::{ServerConfig, unix_now};
use vouch_store::Store;

use super::cluster::{Cluster, allow_executable, measurements_for};
use crate::cli::LoadArgs;
use crate::output;

/// `10s`, `500ms`, `2m`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(v),
        "ms" => Duration::from_millis(v),
        "m" => Duration::from_secs(v.saturating_mul(60)),
        "h" => Duration::from_secs(v.saturating_mul(3600)),
        _ => anyhow::bail!("{s:?}: unknown unit {unit:?} (ms, s, m, h)"),
    })
}

/// A small, fast generator for schedules and coin flips (not for keys), seeded from the OS.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(u64::from_le_bytes(vouch_server::random_bytes::<8>()))
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One simulated agent.
struct SimAgent {
    client: VerifierClient,
    key: AgentKey,
    key_id: String,
    /// 0: the template's claims; n > 0: the template plus one process numbered n.
    variant: u64,
    /// The parts the verifier said it holds, sent by digest while unchanged (as an agent does).
    held: std::collections::BTreeMap<String, String>,
    /// The nonce the last result gave for the next attestation.
    next_nonce: Option<vouch_core::wire::ChallengeResponse>,
}

/// What the agents measured, shared by all of them.
struct Stats {
    latency: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    changed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    statuses: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn new() -> Result<Self> {
        Ok(Self {
            // 1 µs to one hour, three significant digits.
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            ok: AtomicU64::new(0),
            changed: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            statuses: Mutex::new(BTreeMap::new()),
        })
    }

    fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_default() += 1;
    }

    fn errors(&self) -> u64 {
        let m = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        m.values().sum()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        h.value_at_quantile(q) as f64 / 1e3
    }
}

/// The stable name of what went wrong.
fn error_kind(e: &anyhow::Error) -> String {
    match e.downcast_ref::<AgentError>() {
        Some(AgentError::Refused { kind, .. }) => kind.as_str().to_string(),
        Some(AgentError::Unreachable { source, .. }) if source.is_timeout() => "timeout".into(),
        Some(AgentError::Unreachable { source, .. }) if source.is_connect() => "connect".into(),
        Some(AgentError::Unreachable { .. }) => "transport".into(),
        Some(AgentError::Protocol(_)) => "protocol".into(),
        Some(_) => "agent".into(),
        None => "other".into(),
    }
}

/// Raise the soft limit of open files to the hard one: every agent holds a socket (and, with
/// in-process verifiers, the server holds the other end).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a zeroed struct they fill or read; no memory is shared.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn progress(len: u64, hidden: bool, template: &str) -> indicatif::ProgressBar {
    let target = if hidden || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressDrawTarget::hidden()
    } else {
        indicatif::ProgressDrawTarget::stderr()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Where the agents go, and the store their join tokens are made in.
struct Targets {
    urls: Vec<String>,
    ca: Option<PathBuf>,
    store: Arc<dyn Store>,
    cluster: Option<Cluster>,
}

async fn targets(args: &LoadArgs, dir: &std::path::Path, longest: Duration) -> Result<Targets> {
    if args.targets.is_empty() {
        let agents = args.agents;
        let keep = longest.as_secs() + 15;
        let cluster = Cluster::start(dir, args.replicas, args.database_url.as_deref(), |c| {
            // Every agent connects from 127.0.0.1 and keeps its connection between attestations.
            c.max_connections = agents * 2 + 64;
            c.max_connections_per_client = 0;
            c.header_read_timeout = c.header_read_timeout.max(keep);
            c.idle_timeout = c.idle_timeout.max(keep);
        })
        .await?;
        return Ok(Targets {
            urls: cluster.running.iter().map(|r| r.base_url.clone()).collect(),
            ca: cluster.ca_cert.clone(),
            store: cluster.store.clone(),
            cluster: Some(cluster),
        });
    }
    anyhow::ensure!(
        args.database_url.is_some() || args.server_data_dir.is_some(),
        "--target needs the verifiers' store to make join tokens in: --database-url, or \
         --server-data-dir for a verifier on SQLite"
    );
    let cfg = ServerConfig {
        data_dir: args.server_data_dir.clone().unwrap_or_default(),
        database_url: args.database_url.clone(),
        ..ServerConfig::default()
    };
    Ok(Targets {
        urls: args.targets.clone(),
        ca: args.ca.clone(),
        store: vouch_server::open_store(&cfg).await?,
        cluster: None,
    })
}

/// Make a join token and enroll a new key with it through the API.
async fn enroll(store: &dyn Store, client: VerifierClient) -> Result<SimAgent> {
    let token = vouch_server::create_join_token(store, 3600, None).await?;
    let key = AgentKey::generate()?;
    let pk = key.public_key_b64();
    let r = client
        .enroll(&EnrollRequest {
            signature: key.sign_b64(&enroll_signing_input(&token, &pk)),
            join_token: token,
            public_key: pk,
            hostname: "vouch-bench-load".into(),
        })
        .await?;
    Ok(SimAgent {
        client,
        key,
        key_id: r.key_id,
        variant: 0,
        held: Default::default(),
        next_nonce: None,
    })
}

/// One attestation of `a`: challenge, sign (claims changed when `change`), attest.
async fn attest(
    a: &mut SimAgent,
    template: &SoftwareMeasurements,
    change: bool,
    next_variant: u64,
    stats: &Stats,
) -> Result<()> {
    let given = a
        .next_nonce
        .take()
        .filter(|n| n.expires_at > vouch_server::unix_now() + 5);
    let ch = match given {
        Some(n) => n,
        None => a.client.challenge().await?,
    };
    if change {
        // A process appears (or, for an agent that had one extra, it goes).
        a.variant = if a.variant == 0 { next_variant } else { 0 };
    }
    let m = measurements_for(
        template,
        ch.nonce,
        (a.variant > 0).then_some(a.variant),
        &a.held,
    );
    let evidence = sign_software_evidence(&a.key, &a.key_id, &m)?;
    let r = a
        .client
        .attest(&AttestRequest {
            evidence,
            result_audience: None,
        })
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            // Parts the verifier no longer holds: the next round sends everything in full.
            a.held.clear();
            return Err(e.into());
        }
    };
    a.held = r.held_parts;
    a.next_nonce = r.next_nonce;
    Stats::bump(&stats.statuses, r.status.to_string());
    Ok(())
}

/// Run the load as `args` says and print the report.
pub async fn run(args: LoadArgs, json: bool) -> Result<ExitCode> {
    let interval = parse_duration(&args.interval)?;
    let duration = parse_duration(&args.duration)?;
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(!interval.is_zero(), "--interval must be more than zero");
    anyhow::ensure!(args.jitter_percent <= 100, "--jitter-percent is 0 to 100");
    anyhow::ensure!(args.changed_percent <= 100, "--changed-percent is 0 to 100");
    raise_fd_limit();
    let jitter = f64::from(args.jitter_percent) / 100.0;
    let longest = interval.mul_f64(1.0 + jitter);
    let dir = super::tempfile_dir()?.join("load");
    std::fs::create_dir_all(&dir)?;
    let t = targets(&args, &dir, longest).await?;
    let out = drive(&args, json, &t, interval, jitter, duration).await;
    if let Some(c) = t.cluster {
        c.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = out?;
    if json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

async fn drive(
    args: &LoadArgs,
    json: bool,
    t: &Targets,
    interval: Duration,
    jitter: f64,
    duration: Duration,
) -> Result<serde_json::Value> {
    // This machine's real measurements, collected once.
    let mut collector = SoftwareCollector::new(CollectConfig {
        workload_name: "load".into(),
        exe: std::env::current_exe()?,
        files: Vec::new(),
        image_digest: None,
        root: "/".into(),
    });
    let template = Arc::new(collector.collect("template", unix_now())?);
    if t.cluster.is_some() {
        allow_executable(t.store.as_ref(), "load", &template).await?;
    }

    // Enrollment: each agent its own token, key and client; a few at a time.
    let bar = progress(
        args.agents as u64,
        json,
        "enrolling {bar:40} {pos}/{len} agents {elapsed}",
    );
    let started = Instant::now();
    let mut agents = Vec::with_capacity(args.agents);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..args.agents {
        let url = &t.urls[i % t.urls.len()];
        let client = VerifierClient::new(url, t.ca.as_deref())?;
        let store = t.store.clone();
        pending.spawn(async move { enroll(store.as_ref(), client).await });
        if pending.len() >= 16
            && let Some(r) = pending.join_next().await
        {
            agents.push(r.context("enrollment task")??);
            bar.inc(1);
        }
    }
    while let Some(r) = pending.join_next().await {
        agents.push(r.context("enrollment task")??);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let enroll_time = started.elapsed();

    // The run.
    let stats = Arc::new(Stats::new()?);
    let bar = progress(
        duration.as_secs().max(1),
        json,
        "{spinner} {bar:40} {pos}/{len} s  {msg}",
    );
    let start = tokio::time::Instant::now();
    let deadline = start + duration;
    let changed_share = f64::from(args.changed_percent) / 100.0;
    let variants = Arc::new(AtomicU64::new(1));
    let mut tasks = tokio::task::JoinSet::new();
    for mut a in agents {
        let stats = stats.clone();
        let template = template.clone();
        let variants = variants.clone();
        tasks.spawn(async move {
            let mut rng = Rng::new();
            let mut next = start + interval.mul_f64(rng.unit());
            loop {
                tokio::time::sleep_until(next.min(deadline)).await;
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let change = rng.unit() < changed_share;
                let began = Instant::now();
                let v = variants.fetch_add(1, Ordering::Relaxed);
                match attest(&mut a, &template, change, v, &stats).await {
                    Ok(()) => {
                        let us = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let mut h = stats.latency.lock().unwrap_or_else(|p| p.into_inner());
                        h.saturating_record(us.max(1));
                        drop(h);
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        if change {
                            stats.changed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => Stats::bump(&stats.errors, error_kind(&e)),
                }
                // The schedule, not the previous attestation's end, sets the next one.
                next += interval.mul_f64(1.0 + jitter * (2.0 * rng.unit() - 1.0));
            }
        });
    }
    let ticker = {
        let stats = stats.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                bar.set_position(start.elapsed().as_secs());
                bar.set_message(format!(
                    "{} attestations, {} errors, p99 {:.1} ms",
                    stats.ok.load(Ordering::Relaxed),
                    stats.errors(),
                    stats.quantile_ms(0.99)
                ));
            }
        })
    };
    // Attestations in flight at the deadline finish (up to the client timeout).
    while tasks.join_next().await.is_some() {}
    let wall = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();

    let ok = stats.ok.load(Ordering::Relaxed);
    let h = stats.latency.lock().unwrap_or_else(|p| p.into_inner());
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1e3;
    let errors = stats
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let statuses = stats
        .statuses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let store = match (&args.database_url, t.cluster.is_some()) {
        (Some(_), _) => "postgresql",
        (None, true) => "sqlite",
        (None, false) => "sqlite (target)",
    };
    Ok(serde_json::json!({
        "agents": args.agents,
        "verifiers": t.urls.len(),
        "in_process": t.cluster.is_some(),
        "store": store,
        "connections": "one keep-alive HTTPS connection per agent",
        "interval_ms": interval.as_millis() as u64,
        "jitter_percent": args.jitter_percent,
        "changed_percent": args.changed_percent,
        "duration_s": wall.as_secs_f64(),
        "enrollment_s": enroll_time.as_secs_f64(),
        "attestations": ok,
        "changed": stats.changed.load(Ordering::Relaxed),
        "attestations_per_second": ok as f64 / wall.as_secs_f64(),
        "offered_per_second": args.agents as f64 / interval.as_secs_f64(),
        "latency_ms": {
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
            "max": h.max() as f64 / 1e3, "mean": h.mean() / 1e3,
        },
        "statuses": statuses,
        "errors": errors,
    }))
}

fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or_default();
    println!(
        "{} agents (one keep-alive HTTPS connection each) against {} verifier(s) on {}, \
         interval {} ms ± {} %, {} % changed claims",
        r["agents"],
        r["verifiers"],
        r["store"].as_str().unwrap_or_default(),
        r["interval_ms"],
        r["jitter_percent"],
        r["changed_percent"]
    );
    println!(
        "  enrolled in        {:.1} s (join token + POST /v1/enroll each)",
        f(&r["enrollment_s"])
    );
    println!(
        "  attestations       {} in {:.1} s ({} changed): {:.1}/s (offered {:.1}/s)",
        r["attestations"],
        f(&r["duration_s"]),
        r["changed"],
        f(&r["attestations_per_second"]),
        f(&r["offered_per_second"])
    );
    let l = &r["latency_ms"];
    println!(
        "  latency (ms)       p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        f(&l["p50"]),
        f(&l["p90"]),
        f(&l["p99"]),
        f(&l["p99_9"]),
        f(&l["max"])
    );
    let list = |m: &serde_json::Value| {
        m.as_object()
            .filter(|o| !o.is_empty())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "none".into())
    };
    println!("  results            {}", list(&r["statuses"]));
    println!("  errors             {}", list(&r["errors"]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7").ok(), Some(Duration::from_secs(7)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_schedule_generator_is_uniform_enough() {
        let mut r = Rng::new();
        let mean = (0..10_000).map(|_| r.unit()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }
}

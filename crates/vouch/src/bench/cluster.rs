//! Verifiers started in this process for a benchmark, an enrolled agent whose real measurements
//! of this machine serve as the evidence template, and the attestation measurements over them.

use anyhow::{Context, Result};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_agent::{Agent, AgentConfig, VerifierClient};
use vouch_core::wire::AttestRequest;
use vouch_core::{ArStatus, ProcessInfo, SoftwareMeasurements, evidence_signing_input};
use vouch_evidence::{AgentKey, sign_software_evidence};
use vouch_policy::ReferenceValue;
use vouch_server::{RunningServer, ServerConfig, unix_now};
use vouch_store::Store;

/// N verifier replicas in this process sharing one store, nonce key and TLS certificate.
pub struct Cluster {
    /// The replicas.
    pub running: Vec<RunningServer>,
    /// Their store.
    pub store: Arc<dyn Store>,
    /// The CA their TLS certificate chains to.
    pub ca_cert: Option<PathBuf>,
}

impl Cluster {
    /// Start `replicas` verifiers under `dir`, each configured by `tweak` after the defaults.
    pub async fn start(
        dir: &Path,
        replicas: usize,
        database_url: Option<&str>,
        tweak: impl Fn(&mut ServerConfig),
    ) -> Result<Self> {
        let replicas = replicas.max(1);
        anyhow::ensure!(
            replicas == 1 || database_url.is_some(),
            "several replicas need a shared store: pass --database-url"
        );
        let nonce_key = dir.join("nonce.key");
        std::fs::write(&nonce_key, vouch_server::random_bytes::<32>())?;
        let mut running = Vec::new();
        let mut store = None;
        for r in 0..replicas {
            let tls = (r > 0).then(|| dir.join("r0/tls"));
            let mut cfg = ServerConfig {
                listen: "127.0.0.1:0".parse()?,
                data_dir: dir.join(format!("r{r}")),
                database_url: database_url.map(str::to_string),
                nonce_key: Some(nonce_key.clone()),
                tls_cert: tls.as_ref().map(|t| t.join("server.crt")),
                tls_key: tls.as_ref().map(|t| t.join("server.key")),
                ..ServerConfig::default()
            };
            tweak(&mut cfg);
            let s = vouch_server::open_store(&cfg).await?;
            running.push(vouch_server::start_with_store(cfg, s.clone()).await?);
            store.get_or_insert(s);
        }
        let ca_cert = running.first().and_then(|r| r.ca_cert.clone());
        Ok(Self {
            running,
            store: store.context("no replica")?,
            ca_cert,
        })
    }

    /// One client per replica (each its own connection pool).
    pub fn clients(&self) -> Result<Vec<VerifierClient>> {
        Ok(self
            .running
            .iter()
            .map(|r| VerifierClient::new(&r.base_url, self.ca_cert.as_deref()))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Stop every replica.
    pub async fn shutdown(self) {
        for r in self.running {
            r.shutdown().await;
        }
    }
}

/// An enrolled agent and its real measurements of this machine, collected once: each
/// attestation re-binds a fresh nonce (and for "changed" ones, alters the claims).
pub struct Template {
    /// The agent (enrolled; its key signs the evidence).
    pub agent: Agent,
    /// The measurements.
    pub measurements: Arc<SoftwareMeasurements>,
    /// The signed evidence payload's size (base64url), bytes.
    pub payload_len: usize,
    /// A signed result's size, bytes.
    pub result_len: usize,
    /// The parts of these measurements the verifier holds, which go by digest (as the agent
    /// sends them).
    pub held: Arc<BTreeMap<String, String>>,
}

impl Template {
    /// Enroll an agent against `cluster`, allow its executable, and check it is affirming.
    pub async fn enroll(cluster: &Cluster, dir: &Path) -> Result<Self> {
        let token = vouch_server::create_join_token(cluster.store.as_ref(), 600, None).await?;
        let url = cluster
            .running
            .first()
            .context("no replica")?
            .base_url
            .clone();
        let mut agent = Agent::new(AgentConfig {
            servers: vec![url],
            ca_cert: cluster.ca_cert.clone(),
            data_dir: dir.join("agent"),
            join_token: Some(token),
            workload_name: "bench".into(),
            ..AgentConfig::default()
        })
        .await?;
        let ev = agent.evidence("template")?;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&ev.payload)?;
        let measurements: SoftwareMeasurements = serde_json::from_slice(&payload)?;
        allow_executable(cluster.store.as_ref(), "bench", &measurements).await?;
        let warm = agent.attest_once().await?;
        anyhow::ensure!(
            warm.status == ArStatus::Affirming,
            "bench workload is not affirming: {:?}",
            warm.reasons
        );
        // Once with the template itself, so that the verifier holds its parts.
        let client = agent.client().clone();
        let ch = client.challenge().await?;
        let m = measurements_for(&measurements, ch.nonce, None, &BTreeMap::new());
        let r = client
            .attest(&AttestRequest {
                evidence: sign_software_evidence(agent.key(), &agent.enrollment().key_id, &m)?,
                result_audience: None,
            })
            .await?;
        Ok(Self {
            agent,
            measurements: Arc::new(measurements),
            payload_len: ev.payload.len(),
            result_len: warm.result.len(),
            held: Arc::new(r.held_parts),
        })
    }
}

/// Add the reference value that makes the workload `name` with these measurements affirming.
pub async fn allow_executable(
    store: &dyn Store,
    name: &str,
    m: &SoftwareMeasurements,
) -> Result<()> {
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: name.into(),
                value: m.workload.exe_sha256.clone(),
            },
            unix_now(),
        )
        .await?;
    Ok(())
}

/// The measurements for one attestation: the template with `nonce`, and when `change` is set a
/// claim that differs from the previous attestation's (one extra process, numbered `change`);
/// the parts the verifier holds (`held`) unchanged go by digest, as an agent sends them.
pub fn measurements_for(
    template: &SoftwareMeasurements,
    nonce: String,
    change: Option<u64>,
    held: &BTreeMap<String, String>,
) -> SoftwareMeasurements {
    let mut m = template.clone();
    m.nonce = nonce;
    m.collected_at = unix_now();
    if let Some(i) = change {
        m.processes.push(ProcessInfo {
            pid: 4_000_000u32.wrapping_add(u32::try_from(i % 1_000_000).unwrap_or(0)),
            name: format!("bench-{i}"),
            exe: None,
            exe_sha256: None,
        });
    }
    vouch_core::send_held_parts_by_digest(&mut m, held);
    m
}

/// One Ed25519 verification of an evidence-sized message plus one Ed25519 signature over an
/// EAR-sized message, single-threaded: the signature work a software attestation cannot avoid.
pub fn raw_signature_cost(payload_len: usize, ear_len: usize, iters: usize) -> Result<Duration> {
    let agent = Ed25519KeyPair::generate()?;
    let verifier_key = Ed25519KeyPair::generate()?;
    let payload = "a".repeat(payload_len);
    let msg = evidence_signing_input(vouch_core::EvidenceKind::Software, &payload);
    let sig = agent.sign(&msg);
    let pk = UnparsedPublicKey::new(
        &ED25519,
        aws_lc_rs::signature::KeyPair::public_key(&agent)
            .as_ref()
            .to_vec(),
    );
    let ear = vec![b'e'; ear_len];
    let iters = iters.max(1);
    let start = Instant::now();
    for _ in 0..iters {
        pk.verify(&msg, sig.as_ref())
            .map_err(|_| anyhow::anyhow!("verify failed"))?;
        std::hint::black_box(verifier_key.sign(&ear));
    }
    Ok(start.elapsed() / u32::try_from(iters).unwrap_or(u32::MAX))
}

/// What a run of attestations through the full path measured.
pub struct FullPath {
    /// Attestations completed.
    pub n: usize,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Each attestation's round trips (challenge, sign, attest), sorted.
    pub latencies: Vec<Duration>,
}

impl FullPath {
    /// Wall time per attestation (the inverse of throughput).
    pub fn per_attestation(&self) -> Duration {
        self.wall / u32::try_from(self.n.max(1)).unwrap_or(u32::MAX)
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The `q` quantile of sorted `v` (zero when empty).
pub fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `n` attestations by `concurrency` clients spread over `clients`, each: challenge, sign the
/// template's measurements with the new nonce (changed ones with `changed`), attest; every
/// result must be affirming.
pub async fn full_path(
    clients: &[VerifierClient],
    t: &Template,
    n: usize,
    concurrency: usize,
    changed: bool,
) -> Result<FullPath> {
    let concurrency = concurrency.max(1);
    let per_task = n.div_ceil(concurrency).max(1);
    let key_pk8 = t.agent.key().to_pkcs8()?;
    let key_id = t.agent.enrollment().key_id.clone();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = clients
            .get(i % clients.len().max(1))
            .context("no client")?
            .clone();
        let template = t.measurements.clone();
        let held = t.held.clone();
        let key = AgentKey::from_pkcs8(&key_pk8)?;
        let key_id = key_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            // As the agent does: the nonce the last result gave, else one asked for.
            let mut next: Option<vouch_core::wire::ChallengeResponse> = None;
            for j in 0..per_task {
                let t = Instant::now();
                let ch = match next.take().filter(|n| n.expires_at > unix_now() + 5) {
                    Some(n) => n,
                    None => client.challenge().await?,
                };
                let change = changed.then_some((i * per_task + j) as u64);
                let m = measurements_for(&template, ch.nonce, change, &held);
                let evidence = sign_software_evidence(&key, &key_id, &m)?;
                let r = client
                    .attest(&AttestRequest {
                        evidence,
                        result_audience: None,
                    })
                    .await?;
                anyhow::ensure!(
                    r.status == ArStatus::Affirming,
                    "not affirming: {:?}",
                    r.reasons
                );
                next = r.next_nonce;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("bench task")??);
    }
    let wall = start.elapsed();
    latencies.sort();
    Ok(FullPath {
        n: latencies.len(),
        wall,
        latencies,
    })
}

/// Server-side time of one attestation on an unloaded verifier, estimated from one client
/// attesting sequentially on one keep-alive connection: each `POST /v1/attest` round trip
/// (its body serialised before the clock starts, its answer read as bytes) minus the median
/// round trip of `GET /healthz` on the same connection, measured interleaved. What remains is
/// the verifier's work plus sending the body (TLS on both ends): an upper bound.
pub struct Unloaded {
    /// The estimates, sorted.
    pub server: Vec<Duration>,
    /// The no-op round trip subtracted.
    pub noop: Duration,
}

/// Measure [`Unloaded`] with `n` attestations against `base_url`.
pub async fn unloaded(
    base_url: &str,
    ca_cert: Option<&Path>,
    t: &Template,
    n: usize,
) -> Result<Unloaded> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30));
    if let Some(p) = ca_cert {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
    }
    let http = b.build()?;
    let key = t.agent.key();
    let key_id = t.agent.enrollment().key_id.clone();
    let noop_url = format!("{base_url}/healthz");
    let mut attest = Vec::with_capacity(n);
    let mut noop = Vec::with_capacity(n);
    for i in 0..n.max(1) + 2 {
        let ch: vouch_core::wire::ChallengeResponse = http
            .post(format!("{base_url}/v1/challenge"))
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let m = measurements_for(&t.measurements, ch.nonce, None, &t.held);
        let body = serde_json::to_vec(&AttestRequest {
            evidence: sign_software_evidence(key, &key_id, &m)?,
            result_audience: None,
        })?;
        let start = Instant::now();
        let res = http
            .post(format!("{base_url}/v1/attest"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status();
        let bytes = res.bytes().await?;
        let took = start.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "attest: {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
        let start = Instant::now();
        http.get(&noop_url).send().await?.bytes().await?;
        let idle = start.elapsed();
        // The first two warm the connection and the verifier's caches.
        if i >= 2 {
            attest.push(took);
            noop.push(idle);
        }
    }
    noop.sort();
    let noop = quantile(&noop, 0.5);
    let mut server: Vec<Duration> = attest.iter().map(|a| a.saturating_sub(noop)).collect();
    server.sort();
    Ok(Unloaded { server, noop })
}

//! Metrics, request ids and access logs.
//!
//! The verifier's metrics live in one `prometheus-client` registry owned by its [`State`]:
//! counters and histograms the request paths update as they go (attestations by evidence kind,
//! tenant and outcome, each stage's latency, refusals by kind, SVIDs issued, store errors,
//! revocation publication lag), and values read when `/metrics` is scraped (cache sizes, the
//! store's connection pool, workloads by status, gossip peers). `/metrics` answers in the
//! Prometheus text format (0.0.4).
//!
//! Every request gets a request id: the caller's `x-request-id` when it passes
//! [`vouch_core::request_id::is_valid`], else one made here. It is a field of the request's
//! span (so every line logged while the request is handled carries it), of the access-log line
//! (`target: vouch_server::access`: method, route template, status, latency, request id — never
//! a header value, token or body), and is echoed in the answer's `x-request-id`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use vouch_core::request_id;
use vouch_core::{ArStatus, ErrorKind, EvidenceKind};

use crate::state::State;

/// Labels of `vouch_attestations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestLabels {
    kind: &'static str,
    tenant: Cow<'static, str>,
    outcome: &'static str,
}

/// A label set of one `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A label set of one `stage` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// A label set of one `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// A stage of the attestation path, timed into `vouch_stage_seconds{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Evidence verification: signatures, quotes, TEE reports, the nonce.
    Verify,
    /// Policy evaluation (an appraisal not reused from the cache).
    Policy,
    /// Signing the result.
    Sign,
    /// Recording the attestation in the store.
    Store,
}

/// Buckets of the stage histograms: 50 µs to about 6.5 s, doubling.
fn stage_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Buckets of the revocation lag: 10 ms to about 20 min, ×3.
fn lag_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 3.0, 12))
}

/// The verifier's metrics. Counters the request paths update live here; `/metrics` adds what
/// it reads at scrape time ([`render`]).
pub(crate) struct Metrics {
    registry: Registry,
    attestations: Family<AttestLabels, Counter>,
    refusals: Family<KindLabel, Counter>,
    svids: Family<KindLabel, Counter>,
    stage_verify: Histogram,
    stage_policy: Histogram,
    stage_sign: Histogram,
    stage_store: Histogram,
    store_errors: Counter,
    revocation_lag: Histogram,
    /// The highest revocation epoch whose lag was observed (a record republished after a
    /// certificate change is not observed again).
    lag_observed_through: AtomicU64,
    /// Live members of the gossip cluster this replica sees (itself included); 0 without
    /// gossip.
    pub gossip_peers: AtomicU64,
    /// Gossip datagrams dropped unread.
    pub gossip_dropped: AtomicU64,
    /// Nonces issued.
    pub challenges: AtomicU64,
    /// Agent keys enrolled.
    pub enrollments: AtomicU64,
    /// Workloads marked contraindicated for missing their deadline.
    pub overdue: AtomicU64,
    /// Connections accepted (and given a slot).
    pub connections: AtomicU64,
    /// Connections closed at once because the server, or their client, held its maximum.
    pub connections_refused: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let attestations = Family::<AttestLabels, Counter>::default();
        registry.register(
            "vouch_attestations",
            "Attestations by evidence kind, tenant and outcome (the result's status, or refused)",
            attestations.clone(),
        );
        let refusals = Family::<KindLabel, Counter>::default();
        registry.register(
            "vouch_refusals",
            "Requests refused, by error kind",
            refusals.clone(),
        );
        let svids = Family::<KindLabel, Counter>::default();
        registry.register(
            "vouch_svids_issued",
            "SPIFFE identities issued, by kind (x509, jwt)",
            svids.clone(),
        );
        let stages =
            Family::<StageLabel, Histogram, fn() -> Histogram>::new_with_constructor(stage_buckets);
        registry.register(
            "vouch_stage_seconds",
            "Seconds each stage of an attestation took: verify (evidence and nonce), policy \
             (evaluated, not reused), sign (the result), store (the record)",
            stages.clone(),
        );
        let stage = |s| stages.get_or_create_owned(&StageLabel { stage: s });
        let store_errors = Counter::default();
        registry.register(
            "vouch_store_errors",
            "Store operations that failed: answers refused as store_unavailable and background \
             work (deadline sweep, revocation feed) that could not reach the store",
            store_errors.clone(),
        );
        let revocation_lag = lag_buckets();
        registry.register(
            "vouch_revocation_lag_seconds",
            "Seconds from a revocation's creation to its publication to the gossip cluster by \
             this replica",
            revocation_lag.clone(),
        );
        Self {
            stage_verify: stage("verify"),
            stage_policy: stage("policy"),
            stage_sign: stage("sign"),
            stage_store: stage("store"),
            registry,
            attestations,
            refusals,
            svids,
            store_errors,
            revocation_lag,
            lag_observed_through: AtomicU64::new(0),
            gossip_peers: AtomicU64::new(0),
            gossip_dropped: AtomicU64::new(0),
            challenges: AtomicU64::new(0),
            enrollments: AtomicU64::new(0),
            overdue: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
        }
    }
}

/// The `outcome` label of an attestation result.
fn outcome(s: ArStatus) -> &'static str {
    match s {
        ArStatus::None => "none",
        ArStatus::Affirming => "affirming",
        ArStatus::Warning => "warning",
        ArStatus::Contraindicated => "contraindicated",
    }
}

impl Metrics {
    /// A request refused with `kind`.
    pub fn refused(&self, kind: ErrorKind) {
        self.refusals
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
        if kind == ErrorKind::StoreUnavailable {
            self.store_errors.inc();
        }
    }

    /// An attestation of evidence `kind` for `tenant`: its result's status, or `None` when it
    /// was refused.
    pub fn attestation(&self, kind: EvidenceKind, tenant: &str, status: Option<ArStatus>) {
        let tenant = match tenant {
            "default" => Cow::Borrowed("default"),
            t => Cow::Owned(t.to_string()),
        };
        self.attestations
            .get_or_create(&AttestLabels {
                kind: kind.as_str(),
                tenant,
                outcome: status.map_or("refused", outcome),
            })
            .inc();
    }

    /// `took` spent in `stage`.
    pub fn stage(&self, stage: Stage, took: Duration) {
        let h = match stage {
            Stage::Verify => &self.stage_verify,
            Stage::Policy => &self.stage_policy,
            Stage::Sign => &self.stage_sign,
            Stage::Store => &self.stage_store,
        };
        h.observe(took.as_secs_f64());
    }

    /// SVIDs issued: `n` of `kind` (`x509`, `jwt`).
    pub fn svids_issued(&self, kind: &'static str, n: usize) {
        self.svids
            .get_or_create(&KindLabel { kind })
            .inc_by(n as u64);
    }

    /// A store operation outside a request failed.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Revocation `epoch`, created at `created_at` (Unix seconds), published now (`now`); each
    /// epoch is observed once.
    pub fn revocation_published(&self, epoch: u64, created_at: u64, now: Duration) {
        if self
            .lag_observed_through
            .fetch_max(epoch, Ordering::Relaxed)
            >= epoch
        {
            return;
        }
        let lag = now.as_secs_f64() - created_at as f64;
        self.revocation_lag.observe(lag.max(0.0));
    }
}

/// `/metrics`: the registry, then what is read at scrape time, in the Prometheus text format.
pub(crate) async fn render(st: &State) -> String {
    let m = &st.metrics;
    let mut live = Registry::default();
    let counter = |live: &mut Registry, name: &str, help: &str, v: &AtomicU64| {
        live.register(name, help, ConstCounter::new(v.load(Ordering::Relaxed)));
    };
    counter(
        &mut live,
        "vouch_challenges",
        "Nonces issued",
        &m.challenges,
    );
    counter(
        &mut live,
        "vouch_enrollments",
        "Agent keys enrolled",
        &m.enrollments,
    );
    counter(
        &mut live,
        "vouch_connections",
        "Connections accepted on the API listener",
        &m.connections,
    );
    counter(
        &mut live,
        "vouch_connections_refused",
        "Connections closed at once: the server, or their client, held its maximum",
        &m.connections_refused,
    );
    counter(
        &mut live,
        "vouch_overdue",
        "Workloads marked contraindicated for missing their deadline",
        &m.overdue,
    );
    let c = st.verifier.cache_stats();
    live.register(
        "vouch_appraisal_cache_hits",
        "Appraisals reused: claims, policy version and reference values as before",
        ConstCounter::new(c.hits),
    );
    live.register(
        "vouch_appraisal_cache_misses",
        "Appraisals made (the policy evaluated)",
        ConstCounter::new(c.misses),
    );
    let gauge = |live: &mut Registry, name: &str, help: &str, v: i64| {
        live.register(name, help, ConstGauge::new(v));
    };
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut live,
        "vouch_appraisal_cache_entries",
        "Appraisals held for reuse",
        n(c.entries),
    );
    let (parts, part_bytes) = st.verifier.parts_held();
    gauge(
        &mut live,
        "vouch_measurement_parts_held",
        "Measurement parts held so agents send unchanged ones by digest",
        n(parts),
    );
    gauge(
        &mut live,
        "vouch_measurement_parts_held_bytes",
        "Their estimated size",
        n(part_bytes),
    );
    gauge(
        &mut live,
        "vouch_entries",
        "Registration entries in this verifier's index",
        n(st.entries_held()),
    );
    gauge(
        &mut live,
        "vouch_entry_watchers",
        "Agents waiting on POST /v1/entries/watch",
        n(st.entry_watchers()),
    );
    let pool = st.store.pool_stats();
    gauge(
        &mut live,
        "vouch_store_pool_connections",
        "Connections the store's pool holds (in use and idle)",
        i64::from(pool.size),
    );
    gauge(
        &mut live,
        "vouch_store_pool_idle_connections",
        "Idle connections in the store's pool",
        i64::from(pool.idle),
    );
    gauge(
        &mut live,
        "vouch_store_pool_max_connections",
        "The most connections the store's pool opens",
        i64::from(pool.max),
    );
    gauge(
        &mut live,
        "vouch_gossip_peers",
        "Members of the gossip cluster this replica sees alive, itself included (0: no gossip)",
        i64::try_from(m.gossip_peers.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
    );
    counter(
        &mut live,
        "vouch_gossip_dropped_datagrams",
        "Gossip datagrams dropped unread (unauthenticated, malformed)",
        &m.gossip_dropped,
    );
    match st.store.workload_status_counts().await {
        Ok(counts) => {
            let by_status = Family::<StatusLabel, Gauge>::default();
            for name in ["none", "affirming", "warning", "contraindicated"] {
                let v = counts
                    .iter()
                    .find(|(status, _)| status == name)
                    .map_or(0, |(_, n)| *n);
                by_status
                    .get_or_create(&StatusLabel { status: name })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
            live.register("vouch_workloads", "Workloads by current status", by_status);
        }
        Err(e) => {
            m.store_error();
            tracing::warn!("metrics: workload counts unavailable: {e}");
        }
    }
    let mut out = String::with_capacity(8192);
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &m.registry);
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &live);
    out
}

/// A request's id: the caller's when it is valid, else a new one.
pub(crate) fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| request_id::is_valid(v))
        .map_or_else(
            || request_id::from_random(crate::keys::random_bytes::<16>()),
            str::to_string,
        )
}

/// The outermost layer: the request id, the request's span, the access-log line, and the
/// request id echoed in the answer.
pub(crate) async fn access(req: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    let method = req.method().clone();
    // The route's template (`/v1/workloads/{node}/{name}`), never the path as sent: it is
    // bounded, and it carries no identifiers or tokens.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span).await;
    let status = res.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Probes and scrapes come every few seconds: at debug, so that they do not drown the
    // API's lines at the default level.
    if ["/healthz", "/readyz", "/metrics"]
        .iter()
        .any(|p| route.ends_with(p))
    {
        tracing::debug!(
            target: "vouch_server::access",
            request_id = %id, method = %method, route = %route, status, micros, "access"
        );
    } else {
        tracing::info!(
            target: "vouch_server::access",
            request_id = %id, method = %method, route = %route, status, micros, "access"
        );
    }

    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(request_id::HEADER, v);
    }
    res
}

/// What [`bench_telemetry`] measured, per attestation.
#[derive(Debug, Clone, Copy)]
pub struct TelemetryBench {
    /// Attestations measured.
    pub n: usize,
    /// The metrics work of one attestation: its four stage timers and histogram observations
    /// and its `vouch_attestations_total` increment.
    pub metrics: Duration,
    /// The request-id work of one request: reading and checking the caller's header (or
    /// making an id from 16 random bytes), the route template, the span and the echoed header,
    /// with no log subscriber (what a log line costs is the subscriber's).
    pub request: Duration,
}

/// Time what the attest path pays for metrics and request ids (`vouch bench`), `n` times
/// each, in one thread.
pub fn bench_telemetry(n: usize) -> TelemetryBench {
    let n = n.max(100);
    let m = Metrics::default();
    let per = |d: Duration| d / u32::try_from(n).unwrap_or(u32::MAX);
    let run = || {
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            m.stage(Stage::Verify, t.elapsed());
            let t = Instant::now();
            m.stage(Stage::Policy, t.elapsed());
            let t = Instant::now();
            m.stage(Stage::Sign, t.elapsed());
            let t = Instant::now();
            m.stage(Stage::Store, t.elapsed());
            m.attestation(EvidenceKind::Software, "default", Some(ArStatus::Affirming));
        }
        started.elapsed()
    };
    run();
    let metrics = per(run());
    let mut req = Request::new(axum::body::Body::empty());
    let started = Instant::now();
    for i in 0..n {
        if i % 2 == 0 {
            req.headers_mut().insert(
                request_id::HEADER,
                HeaderValue::from_static("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            );
        } else {
            req.headers_mut().remove(request_id::HEADER);
        }
        let id = request_id_of(&req);
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "/v1/attest".to_string(), |p| p.as_str().to_string());
        let span = tracing::info_span!("request", request_id = %id);
        std::hint::black_box((&span, &route));
        std::hint::black_box(HeaderValue::from_str(&id).ok());
    }
    TelemetryBench {
        n,
        metrics,
        request: per(started.elapsed()),
    }
}

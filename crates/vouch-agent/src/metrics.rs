//! The agent's own metrics and health, served over plain HTTP on `metrics_listen` (off unless
//! configured; meant for a loopback address or a pod's network, never the internet).
//!
//! `GET /metrics` (Prometheus text format 0.0.4): attestation rounds by outcome, the time and
//! age of the latest result, the SVIDs the Workload API holds and how soon the first expires,
//! and Workload API connections and requests. `GET /healthz`: `200 ok` while attestation
//! rounds keep finishing (whatever their outcome: an unreachable verifier is not the agent's
//! fault, and restarting the agent would not help), `503` with the reason when none finished
//! for three intervals and a minute. Nothing here is secret: no key, token or SVID is exported.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use vouch_core::ArStatus;
use vouch_core::wire::AttestationResult;

use crate::AgentError;

/// A label set of one `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Labels of a Workload API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
    outcome: &'static str,
}

/// What the soonest-expiring SVID held is: (seconds since the Unix epoch, SVIDs held).
type SvidProbe = Box<dyn Fn() -> Option<(u64, usize)> + Send + Sync>;

/// The agent's metrics.
pub struct AgentMetrics {
    registry: Registry,
    rounds: Family<OutcomeLabel, Counter>,
    rpcs: Family<RpcLabels, Counter>,
    connections: Counter,
    connections_refused: Counter,
    started: Instant,
    /// Seconds between rounds (for the health window).
    interval: AtomicU64,
    /// When the latest round finished, any outcome (Unix seconds; 0: none yet).
    last_round: AtomicU64,
    /// When the latest result came back (Unix seconds; 0: none yet).
    last_result: AtomicU64,
    /// The latest result's status (an [`ArStatus`] index, `u64::MAX`: none).
    last_status: AtomicU64,
    svids: Mutex<Option<SvidProbe>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let rounds = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "vouch_agent_attestations",
            "Attestation rounds of the node's workload, by outcome: the result's status, \
             refused (the verifier refused the evidence) or unreachable (no verifier answered)",
            rounds.clone(),
        );
        let rpcs = Family::<RpcLabels, Counter>::default();
        registry.register(
            "vouch_agent_workload_api_requests",
            "Workload API requests, by RPC and outcome (ok, denied, error)",
            rpcs.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "vouch_agent_workload_api_connections",
            "Workload API connections accepted (each a caller identified by its credentials)",
            connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "vouch_agent_workload_api_connections_refused",
            "Workload API connections refused: the agent, or the caller's uid, held its maximum",
            connections_refused.clone(),
        );
        Self {
            registry,
            rounds,
            rpcs,
            connections,
            connections_refused,
            started: Instant::now(),
            interval: AtomicU64::new(30),
            last_round: AtomicU64::new(0),
            last_result: AtomicU64::new(0),
            last_status: AtomicU64::new(u64::MAX),
            svids: Mutex::new(None),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const STATUSES: [ArStatus; 4] = [
    ArStatus::None,
    ArStatus::Affirming,
    ArStatus::Warning,
    ArStatus::Contraindicated,
];

impl AgentMetrics {
    /// Metrics of an agent attesting every `interval` seconds.
    pub(crate) fn new(interval: u64) -> Self {
        let m = Self::default();
        m.interval.store(interval.max(1), Ordering::Relaxed);
        m
    }

    /// A round of the node's workload finished with `r`.
    pub(crate) fn round(&self, r: &Result<AttestationResult, AgentError>) {
        let now = unix_now();
        self.last_round.store(now, Ordering::Relaxed);
        let outcome = match r {
            Ok(res) => {
                self.last_result.store(now, Ordering::Relaxed);
                let i = STATUSES.iter().position(|s| *s == res.status).unwrap_or(0);
                self.last_status.store(i as u64, Ordering::Relaxed);
                res.status.as_str()
            }
            Err(AgentError::Unreachable { .. }) => "unreachable",
            Err(_) => "refused",
        };
        self.rounds.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A Workload API request to `rpc` ended: `Ok`, or refused with `code`.
    pub(crate) fn rpc(&self, rpc: &'static str, code: Option<tonic::Code>) {
        let outcome = match code {
            None => "ok",
            Some(tonic::Code::PermissionDenied | tonic::Code::InvalidArgument) => "denied",
            Some(_) => "error",
        };
        self.rpcs.get_or_create(&RpcLabels { rpc, outcome }).inc();
    }

    /// A Workload API connection accepted (`true`) or refused at its limit (`false`).
    pub(crate) fn connection(&self, accepted: bool) {
        if accepted {
            self.connections.inc();
        } else {
            self.connections_refused.inc();
        }
    }

    /// Where the SVIDs held are read at scrape time.
    pub(crate) fn watch_svids(&self, probe: SvidProbe) {
        if let Ok(mut s) = self.svids.lock() {
            *s = Some(probe);
        }
    }

    /// Whether rounds keep finishing: `Err` says why not.
    pub fn health(&self) -> Result<&'static str, String> {
        let window = self
            .interval
            .load(Ordering::Relaxed)
            .saturating_mul(3)
            .saturating_add(60);
        match self.last_round.load(Ordering::Relaxed) {
            0 if self.started.elapsed() < Duration::from_secs(window) => Ok("starting"),
            0 => Err(format!(
                "no attestation round finished in the {window} s since the agent started"
            )),
            t => {
                let age = unix_now().saturating_sub(t);
                if age <= window {
                    Ok("ok")
                } else {
                    Err(format!(
                        "the latest attestation round finished {age} s ago (more than {window} s)"
                    ))
                }
            }
        }
    }

    /// The metrics, in the Prometheus text format.
    pub fn render(&self) -> String {
        let now = unix_now();
        let mut live = Registry::default();
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let last = self.last_result.load(Ordering::Relaxed);
        if last > 0 {
            live.register(
                "vouch_agent_last_attestation_timestamp_seconds",
                "When the latest attestation result came back (Unix time)",
                ConstGauge::new(secs(last)),
            );
            live.register(
                "vouch_agent_last_attestation_age_seconds",
                "Seconds since the latest attestation result came back",
                ConstGauge::new(secs(now.saturating_sub(last))),
            );
        }
        if let Some(s) = STATUSES
            .get(usize::try_from(self.last_status.load(Ordering::Relaxed)).unwrap_or(usize::MAX))
        {
            let by_status =
                Family::<StatusLabel, prometheus_client::metrics::gauge::Gauge>::default();
            for st in STATUSES {
                by_status
                    .get_or_create(&StatusLabel {
                        status: st.as_str(),
                    })
                    .set(i64::from(st == *s));
            }
            live.register(
                "vouch_agent_last_attestation_status",
                "1 for the latest result's status, 0 for the others",
                by_status,
            );
        }
        let held = self
            .svids
            .lock()
            .ok()
            .and_then(|p| p.as_ref().and_then(|f| f()));
        let count = held.map_or(0, |(_, n)| n);
        live.register(
            "vouch_agent_svids_held",
            "X.509-SVIDs the Workload API holds for its callers",
            ConstGauge::new(secs(count as u64)),
        );
        if let Some((expires_at, _)) = held {
            live.register(
                "vouch_agent_svid_expiry_seconds",
                "Seconds until the soonest-expiring X.509-SVID held expires (negative: expired)",
                ConstGauge::new(secs(expires_at) - secs(now)),
            );
        }
        let mut out = String::with_capacity(2048);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &live);
        out
    }
}

/// A label set of one `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// Serve `metrics` (`/metrics`, `/healthz`) on `addr` in the background, until the returned
/// task is aborted. What `metrics_listen` starts in [`crate::Agent::run`]; also for embedding
/// an agent (and tests). The bound address is returned with the task.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<AgentMetrics>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), AgentError> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr().map_err(|source| AgentError::Io {
        what: "reading the metrics address".into(),
        source,
    })?;
    Ok((bound, tokio::spawn(serve(listener, metrics))))
}

/// Bind `addr` for [`serve`].
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, AgentError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "metrics_listen is not a loopback address: anyone who reaches it reads the agent's metrics"
        );
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Io {
            what: format!("binding metrics_listen {addr}"),
            source,
        })
}

/// Serve `/metrics` and `/healthz` on `listener` until the task is dropped. HTTP/1 only,
/// a GET with no body, a few connections at a time, each closed after 10 s.
async fn serve(listener: tokio::net::TcpListener, metrics: Arc<AgentMetrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &req)) }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
            drop(permit);
        });
    }
}

fn answer<B>(metrics: &AgentMetrics, req: &hyper::Request<B>) -> hyper::Response<String> {
    let reply = |status: u16, ctype: &'static str, body: String| {
        let mut r = hyper::Response::new(body);
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.method() != hyper::Method::GET {
        return reply(405, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(
            200,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            metrics.render(),
        ),
        "/healthz" => match metrics.health() {
            Ok(s) => reply(200, "text/plain", format!("{s}\n")),
            Err(why) => reply(503, "text/plain", format!("{why}\n")),
        },
        _ => reply(
            404,
            "text/plain",
            "no such page: /metrics or /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn health_follows_finished_rounds_and_the_text_counts_them() {
        let m = AgentMetrics::new(10);
        assert_eq!(m.health(), Ok("starting"));
        m.round(&Err(AgentError::Config("refused for the test".into())));
        assert_eq!(m.health(), Ok("ok"));
        let text = m.render();
        assert!(
            text.contains("vouch_agent_attestations_total{outcome=\"refused\"} 1"),
            "{text}"
        );
        // No result yet: no age, no status.
        assert!(
            !text.contains("vouch_agent_last_attestation_age_seconds"),
            "{text}"
        );
        // The latest round finished more than three intervals and a minute ago.
        m.last_round.store(unix_now() - 91, Ordering::Relaxed);
        let why = m.health().unwrap_err();
        assert!(why.contains("91 s ago") && why.contains("90 s"), "{why}");
        // None finished since a start that long ago.
        let m = AgentMetrics::new(u64::MAX);
        assert_eq!(m.health(), Ok("starting"));
    }
}

//! Fleet anomaly flags (issue 16 item 5): slow, collective drifts that no single rule catches,
//! explained in words, stored, exported and shown, and blocking nothing unless a policy asks.
//!
//! The verifier's [`Anomalies`] sees every attestation whose evidence verified, before its
//! policy runs ([`vouch_verifier::AnomalyHook`]): it turns the claims (and, for TPM evidence,
//! the quote's counters and the IMA entries the evidence carries) into an [`Observation`],
//! which the [`Detector`] compares with the workload group's history under one short lock
//! (hash lookups; parts a node sent unchanged since its last attestation are not even looked
//! at). The flags active on the node go to the policy as `input.anomalies`; new flags and the
//! group's new measurement keys go to a background task that stores them (and appends each
//! new flag to the audit log), off the attestation's path: a full queue drops them with an
//! error log, never delays an attestation. At start the detector is rebuilt from the store
//! (every group's measurement keys, the flags of the last window), so a restarted or another
//! replica has the same baseline.
//!
//! `GET /v1/anomalies` (read role) and `vouch anomalies` export the flags;
//! [`State::anomaly_flags`] is what a page of the dashboard calls.

mod bench;
mod detector;
mod extract;
#[cfg(test)]
mod tests;

pub use bench::{AnomalyBench, bench_anomalies};
pub use detector::{Counters, Detector, DetectorConfig, Flag, Kind, Observation};
pub use extract::{ima_measurements, measurements, processes};

use axum::Json;
use axum::extract::{Query, State as AxState};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

use vouch_core::{Evidence, EvidenceKind};
use vouch_evidence::VerifiedEvidence;
use vouch_store::{AnomalyQuery, AnomalyRecord, SeenRecord, Store};

use crate::ApiError;
use crate::state::State;

/// Batches of flags waiting to be stored.
const QUEUE: usize = 1024;

/// What the background writer stores.
#[derive(Debug, Default)]
struct Batch {
    flags: Vec<AnomalyRecord>,
    seen: Vec<SeenRecord>,
}

/// The verifier's fleet anomaly detector and its writer.
#[derive(Debug)]
pub struct Anomalies {
    detector: Mutex<Detector>,
    /// The digests of each workload's measurement parts at its last attestation.
    parts: Mutex<HashMap<String, Vec<(String, String)>>>,
    tx: OnceLock<mpsc::Sender<Batch>>,
}

fn record(f: &Flag) -> AnomalyRecord {
    AnomalyRecord {
        id: f.id.clone(),
        kind: f.kind.as_str().to_string(),
        group: f.group.clone(),
        node_id: f.node_id.clone(),
        workload_id: f.workload_id.clone(),
        reason: f.reason.clone(),
        detail: f.detail.clone(),
        first_seen: f.first_seen,
        last_seen: f.last_seen,
        count: f.count,
    }
}

fn kind_of(s: &str) -> Option<Kind> {
    Some(match s {
        "new_measurement" => Kind::NewMeasurement,
        "fleet_change" => Kind::FleetChange,
        "tpm_counter" => Kind::TpmCounter,
        "rate_outlier" => Kind::RateOutlier,
        "latency_outlier" => Kind::LatencyOutlier,
        "cloned_measurements" => Kind::ClonedMeasurements,
        _ => return None,
    })
}

/// The group of workload `name`: every node attesting a workload of that name.
pub fn group_of(workload_name: &str) -> &str {
    workload_name
}

impl Anomalies {
    /// A detector with `cfg`, not yet storing anything ([`Anomalies::start`]).
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            detector: Mutex::new(Detector::new(cfg)),
            parts: Mutex::default(),
            tx: OnceLock::new(),
        }
    }

    fn detector(&self) -> std::sync::MutexGuard<'_, Detector> {
        self.detector.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuild from `store` (every group's measurement keys, the flags of the last window) and
    /// start the writer; returns its task.
    pub async fn start(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        now: u64,
    ) -> Result<tokio::task::JoinHandle<()>, vouch_store::StoreError> {
        let mut after = (String::new(), String::new());
        let mut keys = 0u64;
        loop {
            let page = store.anomaly_seen((&after.0, &after.1), 10_000).await?;
            let Some(last) = page.last() else { break };
            after = (last.group.clone(), last.key.clone());
            let mut d = self.detector();
            for s in &page {
                if let Ok(k) = <[u8; 16]>::try_from(hex::decode(&s.key).unwrap_or_default()) {
                    d.seed(&s.group, k, s.first_seen);
                    keys += 1;
                }
            }
        }
        let window = self.detector().config().window;
        let flags = store
            .anomalies(&AnomalyQuery {
                since: now.saturating_sub(window),
                limit: vouch_store::ANOMALY_PAGE_MAX,
                ..Default::default()
            })
            .await?;
        {
            let mut d = self.detector();
            for f in &flags {
                let Some(kind) = kind_of(&f.kind) else {
                    continue;
                };
                d.restore(Flag {
                    id: f.id.clone(),
                    kind,
                    group: f.group.clone(),
                    node_id: f.node_id.clone(),
                    workload_id: f.workload_id.clone(),
                    reason: f.reason.clone(),
                    detail: f.detail.clone(),
                    first_seen: f.first_seen,
                    last_seen: f.last_seen,
                    count: f.count,
                });
            }
        }
        tracing::info!(
            keys,
            flags = flags.len(),
            "anomaly detector rebuilt from the store"
        );
        let (tx, mut rx) = mpsc::channel::<Batch>(QUEUE);
        let _ = self.tx.set(tx);
        Ok(tokio::spawn(async move {
            while let Some(mut b) = rx.recv().await {
                // Whatever else is queued goes in the same transaction.
                while b.flags.len() + b.seen.len() < 50_000 {
                    match rx.try_recv() {
                        Ok(more) => {
                            b.flags.extend(more.flags);
                            b.seen.extend(more.seen);
                        }
                        Err(_) => break,
                    }
                }
                match store.record_anomalies(&b.flags, &b.seen).await {
                    Ok(new) => {
                        for f in b.flags.iter().take(usize::try_from(new).unwrap_or(0)) {
                            tracing::warn!(kind = %f.kind, group = %f.group, node = %f.node_id,
                                "anomaly: {}", f.reason);
                        }
                    }
                    Err(e) => {
                        tracing::error!(flags = b.flags.len(), "storing anomaly flags failed: {e}")
                    }
                }
            }
        }))
    }

    fn send(&self, flags: &[Flag], seen: Vec<SeenRecord>) {
        if flags.is_empty() && seen.is_empty() {
            return;
        }
        let Some(tx) = self.tx.get() else {
            return;
        };
        let b = Batch {
            flags: flags.iter().map(record).collect(),
            seen,
        };
        if tx.try_send(b).is_err() {
            tracing::error!("anomaly flags dropped: the store writer's queue is full");
        }
    }

    /// Observe one attestation (the detector's input built from verified evidence); returns
    /// the flags active on its node, as policies see them.
    pub fn observe(&self, o: &Observation) -> Vec<Value> {
        let out = self.detector().observe(o);
        let seen = out
            .seen
            .iter()
            .map(|(k, t)| SeenRecord {
                group: o.group.clone(),
                key: hex::encode(k),
                first_seen: *t,
            })
            .collect();
        self.send(&out.flags, seen);
        out.active
    }

    /// Record how long verifying an attestation of `workload_id` (`node/name`) took.
    pub fn observe_latency(&self, workload_id: &str, millis: f64, now: u64) {
        let Some((node, name)) = workload_id.split_once('/') else {
            return;
        };
        if name.starts_with("sample:") {
            return;
        }
        let flag = self
            .detector()
            .observe_latency(group_of(name), node, workload_id, millis, now);
        if let Some(f) = flag {
            self.send(&[f], Vec::new());
        }
    }

    /// The detector's input for verified evidence.
    pub fn observation(
        &self,
        node_id: &str,
        workload_id: &str,
        verified: &VerifiedEvidence,
        evidence: &Evidence,
        now: u64,
    ) -> Observation {
        // Parts (files, processes, listening, packages) unchanged on this workload since its
        // last attestation hold nothing the group has not seen.
        let digests: Vec<(String, String)> = verified
            .parts
            .iter()
            .map(|(d, p)| (p.name().to_string(), d.clone()))
            .collect();
        let skip: Vec<&str> = {
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            let before = parts.get(workload_id).cloned().unwrap_or_default();
            if parts.len() < 1_000_000 || parts.contains_key(workload_id) {
                parts.insert(workload_id.to_string(), digests.clone());
            }
            digests
                .iter()
                .filter(|d| before.contains(d))
                .filter_map(|(name, _)| {
                    vouch_core::MEASUREMENT_PARTS
                        .iter()
                        .find(|p| **p == name.as_str())
                        .copied()
                })
                .collect()
        };
        // A process executable new to the group is judged at the node's next attestation,
        // whose process list is looked at even when unchanged.
        let group = group_of(&verified.workload_name);
        let skip: Vec<&str> = if self.detector().has_pending(group, node_id) {
            skip.into_iter().filter(|p| *p != "processes").collect()
        } else {
            skip
        };
        let claims = &verified.claims;
        let mut ms = measurements(claims, &skip);
        if matches!(evidence.kind, EvidenceKind::Tpm)
            && verified.tpm_ima.is_some()
            && let Some(entries) = ima_slice(evidence)
        {
            ms.extend(ima_measurements(&entries));
        }
        Observation {
            group: group.to_string(),
            node_id: node_id.to_string(),
            workload_id: workload_id.to_string(),
            now,
            measurements: ms,
            counters: verified.tpm_clock.as_ref().map(|c| Counters {
                clock: c.clock,
                reset: c.reset_count,
                restart: c.restart_count,
                firmware: claims["tpm"]["firmware_version"]
                    .as_str()
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
                    .unwrap_or(0),
            }),
            hostname: claims["hostname"].as_str().unwrap_or("").to_string(),
            processes: if skip.contains(&"processes") {
                None
            } else {
                processes(claims)
            },
        }
    }
}

/// The IMA entries `tpm` evidence carries (already replayed by the verifier).
fn ima_slice(evidence: &Evidence) -> Option<Vec<vouch_tpm::ImaEntry>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&evidence.payload)
        .ok()?;
    let p: vouch_core::TpmPayload = serde_json::from_slice(&bytes).ok()?;
    vouch_tpm::parse_ima_log(&p.ima?.log).ok()
}

impl vouch_verifier::AnomalyHook for Anomalies {
    fn assess(
        &self,
        node_id: &str,
        workload_id: &str,
        verified: &VerifiedEvidence,
        evidence: &Evidence,
        now: u64,
    ) -> Vec<Value> {
        // Sample evidence is unsigned and kept apart from the enrolled workloads.
        if evidence.kind == EvidenceKind::Sample {
            return Vec::new();
        }
        let o = self.observation(node_id, workload_id, verified, evidence, now);
        self.observe(&o)
    }
}

impl State {
    /// Appraise `req` (the detector sees it on the way) and record how long it took against
    /// its group's latencies.
    pub(crate) async fn appraise_observed(
        &self,
        req: &vouch_core::wire::AttestRequest,
    ) -> Result<vouch_verifier::Appraised, ApiError> {
        let started = std::time::Instant::now();
        let appraised = self.verifier.appraise(req, crate::unix_now()).await?;
        if req.evidence.kind != EvidenceKind::Sample {
            let workload_id = appraised.ear().sub.clone().unwrap_or_default();
            self.anomalies.observe_latency(
                &workload_id,
                started.elapsed().as_secs_f64() * 1000.0,
                crate::unix_now(),
            );
        }
        Ok(appraised)
    }

    /// Stored anomaly flags matching `q`, newest first: what the dashboard shows.
    pub(crate) async fn anomaly_flags(
        &self,
        q: &AnomalyQuery,
    ) -> Result<Vec<AnomalyRecord>, ApiError> {
        Ok(self.store.anomalies(q).await?)
    }
}

/// `GET /v1/anomalies` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    group: Option<String>,
    node: Option<String>,
    kind: Option<String>,
    since: Option<u64>,
    limit: Option<u32>,
}

type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// `GET /v1/anomalies?group=&node=&kind=&since=&limit=` (read role): stored flags, newest
/// first.
pub(crate) async fn list(AxState(st): AxState<Arc<State>>, q: Q<ListQuery>) -> Response {
    let r = async {
        let Query(q) =
            q.map_err(|e| ApiError::new(vouch_core::ErrorKind::MalformedRequest, e.body_text()))?;
        if let Some(k) = &q.kind
            && kind_of(k).is_none()
        {
            return Err(ApiError::new(
                vouch_core::ErrorKind::MalformedRequest,
                format!("unknown anomaly kind {k:?}"),
            ));
        }
        let flags = st
            .anomaly_flags(&AnomalyQuery {
                group: q.group,
                node_id: q.node,
                kind: q.kind,
                since: q.since.unwrap_or(0),
                limit: q.limit.unwrap_or(100),
            })
            .await?;
        Ok::<_, ApiError>(json!({ "anomalies": flags }))
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let kind = e.kind;
            let mut r = e.into_response();
            r.extensions_mut().insert(kind);
            r
        }
    }
}

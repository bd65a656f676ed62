//! What the fleet anomaly detector adds to one attestation: the verifier's hook, timed alone
//! (the flags' storage is a background task, off the attestation's path, and not timed).

use std::time::{Duration, Instant};

use vouch_core::SoftwareMeasurements;
use vouch_evidence::{AgentKey, EvidenceVerifier as _, SoftwareVerifier, VerifyContext};
use vouch_verifier::AnomalyHook as _;

use super::{Anomalies, DetectorConfig};

/// What [`bench_anomalies`] measured, per attestation.
#[derive(Debug, Clone, Copy)]
pub struct AnomalyBench {
    /// Attestations measured in each mode.
    pub n: usize,
    /// Nodes in the group.
    pub nodes: usize,
    /// Measurements one full scan of the claims compares.
    pub measurements: usize,
    /// A node attesting again with its measurement parts unchanged (the usual case).
    pub steady: Duration,
    /// A node whose every measurement part changed (or its first attestation): every
    /// measurement looked up.
    pub full: Duration,
}

/// Measure the hook over `m` (real measurements of a machine) for a group of `nodes` nodes,
/// `n` attestations per mode.
pub fn bench_anomalies(
    m: &SoftwareMeasurements,
    nodes: usize,
    n: usize,
) -> Result<AnomalyBench, String> {
    let n = n.max(10);
    let nodes = nodes.max(1);
    let key = AgentKey::generate().map_err(|e| e.to_string())?;
    let ctx = VerifyContext {
        public_key: key.public_key(),
        signers: &[],
        tpm: None,
        tee: None,
        now: 0,
        parts: None,
    };
    let mut evidence = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mut m = m.clone();
        m.hostname = format!("node-{i}");
        let ev =
            vouch_evidence::sign_software_evidence(&key, "k", &m).map_err(|e| e.to_string())?;
        let v = SoftwareVerifier
            .verify(&ev, &ctx)
            .map_err(|e| e.to_string())?;
        evidence.push((format!("node-{i}"), format!("node-{i}/bench"), ev, v));
    }
    let a = Anomalies::new(DetectorConfig::default());
    let mut now = 1_000_000u64;
    // Every node once: the group's baseline, and each node's parts held.
    for (node, wid, ev, v) in &evidence {
        a.assess(node, wid, v, ev, now);
    }
    let measurements = super::measurements(&evidence[0].3.claims, &[]).len();
    let t = Instant::now();
    for i in 0..n {
        now += 1;
        let (node, wid, ev, v) = &evidence[i % nodes];
        std::hint::black_box(a.assess(node, wid, v, ev, now));
    }
    let steady = t.elapsed() / n as u32;
    // A workload id never seen: nothing of its parts is held, every measurement is compared.
    let t = Instant::now();
    for i in 0..n {
        now += 1;
        let (node, _, ev, v) = &evidence[i % nodes];
        std::hint::black_box(a.assess(node, &format!("{node}/fresh-{i}"), v, ev, now));
    }
    let full = t.elapsed() / n as u32;
    Ok(AnomalyBench {
        n,
        nodes,
        measurements,
        steady,
        full,
    })
}

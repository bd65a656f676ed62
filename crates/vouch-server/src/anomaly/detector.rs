//! The fleet anomaly detector: pure logic, no I/O, time passed in.
//!
//! A **workload group** is every node that attests a workload of the same name (the `name` of
//! the workload the evidence is about, the part after the node in `node/name`): nodes that
//! run the same declared workload are expected to measure alike. Per group the detector keeps
//! what it has seen (a 16-byte key per measurement, the first node of a group is its
//! baseline), each node's last TPM counters and attestation time, and the last
//! [`DetectorConfig::samples`] attestation intervals and verification latencies; across
//! groups, the machine fingerprints of the last [`DetectorConfig::window`] seconds. Everything
//! is bounded ([`DetectorConfig`]), and the measurement keys are what the store keeps, so a
//! replica that starts later rebuilds the same baseline ([`Detector::seed`]).
//!
//! Flags ([`Kind`]) say why in words; the same flag raised again (the same kind, group, node
//! and subject: its [`Flag::id`]) updates `last_seen` and `count` instead of piling up.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};

/// What kind of anomaly a flag reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// A measurement never seen before in the group.
    NewMeasurement,
    /// The same new measurement on many nodes of the group within the window.
    FleetChange,
    /// TPM resetCount/restartCount/firmware moving in a way a healthy node's do not.
    TpmCounter,
    /// A node attesting far more or less often than its group.
    RateOutlier,
    /// Evidence taking far longer (or shorter) to verify than its group's.
    LatencyOutlier,
    /// A node reporting measurements that another node reported.
    ClonedMeasurements,
}

impl Kind {
    /// The kind's name as flags, the API and policies spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewMeasurement => "new_measurement",
            Self::FleetChange => "fleet_change",
            Self::TpmCounter => "tpm_counter",
            Self::RateOutlier => "rate_outlier",
            Self::LatencyOutlier => "latency_outlier",
            Self::ClonedMeasurements => "cloned_measurements",
        }
    }
}

/// One anomaly flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// SHA-256 (hex) of kind, group, node and subject: the same flag on any replica.
    pub id: String,
    /// What was seen.
    pub kind: Kind,
    /// The workload group.
    pub group: String,
    /// The node it is about (empty for a flag about the whole group).
    pub node_id: String,
    /// The workload it was raised on (`node/name`; empty for a group flag).
    pub workload_id: String,
    /// Why, in words.
    pub reason: String,
    /// The values behind the reason.
    pub detail: Value,
    /// First raised, Unix seconds.
    pub first_seen: u64,
    /// Last raised, Unix seconds.
    pub last_seen: u64,
    /// How many times raised.
    pub count: u64,
}

impl Flag {
    fn new(
        kind: Kind,
        o: &Subject<'_>,
        node: &str,
        subject: &str,
        reason: String,
        detail: Value,
    ) -> Self {
        let mut h = Sha256::new();
        for s in [kind.as_str(), o.group, node, subject] {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Self {
            id: hex::encode(h.finalize()),
            kind,
            group: o.group.to_string(),
            node_id: node.to_string(),
            workload_id: if node.is_empty() {
                String::new()
            } else {
                o.workload_id.to_string()
            },
            reason,
            detail,
            first_seen: o.now,
            last_seen: o.now,
            count: 1,
        }
    }

    /// The flag as a policy sees it in `input.anomalies`: what does not change when it is
    /// raised again (so an appraisal of repeated claims is still reused).
    pub fn policy_view(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "group": self.group,
            "node_id": self.node_id,
            "reason": self.reason,
            "first_seen": self.first_seen,
        })
    }
}

/// Thresholds and bounds.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Seconds a flag stays active (in `input.anomalies`), the window of a fleet change and
    /// how long a machine fingerprint is remembered.
    pub window: u64,
    /// Nodes that must report the same new measurement within the window for `fleet_change`.
    pub fleet_min_nodes: usize,
    /// …and the share of the group's nodes active in the window they must be.
    pub fleet_fraction: f64,
    /// Samples a group needs before rate and latency outliers are judged.
    pub min_samples: usize,
    /// How many scaled MADs from the median make an outlier.
    pub outlier_mads: f64,
    /// Least distance from the median, seconds, for a rate outlier (a MAD of 0 is common).
    pub rate_floor_secs: f64,
    /// Least distance from the median, milliseconds, for a latency outlier.
    pub latency_floor_ms: f64,
    /// Intervals and latencies kept per group.
    pub samples: usize,
    /// Measurement keys kept per group (the oldest tenth goes past it).
    pub max_measurements: usize,
    /// Groups kept (a new group past it is not watched).
    pub max_groups: usize,
    /// Nodes kept per group.
    pub max_nodes: usize,
    /// New-measurement flags one attestation raises; more are summed up in one flag.
    pub max_new_per_attestation: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            window: 3600,
            fleet_min_nodes: 3,
            fleet_fraction: 0.5,
            min_samples: 20,
            outlier_mads: 6.0,
            rate_floor_secs: 5.0,
            latency_floor_ms: 100.0,
            samples: 256,
            max_measurements: 200_000,
            max_groups: 10_000,
            max_nodes: 100_000,
            max_new_per_attestation: 16,
        }
    }
}

/// A measurement as the group compares it: what (`kind`), of what (`name`), which value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// `executable`, `image`, `file`, `package`, `process`, `kernel`, `os`, `pcr`, `ima`.
    pub kind: &'static str,
    /// Path, package or PCR (`sha256:4`).
    pub name: String,
    /// Digest or version.
    pub value: String,
}

/// 16 bytes of SHA-256 over a measurement: what the group remembers and the store keeps.
pub type Key = [u8; 16];

impl Measurement {
    /// Its key.
    pub fn key(&self) -> Key {
        let mut h = Sha256::new();
        for s in [self.kind, self.name.as_str(), self.value.as_str()] {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        k
    }

    fn describe(&self) -> String {
        let v = short(&self.value);
        match self.kind {
            "kernel" | "os" | "image" => format!("{} {v}", self.kind),
            "package" => format!("package {} {v}", self.name),
            _ => format!("{v} of {} {}", self.kind, self.name),
        }
    }
}

/// A digest cut to 16 characters for a sentence (the detail has it whole).
fn short(v: &str) -> String {
    if v.len() > 24 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        format!(
            "{}…",
            &v[..v.len().min(v.find(':').map_or(0, |i| i + 1) + 16)]
        )
    } else {
        v.to_string()
    }
}

/// A TPM quote's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// The TPM clock, milliseconds.
    pub clock: u64,
    /// `resetCount`.
    pub reset: u32,
    /// `restartCount`.
    pub restart: u32,
    /// `firmwareVersion`.
    pub firmware: u64,
}

/// One verified attestation, as the detector sees it.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The workload group (the workload name).
    pub group: String,
    /// The node.
    pub node_id: String,
    /// `node/name`.
    pub workload_id: String,
    /// Verification time, Unix seconds.
    pub now: u64,
    /// The measurements to compare with the group's (only the parts that changed on this node
    /// since its last attestation need be here).
    pub measurements: Vec<Measurement>,
    /// The TPM quote's counters, for TPM evidence.
    pub counters: Option<Counters>,
    /// The host name the node reported.
    pub hostname: String,
    /// The running processes as `(pid, name, exe digest)`, when reported.
    pub processes: Option<Vec<(u64, String, String)>>,
}

struct Subject<'a> {
    group: &'a str,
    workload_id: &'a str,
    now: u64,
}

#[derive(Debug, Default)]
struct Seen {
    first_seen: u64,
    /// Nodes (indices) that reported it within the window of its first sighting; empty for the
    /// baseline.
    nodes: Vec<u32>,
    fleet_flagged: bool,
}

#[derive(Debug, Default)]
struct NodeState {
    index: u32,
    last_attest: Option<u64>,
    counters: Option<Counters>,
    /// Hashes of `(pid, name)` of the last process table.
    procs: HashSet<u64>,
    /// The fingerprint of the last host name and process table.
    print: Option<[u8; 32]>,
    /// The fingerprint of the last quote's clock.
    quote_print: Option<[u8; 32]>,
    /// Process executables new to the group that this node ran at its last attestation: one
    /// still running at the next is a measurement, one gone by then was transient.
    pending: HashSet<Key>,
    flags: Vec<Flag>,
}

#[derive(Debug, Default)]
struct Group {
    seen: HashMap<Key, Seen>,
    nodes: HashMap<String, NodeState>,
    intervals: VecDeque<f64>,
    latencies: VecDeque<f64>,
    flags: Vec<Flag>,
}

/// What one observation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Flags raised (new, or raised again with a later `last_seen`).
    pub flags: Vec<Flag>,
    /// Measurement keys the group saw for the first time, with the time: to persist.
    pub seen: Vec<(Key, u64)>,
    /// The flags active on this node now (its own and its group's), as `input.anomalies`.
    pub active: Vec<Value>,
}

/// A fingerprint of one machine's report: whose, and when last.
#[derive(Debug)]
struct Print {
    node: String,
    group: String,
    last_seen: u64,
}

/// The detector of every group.
#[derive(Debug, Default)]
pub struct Detector {
    cfg: DetectorConfig,
    groups: HashMap<String, Group>,
    prints: HashMap<[u8; 32], Print>,
}

fn fnv(pid: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pid.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Median and MAD (scaled by 1.4826, a standard deviation for normal data).
fn robust(samples: &VecDeque<f64>) -> (f64, f64) {
    let mut v: Vec<f64> = samples.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    let med = median(&v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    (med, 1.4826 * median(&dev))
}

fn median(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Detector {
    /// An empty detector.
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            groups: HashMap::new(),
            prints: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Whether `node` of `group` ran process executables new to the group at its last
    /// attestation (its process list must be looked at again, even unchanged).
    pub fn has_pending(&self, group: &str, node: &str) -> bool {
        self.groups
            .get(group)
            .and_then(|g| g.nodes.get(node))
            .is_some_and(|n| !n.pending.is_empty())
    }

    /// Machine fingerprints held.
    #[cfg(test)]
    pub fn prints_len(&self) -> usize {
        self.prints.len()
    }

    /// Measurement keys `group` holds.
    #[cfg(test)]
    pub fn seen_len(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |g| g.seen.len())
    }

    /// Remember that `group` has seen the measurement `key` since `first_seen` (from the
    /// store, at start): part of its baseline.
    pub fn seed(&mut self, group: &str, key: Key, first_seen: u64) {
        if let Some(g) = self.group(group) {
            g.seen.entry(key).or_insert(Seen {
                first_seen,
                ..Seen::default()
            });
        }
    }

    /// Put back a stored flag (at start), so that it stays active for its node.
    pub fn restore(&mut self, flag: Flag) {
        let Some(g) = self.group(&flag.group) else {
            return;
        };
        if flag.node_id.is_empty() {
            g.flags.push(flag);
        } else {
            let n = g.nodes.len() as u32;
            let node = g
                .nodes
                .entry(flag.node_id.clone())
                .or_insert_with(|| NodeState {
                    index: n,
                    ..NodeState::default()
                });
            node.flags.push(flag);
        }
    }

    fn group(&mut self, name: &str) -> Option<&mut Group> {
        if !self.groups.contains_key(name) && self.groups.len() >= self.cfg.max_groups {
            return None;
        }
        Some(self.groups.entry(name.to_string()).or_default())
    }

    /// Compare one attestation with its group, and remember it.
    pub fn observe(&mut self, o: &Observation) -> Outcome {
        let cfg = self.cfg.clone();
        let s = Subject {
            group: &o.group,
            workload_id: &o.workload_id,
            now: o.now,
        };
        let mut out = Outcome::default();
        let last = self
            .groups
            .get(&o.group)
            .and_then(|g| g.nodes.get(&o.node_id))
            .map(|n| (n.print, n.quote_print))
            .unwrap_or_default();
        let ((print, quote_print), cloned) = self.fingerprints(o, &s, last);
        let Some(g) = self.group(&o.group) else {
            return out;
        };
        let baseline = g.seen.is_empty() && g.nodes.is_empty();
        if !g.nodes.contains_key(&o.node_id) && g.nodes.len() >= cfg.max_nodes {
            return out;
        }
        let next = g.nodes.len() as u32;
        let active_nodes = g
            .nodes
            .values()
            .filter(|n| n.last_attest.is_some_and(|t| t + cfg.window >= o.now))
            .count()
            + usize::from(
                g.nodes
                    .get(&o.node_id)
                    .is_none_or(|n| n.last_attest.is_none_or(|t| t + cfg.window < o.now)),
            );
        let node_index = g
            .nodes
            .entry(o.node_id.clone())
            .or_insert_with(|| NodeState {
                index: next,
                ..NodeState::default()
            })
            .index;
        let mut raised = Vec::new();

        // new_measurement and fleet_change.
        let pending = g
            .nodes
            .get_mut(&o.node_id)
            .map(|n| std::mem::take(&mut n.pending))
            .unwrap_or_default();
        let mut still_pending = HashSet::new();
        let mut new: Vec<&Measurement> = Vec::new();
        for m in &o.measurements {
            let key = m.key();
            match g.seen.get_mut(&key) {
                // A process executable new to the group counts once it is still running at
                // the node's next attestation (a compiler, a cron job, a shell come and go).
                None if !baseline && m.kind == "process" && !pending.contains(&key) => {
                    still_pending.insert(key);
                }
                None => {
                    g.seen.insert(
                        key,
                        Seen {
                            first_seen: o.now,
                            nodes: if baseline {
                                Vec::new()
                            } else {
                                vec![node_index]
                            },
                            fleet_flagged: false,
                        },
                    );
                    out.seen.push((key, o.now));
                    if !baseline {
                        new.push(m);
                    }
                }
                Some(seen) if !seen.nodes.is_empty() => {
                    if seen.first_seen + cfg.window < o.now {
                        seen.nodes = Vec::new();
                        continue;
                    }
                    if !seen.nodes.contains(&node_index) {
                        seen.nodes.push(node_index);
                    }
                    let k = seen.nodes.len();
                    if !seen.fleet_flagged
                        && k >= cfg.fleet_min_nodes
                        && (k as f64) >= cfg.fleet_fraction * active_nodes as f64
                    {
                        seen.fleet_flagged = true;
                        let mins = (o.now - seen.first_seen).div_ceil(60);
                        raised.push(Flag::new(
                            Kind::FleetChange,
                            &s,
                            "",
                            &hex::encode(key),
                            format!(
                                "{} appeared on {k} of {active_nodes} nodes of group {} within \
                                 {mins} min: a change pushed to the fleet (an unannounced \
                                 rollout, or an attacker's)",
                                m.describe(),
                                o.group
                            ),
                            json!({"kind": m.kind, "name": m.name, "value": m.value,
                                   "nodes": k, "active_nodes": active_nodes,
                                   "since": seen.first_seen}),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        if let Some(n) = g.nodes.get_mut(&o.node_id) {
            n.pending = if o.processes.is_some() {
                still_pending
            } else {
                pending
            };
        }
        let group_nodes = g.nodes.len();
        for m in new.iter().take(cfg.max_new_per_attestation) {
            raised.push(Flag::new(
                Kind::NewMeasurement,
                &s,
                &o.node_id,
                &hex::encode(m.key()),
                format!(
                    "{} never seen before in group {} ({group_nodes} nodes)",
                    m.describe(),
                    o.group
                ),
                json!({"kind": m.kind, "name": m.name, "value": m.value}),
            ));
        }
        if new.len() > cfg.max_new_per_attestation {
            let more = new.len() - cfg.max_new_per_attestation;
            raised.push(Flag::new(
                Kind::NewMeasurement,
                &s,
                &o.node_id,
                &format!("more@{}", o.now),
                format!(
                    "…and {more} more measurements never seen before in group {}",
                    o.group
                ),
                json!({"more": more}),
            ));
        }
        if g.seen.len() > cfg.max_measurements {
            let mut ages: Vec<u64> = g.seen.values().map(|v| v.first_seen).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 10];
            g.seen.retain(|_, v| v.first_seen > cut);
        }

        // rate_outlier.
        let Some(node) = g.nodes.get_mut(&o.node_id) else {
            return out;
        };
        let prev_attest = node.last_attest.replace(o.now);
        if let Some(prev) = prev_attest {
            let x = o.now.saturating_sub(prev) as f64;
            if g.intervals.len() >= cfg.min_samples {
                let (med, mad) = robust(&g.intervals);
                if (x - med).abs() > (cfg.outlier_mads * mad).max(cfg.rate_floor_secs) {
                    raised.push(Flag::new(
                        Kind::RateOutlier,
                        &s,
                        &o.node_id,
                        "interval",
                        format!(
                            "node {} attested {x:.0} s after its previous attestation; group {}'s \
                             median interval is {med:.0} s (MAD {mad:.1} s, {} samples)",
                            o.node_id,
                            o.group,
                            g.intervals.len()
                        ),
                        json!({"interval_secs": x, "median": med, "mad": mad,
                               "samples": g.intervals.len()}),
                    ));
                }
            }
            g.intervals.push_back(x);
            if g.intervals.len() > cfg.samples {
                g.intervals.pop_front();
            }
        }

        // tpm_counter.
        // Processes left out of the observation are the node's last ones, unchanged.
        let procs: HashSet<u64> = match &o.processes {
            Some(p) => p
                .iter()
                .filter(|p| p.0 > 1)
                .map(|(pid, name, _)| fnv(*pid, name))
                .collect(),
            None => node.procs.clone(),
        };
        if let Some(c) = o.counters {
            if let Some(p) = node.counters {
                let mut tpm = |what: &str, reason: String| {
                    raised.push(Flag::new(
                        Kind::TpmCounter,
                        &s,
                        &o.node_id,
                        &format!("{what}:{}:{}:{:x}", c.reset, c.restart, c.firmware),
                        reason,
                        json!({"what": what,
                               "before": {"reset_count": p.reset, "restart_count": p.restart,
                                          "firmware_version": format!("{:016x}", p.firmware)},
                               "now": {"reset_count": c.reset, "restart_count": c.restart,
                                       "firmware_version": format!("{:016x}", c.firmware)}}),
                    ))
                };
                if c.reset < p.reset {
                    tpm(
                        "reset_down",
                        format!(
                            "resetCount went down from {} to {} on node {}: a TPM that was \
                             swapped, cleared or restored from a snapshot, or an old quote's \
                             state replayed",
                            p.reset, c.reset, o.node_id
                        ),
                    );
                } else if c.reset == p.reset && c.restart < p.restart {
                    tpm(
                        "restart_down",
                        format!(
                            "restartCount went down from {} to {} within resetCount {} on node \
                             {}: a TPM that was swapped or restored from a snapshot",
                            p.restart, c.restart, c.reset, o.node_id
                        ),
                    );
                } else if c.reset == p.reset && c.restart > p.restart {
                    tpm(
                        "restart_up",
                        format!(
                            "restartCount rose from {} to {} on node {}: the TPM was resumed \
                             (TPM2_Shutdown(STATE) then Startup(STATE): a suspend or hibernation, \
                             or software restarting the TPM)",
                            p.restart, c.restart, o.node_id
                        ),
                    );
                } else if c.reset > p.reset && procs.len() >= 10 {
                    let same = procs.intersection(&node.procs).count();
                    let union = procs.union(&node.procs).count().max(1);
                    if same * 10 >= union * 8 {
                        tpm(
                            "reset_without_reboot",
                            format!(
                                "resetCount rose from {} to {} on node {} but {same} of its {} \
                                 processes run with the same PIDs as before: the TPM was reset \
                                 without the machine rebooting (PCRs emptied to be extended \
                                 again)",
                                p.reset,
                                c.reset,
                                o.node_id,
                                procs.len()
                            ),
                        );
                    }
                }
                if c.firmware != p.firmware {
                    tpm(
                        "firmware",
                        format!(
                            "TPM firmware version changed from {:016x} to {:016x} on node {}: a \
                             TPM firmware update, or another TPM",
                            p.firmware, c.firmware, o.node_id
                        ),
                    );
                }
            }
            node.counters = Some(c);
        }
        node.procs = procs;
        if print.is_some() {
            node.print = print;
        }
        if quote_print.is_some() {
            node.quote_print = quote_print;
        }

        // cloned_measurements (the fingerprints were compared before taking the group).
        for (what, other, other_group, at) in cloned {
            raised.push(Flag::new(
                Kind::ClonedMeasurements,
                &s,
                &o.node_id,
                &format!("{what}:{other}"),
                format!(
                    "node {} reported {} that node {other} (group {other_group}) reported at \
                     {at}: measurements collected on another machine replayed, or two nodes \
                     on one machine",
                    o.node_id,
                    match what {
                        "quote" =>
                            "the same TPM quote clock (clock, resetCount, restartCount, \
                                    firmware)",
                        _ =>
                            "the same host name and process table (every PID, name and \
                              executable digest)",
                    }
                ),
                json!({"what": what, "other_node": other, "other_group": other_group,
                       "other_seen": at}),
            ));
        }

        // Keep the flags: the node's, and the group's.
        for f in raised {
            let list = if f.node_id.is_empty() {
                &mut g.flags
            } else {
                match g.nodes.get_mut(&o.node_id) {
                    Some(n) => &mut n.flags,
                    None => continue,
                }
            };
            match list.iter_mut().find(|x| x.id == f.id) {
                Some(x) => {
                    x.last_seen = f.last_seen;
                    x.count += 1;
                    out.flags.push(x.clone());
                }
                None => {
                    list.push(f.clone());
                    out.flags.push(f);
                }
            }
            list.retain(|x| x.last_seen + cfg.window >= o.now);
            if list.len() > 64 {
                list.remove(0);
            }
        }
        out.active = self.active(&o.group, &o.node_id, o.now);
        out
    }

    /// The flags active on `node` of `group` at `now` (its own and its group's), as policies
    /// see them.
    pub fn active(&self, group: &str, node: &str, now: u64) -> Vec<Value> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        let own = g.nodes.get(node).map(|n| n.flags.as_slice()).unwrap_or(&[]);
        own.iter()
            .chain(g.flags.iter())
            .filter(|f| f.last_seen + self.cfg.window >= now)
            .map(Flag::policy_view)
            .collect()
    }

    /// Compare `o`'s machine fingerprints with other nodes', remember them; returns the
    /// matches: what matched, the other node, its group, when it reported it.
    #[allow(clippy::type_complexity)]
    fn fingerprints(
        &mut self,
        o: &Observation,
        s: &Subject<'_>,
        last: (Option<[u8; 32]>, Option<[u8; 32]>),
    ) -> (
        (Option<[u8; 32]>, Option<[u8; 32]>),
        Vec<(&'static str, String, String, u64)>,
    ) {
        let mut prints: Vec<(&'static str, [u8; 32])> = Vec::new();
        let mut print = None;
        let mut quote_print = None;
        if o.processes.is_none()
            && let Some(fp) = last.0
        {
            prints.push(("processes", fp));
        } else if let Some(procs) = &o.processes
            && !procs.is_empty()
        {
            let mut list: Vec<&(u64, String, String)> = procs.iter().collect();
            list.sort();
            let mut h = Sha256::new();
            h.update(b"host\0");
            h.update(o.hostname.as_bytes());
            for (pid, name, exe) in list {
                h.update(pid.to_be_bytes());
                h.update(name.as_bytes());
                h.update(b"\0");
                h.update(exe.as_bytes());
                h.update(b"\0");
            }
            let fp: [u8; 32] = h.finalize().into();
            print = Some(fp);
            prints.push(("processes", fp));
        }
        if let Some(c) = o.counters {
            let mut h = Sha256::new();
            h.update(b"quote\0");
            for v in [
                c.clock,
                u64::from(c.reset),
                u64::from(c.restart),
                c.firmware,
            ] {
                h.update(v.to_be_bytes());
            }
            let fp: [u8; 32] = h.finalize().into();
            quote_print = Some(fp);
            prints.push(("quote", fp));
        }
        // A node's previous fingerprint of a kind is replaced by its new one: the map holds
        // at most two a node.
        for (old, new) in [(last.0, print), (last.1, quote_print)] {
            if let (Some(old), Some(new)) = (old, new)
                && old != new
                && self.prints.get(&old).is_some_and(|p| p.node == o.node_id)
            {
                self.prints.remove(&old);
            }
        }
        let window = self.cfg.window;
        let mut found = Vec::new();
        for (what, fp) in prints {
            match self.prints.get_mut(&fp) {
                Some(p) if p.node != o.node_id && p.last_seen + window >= s.now => {
                    found.push((what, p.node.clone(), p.group.clone(), p.last_seen));
                }
                Some(p) if p.node == o.node_id => p.last_seen = s.now,
                _ => {
                    self.prints.insert(
                        fp,
                        Print {
                            node: o.node_id.clone(),
                            group: o.group.clone(),
                            last_seen: s.now,
                        },
                    );
                }
            }
        }
        // Bounded: forget what is past the window once the map grows, everything if that is
        // not enough (only detection is lost).
        if self.prints.len() > 4 * self.cfg.max_nodes {
            self.prints.retain(|_, p| p.last_seen + window >= s.now);
            if self.prints.len() > 4 * self.cfg.max_nodes {
                self.prints.clear();
            }
        }
        ((print, quote_print), found)
    }

    /// Record how long the verification of `node`'s attestation in `group` took; a
    /// `latency_outlier` flag when it is far from the group's.
    pub fn observe_latency(
        &mut self,
        group: &str,
        node: &str,
        workload_id: &str,
        millis: f64,
        now: u64,
    ) -> Option<Flag> {
        let cfg = self.cfg.clone();
        let g = self.groups.get_mut(group)?;
        let mut flag = None;
        if g.latencies.len() >= cfg.min_samples {
            let (med, mad) = robust(&g.latencies);
            if (millis - med).abs() > (cfg.outlier_mads * mad).max(cfg.latency_floor_ms) {
                let s = Subject {
                    group,
                    workload_id,
                    now,
                };
                flag = Some(Flag::new(
                    Kind::LatencyOutlier,
                    &s,
                    node,
                    "latency",
                    format!(
                        "verifying node {node}'s evidence took {millis:.1} ms; group {group}'s \
                         median is {med:.1} ms (MAD {mad:.1} ms, {} samples)",
                        g.latencies.len()
                    ),
                    json!({"millis": millis, "median": med, "mad": mad,
                           "samples": g.latencies.len()}),
                ));
            }
        }
        g.latencies.push_back(millis);
        if g.latencies.len() > cfg.samples {
            g.latencies.pop_front();
        }
        let f = flag?;
        let n = g.nodes.get_mut(node)?;
        match n.flags.iter_mut().find(|x| x.id == f.id) {
            Some(x) => {
                x.last_seen = now;
                x.count += 1;
                Some(x.clone())
            }
            None => {
                n.flags.push(f.clone());
                Some(f)
            }
        }
    }
}

//! Each flag on recorded real measurements of this machine (`testdata/anomaly/`, see its
//! SOURCES.md entry), with the change injected, and never on the unchanged recording.
//!
//! The fleet: five nodes of group `web`, each reporting the recorded software measurements
//! (signed, then verified by the real `software` verifier into the claims a policy sees) under
//! its own host name, and, as TPM evidence would, the counters of one real TPM quote each
//! (parsed from the quotes in testdata: swtpm, QEMU and Azure vTPMs) and the real boot PCRs of
//! the QEMU/OVMF recording. Time is an input: rounds are 30 s apart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};

use vouch_core::SoftwareMeasurements;
use vouch_evidence::{AgentKey, EvidenceVerifier as _, SoftwareVerifier, VerifyContext};

use super::detector::{Detector, Measurement};
use super::{Anomalies, Counters, DetectorConfig, Kind, Observation};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn recording(name: &str) -> SoftwareMeasurements {
    let bytes = std::fs::read(repo(&format!("testdata/anomaly/{name}"))).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Re-record this machine's measurements: `cargo test -p vouch-server --lib
/// anomaly::tests::record -- --ignored` (and once more under `unshare -pf --mount-proc` for
/// `this_machine_fresh_pids.json`, with `VOUCH_RECORD_AS` set to that name).
#[test]
#[ignore]
fn record() {
    let mut c = vouch_evidence::SoftwareCollector::new(vouch_evidence::CollectConfig {
        workload_name: "web".into(),
        exe: PathBuf::from("/bin/ls"),
        files: vec![
            PathBuf::from("/etc/os-release"),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("/etc/ssl/openssl.cnf"),
        ],
        image_digest: None,
        root: PathBuf::from("/"),
    });
    let m = c.collect("recorded", crate::unix_now()).unwrap();
    let name = std::env::var("VOUCH_RECORD_AS").unwrap_or_else(|_| "this_machine.json".to_string());
    let dir = repo("testdata/anomaly");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// The counters of the real TPM quotes in testdata (TPMS_ATTEST clockInfo and firmware):
/// Trustee's swtpm quote, the SeaBIOS QEMU guest's, the OVMF QEMU guest's (swtpm 0.10.1) and
/// two Azure vTPM quotes.
fn real_quote_counters() -> Vec<Counters> {
    use base64::Engine as _;
    let b64 = |s: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap())
            .unwrap()
    };
    let hex = |s: &Value| hex::decode(s.as_str().unwrap()).unwrap();
    let json =
        |p: &str| -> Value { serde_json::from_slice(&std::fs::read(repo(p)).unwrap()).unwrap() };
    let attests = [
        b64(&json("testdata/tpm/trustee_tpm_evidence.json")["tpm_quote"]["message"]),
        b64(&json("crates/vouch-tpm/tests/data/seabios_qemu_tpm_boot.json")["quote_data"]),
        hex(
            &json("crates/vouch-tpm/tests/data/qemu_firmware_logs.json")["ovmf"]["quote"]["attest"],
        ),
        hex(&json("testdata/azure/snp/tpm-quote-v1.json")["message"]),
        hex(&json("testdata/azure/tdx/tpm-quote-v1.json")["message"]),
    ];
    attests
        .iter()
        .map(|a| {
            let at = vouch_tpm::TpmsAttest::parse(a).unwrap();
            Counters {
                clock: at.clock.clock,
                reset: at.clock.reset_count,
                restart: at.clock.restart_count,
                firmware: at.firmware_version,
            }
        })
        .collect()
}

/// The real boot PCRs (SHA-256 0–9) the QEMU/OVMF guest's kernel read.
fn real_pcrs() -> serde_json::Map<String, Value> {
    let qemu: Value = serde_json::from_slice(
        &std::fs::read(repo("crates/vouch-tpm/tests/data/qemu_firmware_logs.json")).unwrap(),
    )
    .unwrap();
    qemu["ovmf"]["pcrs"]["sha256"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v.clone()))
        .collect()
}

/// The claims the real software verifier makes of `m`, as signed by a node.
fn claims_of(m: &SoftwareMeasurements) -> Value {
    let key = AgentKey::generate().unwrap();
    let ev = vouch_evidence::sign_software_evidence(&key, "k", m).unwrap();
    SoftwareVerifier
        .verify(
            &ev,
            &VerifyContext {
                public_key: key.public_key(),
                signers: &[],
                tpm: None,
                tee: None,
                now: 0,
                parts: None,
            },
        )
        .unwrap()
        .claims
}

struct Fleet {
    d: Detector,
    base: SoftwareMeasurements,
    counters: Vec<Counters>,
    pcrs: serde_json::Map<String, Value>,
    now: u64,
}

impl Fleet {
    fn new(cfg: DetectorConfig) -> Self {
        let counters = real_quote_counters();
        assert_eq!(counters.len(), 5, "{counters:?}");
        Self {
            d: Detector::new(cfg),
            base: recording("this_machine.json"),
            counters,
            pcrs: real_pcrs(),
            now: 1_764_900_000,
        }
    }

    fn nodes(&self) -> usize {
        self.counters.len()
    }

    /// Node `i`'s observation, its measurements changed by `change` first.
    fn observe(
        &mut self,
        i: usize,
        change: impl FnOnce(&mut SoftwareMeasurements, &mut Value, &mut Counters),
    ) -> Vec<super::Flag> {
        let mut m = self.base.clone();
        m.hostname = format!("node-{i}");
        let mut tpm = serde_json::json!({"pcrs": {"sha256": self.pcrs}});
        let mut c = self.counters[i];
        c.clock += self.now - 1_764_900_000;
        change(&mut m, &mut tpm, &mut c);
        let mut claims = claims_of(&m);
        claims["tpm"] = tpm;
        let o = Observation {
            group: "web".into(),
            node_id: format!("node-{i}"),
            workload_id: format!("node-{i}/web"),
            now: self.now,
            measurements: super::measurements(&claims, &[]),
            counters: Some(c),
            hostname: m.hostname.clone(),
            processes: super::processes(&claims),
        };
        self.d.observe(&o).flags
    }

    /// A round of every node, unchanged; returns every flag.
    fn round(&mut self) -> Vec<super::Flag> {
        self.now += 30;
        (0..self.nodes())
            .flat_map(|i| self.observe(i, |_, _, _| {}))
            .collect()
    }
}

fn baseline() -> Fleet {
    let mut f = Fleet::new(DetectorConfig::default());
    for _ in 0..3 {
        let flags = f.round();
        assert!(flags.is_empty(), "baseline raised {flags:#?}");
    }
    f.now += 30;
    f
}

#[test]
fn the_recorded_fleet_raises_nothing() {
    let mut f = baseline();
    for _ in 0..30 {
        let flags = f.round();
        assert!(flags.is_empty(), "{flags:#?}");
    }
    // The recording is a real machine's: packages, processes with executables, files.
    let claims = claims_of(&f.base);
    let ms = super::measurements(&claims, &[]);
    assert!(ms.iter().filter(|m| m.kind == "package").count() > 100);
    assert!(ms.iter().any(|m| m.kind == "process"));
    assert!(
        ms.iter()
            .any(|m| m.kind == "file" && m.name == "/etc/passwd")
    );
}

#[test]
fn new_measurement_a_changed_file_pcr_or_package_on_one_node() {
    let mut f = baseline();
    // One byte of /etc/passwd's digest changed on node 3.
    let flags = f.observe(3, |m, _, _| {
        let p = m
            .files
            .iter_mut()
            .find(|x| x.path == "/etc/passwd")
            .unwrap();
        let d = p.sha256.as_mut().unwrap();
        let flipped = if d.starts_with('0') { "1" } else { "0" };
        d.replace_range(0..1, flipped);
    });
    assert_eq!(flags.len(), 1, "{flags:#?}");
    let fl = &flags[0];
    assert_eq!(fl.kind, Kind::NewMeasurement);
    assert_eq!(fl.node_id, "node-3");
    assert!(
        fl.reason
            .contains("of file /etc/passwd never seen before in group web (4 nodes)")
            || fl
                .reason
                .contains("of file /etc/passwd never seen before in group web (5 nodes)"),
        "{}",
        fl.reason
    );
    // Seen now: the same again on node 3, or on node 1, is not new.
    f.now += 30;
    // PCR 4 (the boot loader) another value on node 1.
    let flags = f.observe(1, |_, tpm, _| {
        tpm["pcrs"]["sha256"]["4"] = Value::String("ab".repeat(32));
    });
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0].reason.contains("of pcr sha256:4"),
        "{}",
        flags[0].reason
    );
    // A package upgraded on node 2.
    let flags = f.observe(2, |m, _, _| {
        m.packages.insert("openssl".into(), "9.9.9-1".into());
    });
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0]
            .reason
            .starts_with("package openssl 9.9.9-1 never seen"),
        "{}",
        flags[0].reason
    );
    // The detector's view for the policy: the node's active flags.
    let active = f.d.active("web", "node-2", f.now);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["kind"], "new_measurement");
    assert!(f.d.active("web", "node-0", f.now).is_empty());
}

#[test]
fn new_measurement_an_ima_entry_never_measured_in_the_group() {
    // Lines as the kernel printed them (the template hashes a kernel computed).
    let real = "10 8a07230eaa15a29758948e9ecc34319fab650c10 ima-ng sha256:d1992ff6ac5beb7ea77ae32841538b9b8b8e6c55190be257296741c88c0da203 /etc/securetty\n\
                10 879614a97374eeab1fb579765b52437d724a8f31 ima-ng sha256:498cd2a39fd254eeff87a627291a39db405635f43f406fd5f698331ca2176034 /etc/shadow\n";
    let entries = vouch_tpm::parse_ima_log(real).unwrap();
    let mut d = Detector::new(DetectorConfig::default());
    let obs = |node: &str, ms: Vec<Measurement>, now| Observation {
        group: "db".into(),
        node_id: node.into(),
        workload_id: format!("{node}/db"),
        now,
        measurements: ms,
        ..Default::default()
    };
    assert!(
        d.observe(&obs("a", super::ima_measurements(&entries), 1))
            .flags
            .is_empty()
    );
    assert!(
        d.observe(&obs("b", super::ima_measurements(&entries), 2))
            .flags
            .is_empty()
    );
    // /etc/shadow measured with another content on b.
    let mut changed = entries.clone();
    changed[1].file_hash[0] ^= 1;
    let flags = d
        .observe(&obs("b", super::ima_measurements(&changed), 3))
        .flags;
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0]
            .reason
            .contains("of ima /etc/shadow never seen before in group db"),
        "{}",
        flags[0].reason
    );
}

#[test]
fn fleet_change_the_same_new_package_on_three_of_five_nodes() {
    let mut f = baseline();
    let bump = |m: &mut SoftwareMeasurements, _: &mut Value, _: &mut Counters| {
        m.packages.insert("libc6".into(), "2.99-1".into());
    };
    let first = f.observe(0, bump);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].kind, Kind::NewMeasurement);
    f.now += 10;
    assert!(f.observe(1, bump).is_empty(), "two of five: not yet");
    f.now += 10;
    let flags = f.observe(2, bump);
    assert_eq!(flags.len(), 1, "{flags:#?}");
    let fl = &flags[0];
    assert_eq!(fl.kind, Kind::FleetChange);
    assert_eq!(fl.node_id, "", "a flag of the whole group");
    assert!(
        fl.reason
            .starts_with("package libc6 2.99-1 appeared on 3 of 5 nodes of group web within 1 min"),
        "{}",
        fl.reason
    );
    // Raised once; every node of the group sees it.
    f.now += 10;
    assert!(f.observe(3, bump).is_empty());
    assert!(
        f.d.active("web", "node-4", f.now)
            .iter()
            .any(|a| a["kind"] == "fleet_change")
    );
}

#[test]
fn fleet_change_not_for_changes_spread_past_the_window() {
    let mut f = baseline();
    let bump = |m: &mut SoftwareMeasurements, _: &mut Value, _: &mut Counters| {
        m.packages.insert("libc6".into(), "2.99-1".into());
    };
    for i in 0..f.nodes() {
        let flags = f.observe(i, bump);
        assert!(
            flags.iter().all(|x| x.kind != Kind::FleetChange),
            "{flags:#?}"
        );
        f.now += 2 * 3600;
    }
}

#[test]
fn tpm_counter_lowered_resumed_or_reset_without_a_reboot() {
    let mut f = baseline();
    // resetCount lowered on node 2 (a TPM swapped or a snapshot restored).
    let flags = f.observe(2, |_, _, c| {
        c.reset = c.reset.saturating_sub(1).min(c.reset.wrapping_sub(1))
    });
    let fl = flags.iter().find(|x| x.kind == Kind::TpmCounter).unwrap();
    assert!(
        fl.reason.starts_with("resetCount went down from"),
        "{}",
        fl.reason
    );
    f.now += 30;
    // restartCount up on node 1: the TPM resumed.
    let flags = f.observe(1, |_, _, c| c.restart += 1);
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0].reason.starts_with("restartCount rose from"),
        "{}",
        flags[0].reason
    );
    f.now += 30;
    // resetCount up on node 3 with the same processes, same PIDs: no reboot happened.
    let flags = f.observe(3, |_, _, c| {
        c.reset += 1;
        c.restart = 0;
    });
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0].reason.contains("same PIDs as before"),
        "{}",
        flags[0].reason
    );
    // resetCount up on node 4 whose processes are those of a fresh boot (the recording made
    // in a new PID namespace): a reboot, nothing to say.
    let fresh = recording("this_machine_fresh_pids.json");
    let flags = f.observe(4, |m, _, c| {
        c.reset += 1;
        c.restart = 0;
        m.processes = fresh.processes.clone();
    });
    assert!(flags.is_empty(), "{flags:#?}");
    // Another TPM firmware on node 0.
    f.now += 30;
    let flags = f.observe(0, |_, _, c| c.firmware ^= 1);
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0].reason.starts_with("TPM firmware version changed"),
        "{}",
        flags[0].reason
    );
}

#[test]
fn cloned_measurements_one_node_replays_anothers() {
    let mut f = baseline();
    // Node 1 sends node 3's measurements: its host name and process table.
    let flags = f.observe(1, |m, _, _| m.hostname = "node-3".into());
    assert_eq!(flags.len(), 1, "{flags:#?}");
    let fl = &flags[0];
    assert_eq!(fl.kind, Kind::ClonedMeasurements);
    assert!(
        fl.reason
            .starts_with("node node-1 reported the same host name and process table"),
        "{}",
        fl.reason
    );
    assert_eq!(fl.detail["other_node"], "node-3");
    // Node 2 replays node 0's quote counters (clock, resetCount, restartCount, firmware)
    // of the last round.
    let mut c0 = f.counters[0];
    c0.clock += f.now - 30 - 1_764_900_000;
    f.now += 30;
    let flags = f.observe(2, |_, _, c| *c = c0);
    assert!(
        flags
            .iter()
            .any(|x| x.kind == Kind::ClonedMeasurements && x.detail["what"] == "quote"),
        "{flags:#?}"
    );
}

#[test]
fn rate_outlier_a_node_attesting_far_too_often() {
    let mut f = Fleet::new(DetectorConfig {
        min_samples: 20,
        ..DetectorConfig::default()
    });
    for _ in 0..8 {
        assert!(f.round().is_empty());
    }
    // Node 2 attests again 1 s after its last one (the group: every 30 s).
    f.now += 1;
    let flags = f.observe(2, |_, _, _| {});
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert_eq!(flags[0].kind, Kind::RateOutlier);
    assert!(
        flags[0].reason.starts_with("node node-2 attested 1 s after its previous attestation; group web's median interval is 30 s"),
        "{}",
        flags[0].reason
    );
}

#[test]
fn rate_and_latency_need_enough_samples() {
    let mut d = Detector::new(DetectorConfig::default());
    let o = |now| Observation {
        group: "g".into(),
        node_id: "n".into(),
        workload_id: "n/g".into(),
        now,
        ..Default::default()
    };
    d.observe(&o(0));
    d.observe(&o(30));
    assert!(
        d.observe(&o(31)).flags.is_empty(),
        "two samples decide nothing"
    );
    for i in 0..5 {
        assert!(
            d.observe_latency("g", "n", "n/g", 2.0 + f64::from(i), 40)
                .is_none()
        );
    }
    assert!(d.observe_latency("g", "n", "n/g", 5_000.0, 40).is_none());
}

#[test]
fn latency_outlier_evidence_slow_to_verify() {
    let mut d = Detector::new(DetectorConfig::default());
    d.observe(&Observation {
        group: "g".into(),
        node_id: "n".into(),
        workload_id: "n/g".into(),
        now: 1,
        ..Default::default()
    });
    // Latencies as measured by `vouch bench` on this machine: a few milliseconds.
    for i in 0..40 {
        assert!(
            d.observe_latency("g", "n", "n/g", 3.0 + f64::from(i % 5) * 0.2, 2)
                .is_none()
        );
    }
    let f = d.observe_latency("g", "n", "n/g", 900.0, 3).unwrap();
    assert_eq!(f.kind, Kind::LatencyOutlier);
    assert!(
        f.reason
            .starts_with("verifying node n's evidence took 900.0 ms; group g's median is 3.4 ms"),
        "{}",
        f.reason
    );
}

#[test]
fn fingerprints_are_two_a_node_however_often_it_attests() {
    let mut f = baseline();
    for _ in 0..20 {
        assert!(f.round().is_empty());
    }
    assert_eq!(f.d.prints_len(), 2 * f.nodes());
}

#[test]
fn memory_is_bounded_per_group() {
    let mut d = Detector::new(DetectorConfig {
        max_measurements: 1000,
        ..DetectorConfig::default()
    });
    for round in 0..50u64 {
        let ms = (0..100)
            .map(|i| Measurement {
                kind: "package",
                name: format!("p{i}"),
                value: format!("{round}"),
            })
            .collect();
        d.observe(&Observation {
            group: "g".into(),
            node_id: "n".into(),
            workload_id: "n/g".into(),
            now: round,
            measurements: ms,
            ..Default::default()
        });
    }
    assert!(d.seen_len("g") <= 1100, "{}", d.seen_len("g"));
}

#[test]
fn parts_unchanged_since_the_last_attestation_are_skipped() {
    let a = Anomalies::new(DetectorConfig::default());
    let base = recording("this_machine.json");
    let key = AgentKey::generate().unwrap();
    let ev = vouch_evidence::sign_software_evidence(&key, "k", &base).unwrap();
    let ctx = VerifyContext {
        public_key: key.public_key(),
        signers: &[],
        tpm: None,
        tee: None,
        now: 0,
        parts: None,
    };
    let v = SoftwareVerifier.verify(&ev, &ctx).unwrap();
    let first = a.observation("n", "n/web", &v, &ev, 1);
    let again = a.observation("n", "n/web", &v, &ev, 2);
    assert!(first.measurements.len() > again.measurements.len() + 100);
    assert!(again.processes.is_none());
}

/// A process that runs with an executable the group never saw: still running at the node's
/// next attestation, it is flagged; gone by then (a compiler, a cron job), it is not.
#[test]
fn new_measurement_a_process_executable_that_stays_not_one_that_comes_and_goes() {
    let mut f = baseline();
    let miner: vouch_core::ProcessInfo = serde_json::from_value(serde_json::json!({
        "pid": 4242, "name": "xmrig", "exe": "/tmp/.x/xmrig",
        "exe_sha256": vouch_tpm::HashAlg::Sha256.digest(&[b"xmrig".as_slice()])
            .iter().map(|b| format!("{b:02x}")).collect::<String>(),
    }))
    .unwrap();
    let with = |p: vouch_core::ProcessInfo| {
        move |m: &mut SoftwareMeasurements, _: &mut Value, _: &mut Counters| m.processes.push(p)
    };
    assert!(
        f.observe(1, with(miner.clone())).is_empty(),
        "first sighting: pending"
    );
    assert!(
        f.observe(2, with(miner.clone())).is_empty(),
        "node 2's first sighting too"
    );
    f.now += 30;
    let flags = f.observe(1, with(miner.clone()));
    assert_eq!(flags.len(), 1, "{flags:#?}");
    assert!(
        flags[0]
            .reason
            .contains("of process /tmp/.x/xmrig never seen before in group web"),
        "{}",
        flags[0].reason
    );
    // A transient one on node 3: seen once, gone at the next attestation.
    let mut cc = miner.clone();
    cc.exe = Some("/usr/bin/cc1".into());
    cc.exe_sha256 = Some("ab".repeat(32));
    assert!(f.observe(3, with(cc)).is_empty());
    f.now += 30;
    assert!(
        f.observe(3, |_, _, _| {}).is_empty(),
        "gone: nothing to say"
    );
}

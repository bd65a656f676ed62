//! The appraisal pipeline alone, on a real SQLite store, with no HTTP: repeat attestations
//! reuse their appraisal, and no change of a claim, the policy or a reference value is ever
//! answered from the cache; the signature and the nonce are checked on every request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use vouch_core::wire::AttestRequest;
use vouch_core::{
    ArStatus, ErrorKind, NonceKey, ProcessInfo, SoftwareMeasurements, WorkloadMeasurement,
};
use vouch_evidence::{AgentKey, sign_software_evidence};
use vouch_policy::{DEFAULT_POLICY, DEFAULT_POLICY_ID, ReferenceValue};
use vouch_store::{SqliteStore, Store};
use vouch_verifier::{Verifier, VerifierConfig, unix_now};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    verifier: Verifier,
    key: AgentKey,
    key_id: String,
    m: SoftwareMeasurements,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("vouch.db"))
            .await
            .unwrap(),
    );
    let now = unix_now();
    store
        .add_policy(DEFAULT_POLICY_ID, DEFAULT_POLICY, true, now)
        .await
        .unwrap();
    store
        .create_join_token("tokenhash", None, now, now + 600)
        .await
        .unwrap();
    let key = AgentKey::generate().unwrap();
    let e = store
        .enroll("tokenhash", key.public_key(), "host-1", now)
        .await
        .unwrap();
    let exe = "ab".repeat(32);
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: "app".into(),
                value: exe.clone(),
            },
            now,
        )
        .await
        .unwrap();
    let verifier = Verifier::new(
        VerifierConfig {
            audience: "test".into(),
            ..VerifierConfig::default()
        },
        store.clone(),
        vec![NonceKey::new([7; 32])],
        None,
    );
    let m = SoftwareMeasurements {
        hostname: "host-1".into(),
        workload: WorkloadMeasurement {
            name: "app".into(),
            exe_path: "/usr/bin/app".into(),
            exe_sha256: exe,
            ..Default::default()
        },
        kernel: "6.1.0".into(),
        processes: vec![ProcessInfo {
            pid: 10,
            name: "app".into(),
            exe: Some("/usr/bin/app".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    Fixture {
        _dir: dir,
        store,
        verifier,
        key,
        key_id: e.key_id,
        m,
    }
}

impl Fixture {
    /// The error appraising `m` gives.
    async fn refused(&self, m: SoftwareMeasurements) -> vouch_verifier::VerifyError {
        let req = self.request(&m);
        self.verifier.appraise(&req, unix_now()).await.unwrap_err()
    }

    /// Evidence of `m` answering a fresh nonce, collected now.
    fn request(&self, m: &SoftwareMeasurements) -> AttestRequest {
        let mut m = m.clone();
        m.nonce = self.verifier.challenge(unix_now(), rand32()).nonce;
        m.collected_at = unix_now();
        AttestRequest {
            evidence: sign_software_evidence(&self.key, &self.key_id, &m).unwrap(),
            result_audience: None,
        }
    }

    /// Appraise and record `m`; whether the appraisal was reused, and the status.
    async fn attest(&self, m: &SoftwareMeasurements) -> (bool, ArStatus) {
        let a = self
            .verifier
            .appraise(&self.request(m), unix_now())
            .await
            .unwrap();
        let cached = a.cached;
        let r = self.verifier.record(a, "jws".into()).await.unwrap();
        (cached, r.status)
    }
}

fn rand32() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (unix_now() as u8).wrapping_add(i as u8).wrapping_mul(31);
    }
    // Distinct per call: nonce ids must differ.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    b[..8].copy_from_slice(&n.to_be_bytes());
    b
}

#[tokio::test]
async fn a_repeat_attestation_reuses_its_appraisal() {
    let f = fixture().await;
    assert_eq!(f.attest(&f.m).await, (false, ArStatus::Affirming));
    // New nonce, new timestamp, same claims.
    assert_eq!(f.attest(&f.m).await, (true, ArStatus::Affirming));
    assert_eq!(f.attest(&f.m).await, (true, ArStatus::Affirming));
    let s = f.verifier.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 1, 1));
}

/// Every change of a claim is a fresh appraisal, with the verdict a fresh verifier gives.
#[tokio::test]
async fn no_changed_claim_is_answered_from_the_cache() {
    let f = fixture().await;
    assert_eq!(f.attest(&f.m).await, (false, ArStatus::Affirming));
    type Change = Box<dyn Fn(&mut SoftwareMeasurements)>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "executable digest",
            Box::new(|m| m.workload.exe_sha256 = "cd".repeat(32)),
        ),
        ("hostname", Box::new(|m| m.hostname = "host-2".into())),
        ("kernel", Box::new(|m| m.kernel = "6.1.1".into())),
        (
            "process added",
            Box::new(|m| {
                m.processes.push(ProcessInfo {
                    pid: 11,
                    name: "telnetd".into(),
                    exe: Some("/usr/sbin/telnetd".into()),
                    ..Default::default()
                })
            }),
        ),
        ("process pid", Box::new(|m| m.processes[0].pid = 12)),
        (
            "package",
            Box::new(|m| {
                m.packages.insert("openssl".into(), "3.0.11".into());
            }),
        ),
        (
            "a measured file",
            Box::new(|m| {
                m.files.push(vouch_core::FileMeasurement {
                    path: "/etc/app.conf".into(),
                    sha256: Some("ef".repeat(32)),
                    ..Default::default()
                })
            }),
        ),
        (
            "a listening socket",
            Box::new(|m| {
                m.listening.push(vouch_core::ListeningSocket {
                    proto: "tcp".into(),
                    address: "0.0.0.0".into(),
                    port: 23,
                })
            }),
        ),
        (
            "one byte of the exe path",
            Box::new(|m| m.workload.exe_path = "/usr/bin/apq".into()),
        ),
    ];
    let fresh = Verifier::new(
        VerifierConfig {
            audience: "test".into(),
            appraisal_cache_entries: 0,
            ..VerifierConfig::default()
        },
        f.store.clone(),
        vec![NonceKey::new([7; 32])],
        None,
    );
    for (what, change) in &changes {
        let mut m = f.m.clone();
        change(&mut m);
        let (cached, status) = f.attest(&m).await;
        assert!(
            !cached,
            "{what}: a changed claim was answered from the cache"
        );
        let a = fresh.appraise(&f.request(&m), unix_now()).await.unwrap();
        assert_eq!(status, a.status(), "{what}: cached verifier disagrees");
        // And the unchanged claims still hit.
        assert!(
            f.attest(&f.m).await.0,
            "{what}: the unchanged claims missed"
        );
    }
    // The executable digest change is refused by the policy, not reused as affirming.
    let mut bad = f.m.clone();
    bad.workload.exe_sha256 = "cd".repeat(32);
    assert_eq!(f.attest(&bad).await.1, ArStatus::Contraindicated);
}

#[tokio::test]
async fn a_changed_reference_value_or_policy_is_a_fresh_appraisal() {
    let f = fixture().await;
    assert_eq!(f.attest(&f.m).await, (false, ArStatus::Affirming));
    assert!(f.attest(&f.m).await.0);
    // A reference value forbidding a process that runs: the same claims are now refused.
    f.store
        .add_reference_value(
            &ReferenceValue {
                kind: "forbidden_process".into(),
                key: "app".into(),
                value: "not here".into(),
            },
            unix_now(),
        )
        .await
        .unwrap();
    assert_eq!(f.attest(&f.m).await, (false, ArStatus::Contraindicated));
    assert_eq!(f.attest(&f.m).await, (true, ArStatus::Contraindicated));
    // A new version of the policy that warns on everything: a fresh appraisal again.
    let warn = "package vouch.appraisal\nwarn contains \"always\" if { true }\n";
    f.store
        .add_policy(DEFAULT_POLICY_ID, warn, true, unix_now())
        .await
        .unwrap();
    assert_eq!(f.attest(&f.m).await, (false, ArStatus::Warning));
    assert_eq!(f.attest(&f.m).await, (true, ArStatus::Warning));
}

#[tokio::test]
async fn a_policy_drawing_random_numbers_is_never_cached() {
    let f = fixture().await;
    // (`time.now_ns` is not built into this verifier's Rego; `rand.intn` is.)
    let timed = "package vouch.appraisal\n\
                 warn contains \"unlucky\" if { rand.intn(\"draw\", 1000) < 0 }\n";
    f.store
        .add_policy("timed", timed, true, unix_now())
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(f.attest(&f.m).await, (false, ArStatus::None));
    }
    let s = f.verifier.cache_stats();
    assert_eq!((s.hits, s.entries), (0, 0));
}

/// The cache never stands in for the checks of the request itself.
#[tokio::test]
async fn signature_and_nonce_are_checked_on_every_repeat() {
    let f = fixture().await;
    f.attest(&f.m).await;
    // One flipped byte of the signature on claims the cache holds.
    let mut req = f.request(&f.m);
    let mut sig = req.evidence.signature.into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    req.evidence.signature = String::from_utf8(sig).unwrap();
    let e = f.verifier.appraise(&req, unix_now()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::EvidenceSignature);
    // A replayed request: refused once its nonce is spent.
    let req = f.request(&f.m);
    let a = f.verifier.appraise(&req, unix_now()).await.unwrap();
    assert!(a.cached);
    f.verifier.record(a, "jws".into()).await.unwrap();
    // Its claims are cached, so the appraisal answers from the cache and the record, which
    // spends the nonce in its transaction, refuses it; nothing is recorded.
    let before = f.store.attestation_count().await.unwrap();
    let a = f.verifier.appraise(&req, unix_now()).await.unwrap();
    let e = f.verifier.record(a, "jws".into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonceReused);
    assert_eq!(f.store.attestation_count().await.unwrap(), before);
    // Where the claims would cost an appraisal, the replay is refused before it.
    let uncached = Verifier::new(
        VerifierConfig {
            audience: "test".into(),
            appraisal_cache_entries: 0,
            ..VerifierConfig::default()
        },
        f.store.clone(),
        vec![NonceKey::new([7; 32])],
        None,
    );
    let e = uncached.appraise(&req, unix_now()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonceReused);
    // A nonce past its lifetime.
    let late = unix_now() + 3600;
    let e = f
        .verifier
        .appraise(&f.request(&f.m), late)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonceExpired);
    // A nonce of another verifier (another key).
    let other = Verifier::new(
        VerifierConfig {
            audience: "test".into(),
            ..VerifierConfig::default()
        },
        f.store.clone(),
        vec![NonceKey::new([8; 32])],
        None,
    );
    let e = other
        .appraise(&f.request(&f.m), unix_now())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonceInvalid);
}

/// The same measurements with every part the verifier holds sent by its digest.
fn elide(
    m: &SoftwareMeasurements,
    held: &std::collections::BTreeMap<String, String>,
) -> SoftwareMeasurements {
    let mut e = m.clone();
    vouch_core::send_held_parts_by_digest(&mut e, held);
    e
}

#[tokio::test]
async fn parts_sent_by_digest_give_the_claims_of_the_full_measurements() {
    let mut f = fixture().await;
    f.m.packages.insert("openssl".into(), "3.0.11".into());
    f.m.packages.insert("bash".into(), "5.2".into());
    let a = f
        .verifier
        .appraise(&f.request(&f.m), unix_now())
        .await
        .unwrap();
    let full = f.verifier.record(a, "jws".into()).await.unwrap();
    assert_eq!(full.held_parts.len(), 4, "{:?}", full.held_parts);
    let small = elide(&f.m, &full.held_parts);
    assert_eq!(small.held.len(), 4);
    assert!(small.processes.is_empty() && small.packages.is_empty());
    let req = f.request(&small);
    let a = f.verifier.appraise(&req, unix_now()).await.unwrap();
    assert!(a.cached, "the same claims: the appraisal is reused");
    let r = f.verifier.record(a, "jws".into()).await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming);
    assert_eq!(r.held_parts, full.held_parts);
    let stored = |id: String| {
        let s = f.store.clone();
        async move { s.attestation(&id).await.unwrap().unwrap().claims }
    };
    assert_eq!(
        stored(full.attestation_id).await,
        stored(r.attestation_id).await,
        "claims from digests must be those of the full measurements"
    );
    // A changed part goes in full beside the held ones, and is a fresh appraisal.
    let mut changed = f.m.clone();
    changed.packages.insert("telnetd".into(), "0.17".into());
    let req = f.request(&elide(&changed, &full.held_parts));
    let a = f.verifier.appraise(&req, unix_now()).await.unwrap();
    assert!(!a.cached);
    assert_eq!(a.node_id(), full.workload_id.split('/').next().unwrap());
}

#[tokio::test]
async fn parts_by_digest_are_refused_when_unknown_or_malformed() {
    let f = fixture().await;
    let a = f
        .verifier
        .appraise(&f.request(&f.m), unix_now())
        .await
        .unwrap();
    let held = f.verifier.record(a, "jws".into()).await.unwrap().held_parts;
    let small = elide(&f.m, &held);
    // One flipped hex digit of a held digest: not held, so the agent must send it in full.
    let mut flipped = small.clone();
    let d = flipped.held.get_mut("processes").unwrap();
    let c = if d.starts_with('0') { "1" } else { "0" };
    d.replace_range(0..1, c);
    let e = f.refused(flipped).await;
    assert_eq!(e.kind, ErrorKind::PartsUnknown, "{}", e.message);
    assert!(e.message.contains("processes"));
    // Another verifier (nothing held): every part is unknown.
    let other = Verifier::new(
        VerifierConfig {
            audience: "test".into(),
            ..VerifierConfig::default()
        },
        f.store.clone(),
        vec![NonceKey::new([7; 32])],
        None,
    );
    let e = other
        .appraise(&f.request(&small), unix_now())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PartsUnknown);
    // Malformed: an unknown part, a digest that is not 64 lowercase hex digits, a part sent
    // both in full and by digest.
    let mut unknown = small.clone();
    unknown.held.insert("hostname".into(), "0".repeat(64));
    assert_eq!(f.refused(unknown).await.kind, ErrorKind::EvidenceMalformed);
    let mut upper = small.clone();
    upper.held.insert("packages".into(), "A".repeat(64));
    assert_eq!(f.refused(upper).await.kind, ErrorKind::EvidenceMalformed);
    let mut both = small.clone();
    both.processes = f.m.processes.clone();
    assert_eq!(f.refused(both).await.kind, ErrorKind::EvidenceMalformed);
}

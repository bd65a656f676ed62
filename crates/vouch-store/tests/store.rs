//! Store behaviour, the same tests run against both backends: the embedded SQLite store and
//! PostgreSQL (a throwaway server per test, or `VOUCH_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::Arc;
use vouch_policy::ReferenceValue;
use vouch_store::{AttestationRecord, PgStore, SqliteStore, Store, StoreError};

/// Each behaviour below is an `async fn(&dyn Store)`; this runs it on each backend.
macro_rules! on_both_backends {
    ($($t:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $t() {
                    let d = tempfile::tempdir().unwrap();
                    let s = super::SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
                    super::$t(&s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $t() {
                    let pg = vouch_testkit::Postgres::start();
                    let s = super::PgStore::connect(&pg.fresh_database()).await.unwrap();
                    super::$t(&s).await;
                }
            )*
        }
    };
}

on_both_backends!(
    join_tokens_are_single_use_and_expire,
    a_failed_enrollment_does_not_burn_the_token,
    policies_are_versioned_never_overwritten,
    reference_value_revision_tracks_changes,
    attestations_update_workloads_and_deadlines_expire_them,
    registration_entries_round_trip,
    issue_13_entries_sync_incrementally_with_tombstones,
    revocations_are_a_gap_free_log_applied_once,
    tpm_enrollment_round_trips,
    issue_13_the_appraisal_context_is_one_read_of_what_the_pieces_say,
    issue_12_one_ek_is_bound_to_one_node,
    issue_12_a_nonce_purged_by_a_replica_ahead_is_refused_by_one_behind,
    issue_12_a_result_from_an_agent_key_revoked_meanwhile_is_not_recorded,
    issue_14_attested_nodes_keep_their_id_and_long_lived_documents_need_a_reenrolment,
    issue_15_attested_nodes_are_found_by_a_selector_of_their_document,
);

async fn join_tokens_are_single_use_and_expire(s: &dyn Store) {
    s.create_join_token("t1", Some("node-a"), 100, 200)
        .await
        .unwrap();
    let e = s.enroll("t1", &[1; 32], "host", 150).await.unwrap();
    assert!(e.key_id.starts_with("ak-"));
    assert!(matches!(
        s.enroll("t1", &[2; 32], "host", 151).await,
        Err(StoreError::TokenReused)
    ));
    s.create_join_token("t2", None, 100, 200).await.unwrap();
    assert!(matches!(
        s.enroll("t2", &[3; 32], "host", 201).await,
        Err(StoreError::TokenExpired)
    ));
    assert!(matches!(
        s.enroll("nope", &[3; 32], "host", 150).await,
        Err(StoreError::TokenInvalid)
    ));
    let key = s.agent_key(&e.key_id).await.unwrap().unwrap();
    assert_eq!(key.public_key, vec![1; 32]);
    assert_eq!(s.nodes().await.unwrap()[0].hostname, "node-a");
}

async fn a_failed_enrollment_does_not_burn_the_token(s: &dyn Store) {
    s.create_join_token("a", None, 0, 100).await.unwrap();
    s.enroll("a", &[9; 32], "h", 1).await.unwrap();
    s.create_join_token("b", None, 0, 100).await.unwrap();
    // Same key again: refused, and the token stays usable for another key.
    assert!(matches!(
        s.enroll("b", &[9; 32], "h", 2).await,
        Err(StoreError::KeyAlreadyEnrolled { .. })
    ));
    s.enroll("b", &[8; 32], "h", 3).await.unwrap();
}

async fn policies_are_versioned_never_overwritten(s: &dyn Store) {
    assert_eq!(s.add_policy("p", "v1", true, 1).await.unwrap(), 1);
    assert_eq!(s.add_policy("p", "v2", false, 2).await.unwrap(), 2);
    assert_eq!(s.policy("p", Some(1)).await.unwrap().unwrap().rego, "v1");
    assert_eq!(s.policy("p", None).await.unwrap().unwrap().rego, "v2");
    assert_eq!(s.active_policy_id().await.unwrap().as_deref(), Some("p"));
    assert!(s.activate_policy("missing").await.is_err());
    assert_eq!(s.policies().await.unwrap().len(), 1);
}

async fn reference_value_revision_tracks_changes(s: &dyn Store) {
    let r0 = s.reference_values().await.unwrap().revision;
    let v = ReferenceValue {
        kind: "file".into(),
        key: "/etc/x".into(),
        value: "ab".into(),
    };
    let id = s.add_reference_value(&v, 1).await.unwrap();
    let r1 = s.reference_values().await.unwrap();
    assert!(r1.revision > r0);
    assert_eq!(r1.values, vec![v.clone()]);
    // Idempotent: same id, same revision.
    assert_eq!(s.add_reference_value(&v, 2).await.unwrap(), id);
    assert_eq!(s.reference_values().await.unwrap().revision, r1.revision);
    assert!(s.remove_reference_value(id).await.unwrap());
    assert!(s.reference_values().await.unwrap().revision > r1.revision);
    assert!(!s.remove_reference_value(id).await.unwrap());
}

fn record(id: &str, status: &str, at: u64) -> AttestationRecord {
    AttestationRecord {
        id: id.into(),
        workload_id: "node/app".into(),
        node_id: "node".into(),
        key_id: "ak".into(),
        evidence_kind: "software".into(),
        evidence_sha256: "00".into(),
        claims: json!({"a": 1}),
        status: status.into(),
        trust_vector: json!({"executables": 2}),
        reasons: vec![],
        policy_id: "default".into(),
        policy_version: 1,
        result: "jwt".into(),
        created_at: at,
        expires_at: at + 60,
    }
}

async fn attestations_update_workloads_and_deadlines_expire_them(s: &dyn Store) {
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[1; 32], "h", 1).await.unwrap();
    let mut r = record("a1", "affirming", 10);
    r.node_id = e.node_id.clone();
    r.workload_id = format!("{}/app", e.node_id);
    s.record_attestation(&r, 100, Some(("n1", 200)))
        .await
        .unwrap();
    let mut again = r.clone();
    again.id = "a2".into();
    assert!(matches!(
        s.record_attestation(&again, 100, Some(("n1", 200))).await,
        Err(StoreError::NonceReused)
    ));
    assert!(s.nonce_used("n1").await.unwrap());
    assert!(s.attestation("a2").await.unwrap().is_none());
    let w = s.workload(&r.workload_id).await.unwrap().unwrap();
    assert_eq!(w.status, "affirming");
    assert_eq!(w.name, "app");
    assert_eq!(w.last_attestation_id.as_deref(), Some("a1"));
    assert_eq!(s.attestation("a1").await.unwrap().unwrap(), r);
    assert!(s.mark_overdue(100, 5).await.unwrap().is_empty());
    assert_eq!(
        s.mark_overdue(101, 5).await.unwrap(),
        vec![r.workload_id.clone()]
    );
    let w = s.workload(&r.workload_id).await.unwrap().unwrap();
    assert_eq!(w.status, "contraindicated");
    assert!(w.reason.contains("deadline"));
    // Already contraindicated: not reported twice.
    assert!(s.mark_overdue(102, 5).await.unwrap().is_empty());
    assert_eq!(s.attestation_count().await.unwrap(), 1);
}

#[tokio::test]
async fn data_survives_reopening() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("v.db");
    {
        let s = SqliteStore::open(&p).await.unwrap();
        s.add_policy("p", "x", true, 1).await.unwrap();
    }
    let s = SqliteStore::open(&p).await.unwrap();
    assert_eq!(s.policy("p", None).await.unwrap().unwrap().version, 1);
}

async fn registration_entries_round_trip(s: &dyn Store) {
    let id = vouch_identity::SpiffeId::parse("spiffe://example.org/db").unwrap();
    let sel = vec![vouch_identity::Selector::parse("unix:uid:1000").unwrap()];
    let e = vouch_identity::Entry::new("e1".into(), &id, sel.clone(), 3600, 5).unwrap();
    assert_eq!(s.revision(vouch_store::ENTRIES_REVISION).await.unwrap(), 0);
    s.add_entry(&e).await.unwrap();
    assert_eq!(s.entries().await.unwrap(), vec![e.clone()]);
    assert_eq!(s.entries_at_revision().await.unwrap(), (1, vec![e.clone()]));
    let dup = vouch_identity::Entry::new("e2".into(), &id, sel, 60, 6).unwrap();
    assert!(matches!(
        s.add_entry(&dup).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        s.revision(vouch_store::ENTRIES_REVISION).await.unwrap(),
        1,
        "a refused change moves nothing"
    );
    assert!(s.delete_entry("e1").await.unwrap());
    assert_eq!(s.revision(vouch_store::ENTRIES_REVISION).await.unwrap(), 2);
    assert!(!s.delete_entry("e1").await.unwrap());
    assert_eq!(s.revision(vouch_store::ENTRIES_REVISION).await.unwrap(), 2);
}

/// Issue 13 item 5: a reader at revision R gets only what changed after R (additions, and
/// deletions as tombstones, each entry once at its latest state); one behind the pruned log,
/// or ahead of the store, or with more changes than its limit, is told to read everything.
async fn issue_13_entries_sync_incrementally_with_tombstones(s: &dyn Store) {
    use vouch_store::EntriesSince;
    let id = vouch_identity::SpiffeId::parse("spiffe://example.org/w").unwrap();
    let entry = |n: u32| {
        let sel = vec![vouch_identity::Selector::parse(&format!("unix:uid:{n}")).unwrap()];
        vouch_identity::Entry::new(format!("e{n}"), &id, sel, 60, 1).unwrap()
    };
    let all: Vec<_> = (0..100).map(entry).collect();
    assert_eq!(s.add_entries(&all).await.unwrap(), 100);
    assert_eq!(s.entries_at_revision().await.unwrap().1.len(), 100);
    // A refused batch (a duplicate inside) adds nothing and moves nothing.
    assert!(matches!(
        s.add_entries(&[entry(100), entry(5)]).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        s.revision(vouch_store::ENTRIES_REVISION).await.unwrap(),
        100
    );
    assert_eq!(
        s.entries_since(100, 10).await.unwrap(),
        EntriesSince::Changes {
            revision: 100,
            upserted: vec![],
            deleted: vec![]
        }
    );
    s.add_entry(&entry(100)).await.unwrap();
    assert!(s.delete_entry("e3").await.unwrap());
    s.add_entry(&entry(101)).await.unwrap();
    assert!(s.delete_entry("e101").await.unwrap());
    assert_eq!(
        s.entries_since(100, 10).await.unwrap(),
        EntriesSince::Changes {
            revision: 104,
            upserted: vec![entry(100)],
            deleted: vec!["e3".into(), "e101".into()]
        },
        "only the changes, each entry at its latest state"
    );
    assert_eq!(
        s.entries_since(102, 10).await.unwrap(),
        EntriesSince::Changes {
            revision: 104,
            upserted: vec![],
            deleted: vec!["e101".into()]
        }
    );
    // More changes than the reader takes, or a revision from the future: read everything.
    assert_eq!(
        s.entries_since(0, 10).await.unwrap(),
        EntriesSince::Resync { revision: 104 }
    );
    assert_eq!(
        s.entries_since(105, 10).await.unwrap(),
        EntriesSince::Resync { revision: 104 }
    );
    // Pruned: a reader behind the floor resyncs, one at the floor still gets changes.
    s.prune_entries_log(102).await.unwrap();
    assert_eq!(
        s.entries_since(101, 10).await.unwrap(),
        EntriesSince::Resync { revision: 104 }
    );
    assert!(matches!(
        s.entries_since(102, 10).await.unwrap(),
        EntriesSince::Changes { revision: 104, .. }
    ));
    // The floor never moves back.
    s.prune_entries_log(50).await.unwrap();
    assert_eq!(
        s.entries_since(101, 10).await.unwrap(),
        EntriesSince::Resync { revision: 104 }
    );
    // Every entry, page by page in id order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.entries_page(&after, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        seen.extend(page.into_iter().map(|e| e.id));
    }
    let mut want: Vec<String> = s
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

fn revocation(epoch: u64, kind: &str, target: &str) -> vouch_store::RevocationRecord {
    vouch_store::RevocationRecord {
        epoch,
        kind: kind.into(),
        target: target.into(),
        reason: "stolen".into(),
        by: "ops".into(),
        created_at: 5,
        record: format!("signed-{epoch}"),
    }
}

async fn revocations_are_a_gap_free_log_applied_once(s: &dyn Store) {
    s.create_join_token("h1", None, 0, 100).await.unwrap();
    let e = s.enroll("h1", &[7; 32], "host-a", 1).await.unwrap();
    assert!(s.agent_key(&e.key_id).await.unwrap().is_some());
    assert_eq!(s.revocation_epoch().await.unwrap(), 0);
    // Not the next epoch: refused, nothing applied.
    assert!(matches!(
        s.append_revocation(&revocation(2, "node", &e.node_id))
            .await,
        Err(StoreError::EpochTaken(2))
    ));
    assert!(s.agent_key(&e.key_id).await.unwrap().is_some());
    // A node that does not exist.
    assert!(matches!(
        s.append_revocation(&revocation(1, "node", "no-such-node"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    s.append_revocation(&revocation(1, "node", &e.node_id))
        .await
        .unwrap();
    assert!(
        s.agent_key(&e.key_id).await.unwrap().is_none(),
        "a revoked node's key is not found"
    );
    assert!(matches!(
        s.append_revocation(&revocation(2, "node", &e.node_id))
            .await,
        Err(StoreError::Duplicate(_))
    ));
    // Serials are not checked against anything: any certificate can be revoked.
    s.append_revocation(&revocation(2, "svid", "1f"))
        .await
        .unwrap();
    // Someone else took epoch 3 first: the loser is told to sign again.
    s.append_revocation(&revocation(3, "svid", "20"))
        .await
        .unwrap();
    assert!(matches!(
        s.append_revocation(&revocation(3, "svid", "21")).await,
        Err(StoreError::EpochTaken(3))
    ));
    assert_eq!(s.revocation_epoch().await.unwrap(), 3);
    let feed = s.revocations_since(1, 10).await.unwrap();
    assert_eq!(feed.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(feed[0], revocation(2, "svid", "1f"));
    assert_eq!(s.revocations_since(0, 1).await.unwrap().len(), 1);
    assert!(s.revocations_since(3, 10).await.unwrap().is_empty());
    assert_eq!(
        s.revocation("node", &e.node_id)
            .await
            .unwrap()
            .map(|r| r.epoch),
        Some(1)
    );
    assert!(s.revocation("node", "other").await.unwrap().is_none());
}

async fn tpm_enrollment_round_trips(s: &dyn Store) {
    use vouch_store::TpmKeyRecord;
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[3; 32], "h", 1).await.unwrap();
    let rec = TpmKeyRecord {
        node_id: e.node_id.clone(),
        ek_public: vec![0, 1, 2, 255],
        ek_cert: Some(vec![0x30, 0x82, 0]),
        ek_issuer: Some("CN=ca".into()),
        ak_public: vec![9; 70],
        ak_qualified_name: vec![0, 11, 7],
        challenge_hash: Some("abc".into()),
        challenge_expires: Some(50),
        activated_at: None,
        last_clock: None,
        ima_state: None,
        created_at: 2,
        ek_key: Some("k0".into()),
        bound_at: None,
    };
    s.put_tpm_enrollment(&rec).await.unwrap();
    assert_eq!(s.tpm_key(&e.node_id).await.unwrap().unwrap(), rec);
    s.activate_tpm(&e.node_id, 7).await.unwrap();
    s.set_tpm_state(&e.node_id, "{\"reset_count\":1}", Some("{\"position\":3}"))
        .await
        .unwrap();
    let got = s.tpm_key(&e.node_id).await.unwrap().unwrap();
    assert_eq!(got.activated_at, Some(7));
    assert_eq!(got.bound_at, Some(7));
    assert_eq!(got.challenge_hash, None);
    assert_eq!(got.last_clock.as_deref(), Some("{\"reset_count\":1}"));
    assert_eq!(got.ima_state.as_deref(), Some("{\"position\":3}"));
    // Without new IMA state, the old one stays.
    s.set_tpm_state(&e.node_id, "{}", None).await.unwrap();
    assert_eq!(
        s.tpm_key(&e.node_id)
            .await
            .unwrap()
            .unwrap()
            .ima_state
            .as_deref(),
        Some("{\"position\":3}")
    );
    assert!(matches!(
        s.activate_tpm("nobody", 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Issue 12: enrolling the same EK again (a new challenge, activation again) keeps the
    // clock history and the IMA replay of its TPM; another EK starts from nothing.
    let again = TpmKeyRecord {
        challenge_hash: Some("def".into()),
        created_at: 9,
        ..rec.clone()
    };
    s.put_tpm_enrollment(&again).await.unwrap();
    let got = s.tpm_key(&e.node_id).await.unwrap().unwrap();
    assert_eq!(got.activated_at, None);
    assert_eq!(got.last_clock.as_deref(), Some("{}"));
    assert_eq!(got.ima_state.as_deref(), Some("{\"position\":3}"));
    let other = TpmKeyRecord {
        ek_public: vec![7, 7, 7],
        ek_key: Some("k7".into()),
        ..again
    };
    s.put_tpm_enrollment(&other).await.unwrap();
    let got = s.tpm_key(&e.node_id).await.unwrap().unwrap();
    assert_eq!((got.last_clock, got.ima_state), (None, None));
    assert_eq!(got.bound_at, Some(7), "a node stays TPM-bound");
}

/// Issue 12 item 8: one EK is bound to one node; admin re-enrolments are recorded and used up
/// by the next activation; revoking a node frees its EK.
async fn issue_12_one_ek_is_bound_to_one_node(s: &dyn Store) {
    use vouch_store::{TpmKeyRecord, TpmReenrollment};
    s.create_join_token("a", None, 0, 100).await.unwrap();
    s.create_join_token("b", None, 0, 100).await.unwrap();
    let a = s.enroll("a", &[4; 32], "a", 1).await.unwrap().node_id;
    let b = s.enroll("b", &[5; 32], "b", 1).await.unwrap().node_id;
    let tpm = |node: &str, ek: &str| TpmKeyRecord {
        node_id: node.into(),
        ek_public: ek.as_bytes().to_vec(),
        ek_cert: None,
        ek_issuer: None,
        ak_public: vec![1; 8],
        ak_qualified_name: vec![2; 8],
        challenge_hash: Some("c".into()),
        challenge_expires: Some(50),
        activated_at: None,
        last_clock: None,
        ima_state: None,
        created_at: 2,
        ek_key: Some(ek.into()),
        bound_at: None,
    };
    s.put_tpm_enrollment(&tpm(&a, "ek1")).await.unwrap();
    assert_eq!(
        s.tpm_node_for_ek("ek1").await.unwrap(),
        None,
        "not bound yet"
    );
    s.activate_tpm(&a, 3).await.unwrap();
    assert_eq!(s.tpm_node_for_ek("ek1").await.unwrap(), Some(a.clone()));

    // B may start an enrollment with the same EK (unproven, it binds nothing), never bind it.
    s.put_tpm_enrollment(&tpm(&b, "ek1")).await.unwrap();
    match s.activate_tpm(&b, 4).await {
        Err(StoreError::EkEnrolled { node_id }) => assert_eq!(node_id, a),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.tpm_key(&b).await.unwrap().unwrap().bound_at, None);
    // A bound node moving to an EK another bound node holds is refused at once.
    s.put_tpm_enrollment(&tpm(&b, "ek2")).await.unwrap();
    s.activate_tpm(&b, 4).await.unwrap();
    assert!(matches!(
        s.put_tpm_enrollment(&tpm(&b, "ek1")).await,
        Err(StoreError::EkEnrolled { .. })
    ));
    assert_eq!(
        s.tpm_key(&b).await.unwrap().unwrap().ek_key.as_deref(),
        Some("ek2")
    );

    // Re-enrolments: recorded, open until used or expired, used by the next activation.
    let grant = |id: &str, expires_at| TpmReenrollment {
        id: id.into(),
        node_id: a.clone(),
        reason: "motherboard replaced".into(),
        requested_by: "ops".into(),
        created_at: 10,
        expires_at,
        previous_ek: Some("ek1".into()),
        previous_ak: Some("0b00".into()),
        used_at: None,
        ek_key: None,
    };
    s.add_tpm_reenrollment(&grant("r1", 20)).await.unwrap();
    assert_eq!(
        s.open_tpm_reenrollment(&a, 21).await.unwrap(),
        None,
        "expired"
    );
    s.add_tpm_reenrollment(&grant("r2", 100)).await.unwrap();
    assert_eq!(
        s.open_tpm_reenrollment(&a, 30).await.unwrap().map(|r| r.id),
        Some("r2".into())
    );
    s.put_tpm_enrollment(&tpm(&a, "ek3")).await.unwrap();
    s.activate_tpm(&a, 40).await.unwrap();
    assert_eq!(s.open_tpm_reenrollment(&a, 41).await.unwrap(), None);
    let log = s.tpm_reenrollments(&a).await.unwrap();
    assert_eq!(log.len(), 2);
    let used = log.iter().find(|r| r.id == "r2").unwrap();
    assert_eq!(
        (used.used_at, used.ek_key.as_deref()),
        (Some(40), Some("ek3"))
    );
    let expired = log.iter().find(|r| r.id == "r1").unwrap();
    assert_eq!(expired.used_at, None);

    // Revoking a node frees its EK for another node.
    s.append_revocation(&revocation(1, "node", &a))
        .await
        .unwrap();
    assert_eq!(s.tpm_node_for_ek("ek3").await.unwrap(), None);
    assert_eq!(s.tpm_key(&a).await.unwrap().unwrap().ek_key, None);

    // Rows enrolled before the EK key was recorded are listed for the verifier to fill in
    // (revoked nodes aside), and filling one in obeys the same rule.
    s.put_tpm_enrollment(&TpmKeyRecord {
        ek_key: None,
        ..tpm(&b, "legacy")
    })
    .await
    .unwrap();
    let missing = s.tpm_keys_without_ek_key().await.unwrap();
    assert_eq!(
        missing
            .iter()
            .map(|r| r.node_id.as_str())
            .collect::<Vec<_>>(),
        [b.as_str()]
    );
    s.create_join_token("c", None, 0, 100).await.unwrap();
    let c = s.enroll("c", &[6; 32], "c", 1).await.unwrap().node_id;
    s.put_tpm_enrollment(&tpm(&c, "ek4")).await.unwrap();
    s.activate_tpm(&c, 5).await.unwrap();
    assert!(matches!(
        s.set_tpm_ek_key(&b, "ek4").await,
        Err(StoreError::EkEnrolled { .. })
    ));
    s.set_tpm_ek_key(&b, "ek2").await.unwrap();
    assert!(s.tpm_keys_without_ek_key().await.unwrap().is_empty());
}

/// PostgreSQL: acknowledged writes survive the server being killed (immediate stop, no
/// checkpoint) and restarted; the store's pool reconnects by itself.
#[tokio::test]
async fn postgres_data_survives_a_server_crash() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let s = PgStore::connect(&url).await.unwrap();
    s.add_policy("p", "x", true, 1).await.unwrap();
    s.create_join_token("t", None, 0, 100).await.unwrap();
    pg.restart();
    // The pool notices its connections died and makes new ones.
    let mut ok = None;
    for _ in 0..50 {
        match s.policy("p", None).await {
            Ok(p) => {
                ok = p;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(ok.unwrap().version, 1);
    let again = PgStore::connect(&url).await.unwrap();
    assert!(again.enroll("t", &[5; 32], "h", 2).await.is_ok());
}

/// Issue 12 item 11 (f). Replicas whose clocks are off by up to the skew, one ahead (it sweeps)
/// and one behind (it still accepts the nonce): the sweep must not forget a used nonce that the
/// replica behind would accept again.
async fn issue_12_a_nonce_purged_by_a_replica_ahead_is_refused_by_one_behind(s: &dyn Store) {
    use vouch_core::{NONCE_RANDOM_LEN, Nonce, NonceError, NonceKey};
    const TTL: u64 = 60;
    const SKEW: u64 = 5;
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[1; 32], "h", 1).await.unwrap();
    let key = NonceKey::new([7; 32]);
    let issued = 1_000;
    let encoded = Nonce::issue(&key, issued, [3; NONCE_RANDOM_LEN], "cluster");
    let check = |now| {
        Nonce::check(
            &encoded,
            std::slice::from_ref(&key),
            "cluster",
            now,
            TTL,
            SKEW,
        )
    };
    // Replica A uses it and records it as the verifier does (issue time + ttl + skew).
    let n = check(issued + 1).unwrap();
    let expires_at = n.expires_at(TTL) + SKEW;
    let mut r = record("a1", "affirming", issued + 1);
    r.node_id = e.node_id.clone();
    r.workload_id = format!("{}/app", e.node_id);
    s.record_attestation(&r, 10_000, Some((&n.id(), expires_at)))
        .await
        .unwrap();
    // The last second replica B, behind by the skew, accepts the nonce: its clock reads
    // issued + TTL while true time is one skew later, and the sweeper's is one skew later still.
    let b_clock = issued + TTL;
    assert!(check(b_clock).is_ok());
    s.mark_overdue(b_clock + 2 * SKEW, SKEW).await.unwrap();
    assert!(s.nonce_used(&n.id()).await.unwrap(), "forgotten too early");
    let mut again = r.clone();
    again.id = "a2".into();
    assert!(matches!(
        s.record_attestation(&again, 10_000, Some((&n.id(), expires_at)))
            .await,
        Err(StoreError::NonceReused)
    ));
    // A second later no replica accepts it, and the sweep forgets it.
    assert!(matches!(
        check(b_clock + 1),
        Err(NonceError::Expired { .. })
    ));
    s.mark_overdue(b_clock + 1 + 2 * SKEW, SKEW).await.unwrap();
    assert!(!s.nonce_used(&n.id()).await.unwrap());
}

/// Issue 12 item 11 (b). On PostgreSQL (READ COMMITTED), a revocation that commits while an
/// attestation of the same workload is between its revocation check and its workload upsert.
/// A third connection makes the interleaving deterministic: it holds an uncommitted attestation
/// with the new attestation's id, so the attestation stops at its `INSERT INTO attestations`,
/// after the check and before the upsert, until that connection rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_revocation_racing_an_attestation_on_postgres_is_never_overwritten() {
    let pg = vouch_testkit::Postgres::start();
    for kind in ["workload", "node"] {
        revocation_races_attestation(&pg.fresh_database(), kind).await;
    }
}

async fn revocation_races_attestation(url: &str, kind: &str) {
    use sqlx::Connection;
    let s = PgStore::connect(url).await.unwrap();
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[1; 32], "h", 1).await.unwrap();
    let mut r = record("a1", "affirming", 10);
    r.node_id = e.node_id.clone();
    r.workload_id = format!("{}/app", e.node_id);
    s.record_attestation(&r, 100, Some(("n1", 200)))
        .await
        .unwrap();

    let mut blocker = sqlx::PgConnection::connect(url).await.unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO attestations (id, workload_id, node_id, key_id, evidence_kind,
            evidence_sha256, claims, status, trust_vector, reasons, policy_id, policy_version,
            result, created_at, expires_at)
         VALUES ('a2', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 1, 'x', 0, 0)",
    )
    .execute(&mut *held)
    .await
    .unwrap();

    let mut next = r.clone();
    next.id = "a2".into();
    next.created_at = 20;
    let attest = tokio::spawn({
        let s = s.clone();
        async move { s.record_attestation(&next, 200, Some(("n2", 300))).await }
    });
    // Sessions of this database waiting for a lock.
    let mut watch = sqlx::PgConnection::connect(url).await.unwrap();
    let mut waiters = async || -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap()
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(20));
    let mut tries = 0;
    while waiters().await < 1 {
        tries += 1;
        assert!(tries < 500, "the attestation never reached the held id");
        pause().await;
    }

    let target = if kind == "node" {
        e.node_id.clone()
    } else {
        r.workload_id.clone()
    };
    let revoke = tokio::spawn({
        let s = s.clone();
        let rec = revocation(1, kind, &target);
        async move { s.append_revocation(&rec).await }
    });
    // The old code commits the revocation now; the fixed one waits for the attestation.
    let mut tries = 0;
    while !revoke.is_finished() && waiters().await < 2 {
        tries += 1;
        assert!(tries < 500, "the revocation neither finished nor waited");
        pause().await;
    }
    held.rollback().await.unwrap();

    let attested = attest.await.unwrap();
    revoke.await.unwrap().unwrap();
    let w = s.workload(&r.workload_id).await.unwrap().unwrap();
    assert!(
        w.status == "contraindicated" || matches!(attested, Err(StoreError::Revoked(_))),
        "{kind} revocation overwritten: the workload is {} ({attested:?})",
        w.status
    );
    assert_eq!(w.status, "contraindicated", "{kind}: {}", w.reason);
}

/// Issue 12: the verifier looks the agent key up before the attestation's transaction; a
/// revocation of that key committed in between must still keep the result out.
async fn issue_12_a_result_from_an_agent_key_revoked_meanwhile_is_not_recorded(s: &dyn Store) {
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[3; 32], "h", 1).await.unwrap();
    let mut r = record("a1", "affirming", 10);
    r.node_id = e.node_id.clone();
    r.key_id = e.key_id.clone();
    r.workload_id = format!("{}/app", e.node_id);
    s.record_attestation(&r, 100, Some(("n1", 200)))
        .await
        .unwrap();
    // Appraised with the key, which is revoked before the result is recorded.
    s.append_revocation(&revocation(1, "agent-key", &e.key_id))
        .await
        .unwrap();
    let mut late = r.clone();
    late.id = "a2".into();
    let e2 = s
        .record_attestation(&late, 100, Some(("n2", 200)))
        .await
        .unwrap_err();
    assert!(
        matches!(e2, StoreError::Revoked(ref w) if w.contains("agent-key")),
        "{e2}"
    );
    assert!(s.attestation("a2").await.unwrap().is_none());
    let w = s.workload(&r.workload_id).await.unwrap().unwrap();
    assert_eq!(w.last_attestation_id.as_deref(), Some("a1"));
}

/// Group commit (issue 13 item 3): 200 concurrent `record_attestation` calls, some replaying a
/// nonce or attesting a revoked workload, through the public API. Each call gets its own answer,
/// every acknowledged record is there, and they took fewer transactions than records.
async fn concurrent_records_are_group_committed(s: Arc<dyn Store>) {
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let node = s.enroll("t", &[1; 32], "h", 1).await.unwrap().node_id;
    let mut first = record("first", "affirming", 10);
    first.node_id = node.clone();
    first.workload_id = format!("{node}/revoked");
    s.record_attestation(&first, 100, None).await.unwrap();
    s.append_revocation(&revocation(1, "workload", &format!("{node}/revoked")))
        .await
        .unwrap();
    s.use_nonce("used", 1_000).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let s = s.clone();
        let node = node.clone();
        tasks.spawn(async move {
            let mut r = record(&format!("a{i}"), "affirming", 10);
            r.node_id = node.clone();
            r.workload_id = match i % 10 {
                3 => format!("{node}/revoked"),
                _ => format!("{node}/w{}", i % 7),
            };
            let nonce = if i % 10 == 5 {
                "used".to_string()
            } else {
                format!("n{i}")
            };
            (
                i,
                s.record_attestation(&r, 100, Some((&nonce, 1_000))).await,
            )
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.unwrap();
        match i % 10 {
            3 => assert!(matches!(r, Err(StoreError::Revoked(_))), "{i}: {r:?}"),
            5 => assert!(matches!(r, Err(StoreError::NonceReused)), "{i}: {r:?}"),
            _ => {
                r.unwrap();
                assert!(s.attestation(&format!("a{i}")).await.unwrap().is_some());
                ok += 1;
            }
        }
    }
    assert_eq!(ok, 160);
    assert_eq!(s.attestation_count().await.unwrap(), 161);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_records_are_group_committed() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("vouch.db");
    let s = SqliteStore::open(&path).await.unwrap();
    concurrent_records_are_group_committed(Arc::new(s.clone())).await;
    let stats = s.commit_stats();
    assert_eq!(stats.records, 161);
    assert!(
        stats.transactions < 100,
        "no group commit: {stats:?} for 161 records"
    );
    // Durable: a fresh open of the file sees every acknowledged record.
    drop(s);
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.attestation_count().await.unwrap(), 161);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_records_are_group_committed() {
    let pg = vouch_testkit::Postgres::start();
    let s = PgStore::connect(&pg.fresh_database()).await.unwrap();
    concurrent_records_are_group_committed(Arc::new(s.clone())).await;
    let stats = s.commit_stats();
    assert_eq!(stats.records, 161);
    assert!(
        stats.transactions < 100,
        "no group commit: {stats:?} for 161 records"
    );
}

/// Without group commit every record is its own transaction, with the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_records_without_group_commit_keep_their_answers() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_with(
        &d.path().join("vouch.db"),
        vouch_store::WriteOptions {
            group_commit: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    concurrent_records_are_group_committed(Arc::new(s.clone())).await;
    assert_eq!(s.commit_stats().transactions, 161);
}

/// The measurement `vouch bench` reports runs, and every record it counts is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_records_writes_what_it_counts() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    let cfg = vouch_store::RecordsBenchConfig {
        records: 300,
        concurrency: 16,
        claims_bytes: 2_000,
    };
    let r = vouch_store::bench_records(Arc::new(s.clone()), &cfg)
        .await
        .unwrap();
    assert_eq!(r.records, 300);
    assert!(r.per_sec > 0.0 && r.claims_bytes >= 2_000);
    assert_eq!(s.attestation_count().await.unwrap(), 300);
}

/// `appraisal_context` reads in one statement what `agent_key`, `revision`, `active_policy_id`,
/// `policy` and `tpm_key` say one by one, and follows their changes.
async fn issue_13_the_appraisal_context_is_one_read_of_what_the_pieces_say(s: &dyn Store) {
    use vouch_store::TpmKeyRecord;
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[4; 32], "h", 1).await.unwrap();
    assert_eq!(
        s.appraisal_context("ak-unknown", "default").await.unwrap(),
        None
    );
    // No policy yet: the default id, no version.
    let c = s
        .appraisal_context(&e.key_id, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(c.key.clone()), s.agent_key(&e.key_id).await.unwrap());
    assert_eq!((c.policy_id.as_str(), c.policy_version), ("default", None));
    assert_eq!((c.tpm_bound, c.tpm_activated), (false, false));
    assert_eq!(
        c.refvalues_revision,
        s.revision(vouch_store::REFVALUES_REVISION).await.unwrap()
    );
    s.add_policy("default", "v1", false, 1).await.unwrap();
    s.add_policy("mine", "a", true, 1).await.unwrap();
    s.add_policy("mine", "b", false, 2).await.unwrap();
    s.add_reference_value(
        &vouch_policy::ReferenceValue {
            kind: "k".into(),
            key: "a".into(),
            value: "1".into(),
        },
        3,
    )
    .await
    .unwrap();
    let c = s
        .appraisal_context(&e.key_id, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.policy_id.as_str(), c.policy_version), ("mine", Some(2)));
    assert_eq!(
        c.refvalues_revision,
        s.reference_values().await.unwrap().revision
    );
    assert!(c.refvalues_revision > 0);
    // A TPM enrolled, then activated (which binds the node).
    let rec = TpmKeyRecord {
        node_id: e.node_id.clone(),
        ek_public: vec![0, 1],
        ek_cert: None,
        ek_issuer: None,
        ak_public: vec![9; 70],
        ak_qualified_name: vec![0, 11, 7],
        challenge_hash: Some("abc".into()),
        challenge_expires: Some(50),
        activated_at: None,
        last_clock: None,
        ima_state: None,
        created_at: 2,
        ek_key: Some("k1".into()),
        bound_at: None,
    };
    s.put_tpm_enrollment(&rec).await.unwrap();
    let c = s
        .appraisal_context(&e.key_id, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.tpm_bound, c.tpm_activated), (false, false));
    s.activate_tpm(&e.node_id, 7).await.unwrap();
    let c = s
        .appraisal_context(&e.key_id, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.tpm_bound, c.tpm_activated), (true, true));
}

/// Issue 13 item 5: a bulk-filled fleet, and its workloads counted by status in the database.
#[tokio::test]
async fn issue_13_a_filled_fleet_is_counted_without_reading_it() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    assert!(s.workload_status_counts().await.unwrap().is_empty());
    s.fill_for_scale(3, 10, 100, 200).await.unwrap();
    assert_eq!(
        s.workload_status_counts().await.unwrap(),
        vec![("affirming".to_string(), 10)]
    );
    let w = s.workload("scale-n1/w2").await.unwrap().unwrap();
    assert_eq!((w.node_id.as_str(), w.deadline), ("scale-n1", Some(200)));
    assert_eq!(s.mark_overdue(300, 0).await.unwrap().len(), 10);
    let counts = s.workload_status_counts().await.unwrap();
    assert_eq!(counts, vec![("contraindicated".to_string(), 10)]);
}

async fn issue_14_attested_nodes_keep_their_id_and_long_lived_documents_need_a_reenrolment(
    s: &dyn Store,
) {
    use vouch_store::AttestedNode;
    let node = |id: &str, reattestable: bool, sel: &str| AttestedNode {
        node_id: id.into(),
        method: "aws_iid".into(),
        node_key: format!("aws_iid:{id}"),
        selectors: vec![sel.into()],
        hostname: "h".into(),
        reattestable,
    };
    // First attestation creates the node; the same key again is the same enrollment.
    let a = node("n-aws", false, "aws_iid:region:r1");
    let e1 = s.enroll_attested(&a, &[1; 32], 10).await.unwrap();
    assert_eq!(e1.node_id, "n-aws");
    let again = s
        .enroll_attested(&node("n-aws", false, "aws_iid:region:r2"), &[1; 32], 11)
        .await
        .unwrap();
    assert_eq!(again, e1);
    let rec = s.node_attestation("n-aws").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.method.as_str(),
            rec.selectors.clone(),
            rec.first_at,
            rec.attested_at,
            rec.attestations
        ),
        ("aws_iid", vec!["aws_iid:region:r2".to_string()], 10, 11, 2)
    );
    // Another key with the same long-lived document: refused, the first key still works.
    assert!(matches!(
        s.enroll_attested(&a, &[2; 32], 12).await,
        Err(StoreError::NodeAttested { .. })
    ));
    assert!(s.agent_key(&e1.key_id).await.unwrap().is_some());
    // Under an admin re-enrolment: the new key takes over, the old one is revoked, the
    // re-enrolment is used up.
    s.add_tpm_reenrollment(&vouch_store::TpmReenrollment {
        id: "re1".into(),
        node_id: "n-aws".into(),
        reason: "rebuilt".into(),
        requested_by: "admin".into(),
        created_at: 12,
        expires_at: 100,
        previous_ek: None,
        previous_ak: None,
        used_at: None,
        ek_key: None,
    })
    .await
    .unwrap();
    let e2 = s.enroll_attested(&a, &[2; 32], 13).await.unwrap();
    assert_eq!(e2.node_id, "n-aws");
    assert!(s.agent_key(&e1.key_id).await.unwrap().is_none());
    assert!(s.agent_key(&e2.key_id).await.unwrap().is_some());
    assert!(matches!(
        s.enroll_attested(&a, &[3; 32], 14).await,
        Err(StoreError::NodeAttested { .. })
    ));
    // A short-lived token: another key takes over at once.
    let p = AttestedNode {
        method: "k8s_psat".into(),
        ..node("n-k8s", true, "k8s_psat:cluster:c")
    };
    let k1 = s.enroll_attested(&p, &[4; 32], 20).await.unwrap();
    let k2 = s.enroll_attested(&p, &[5; 32], 21).await.unwrap();
    assert_eq!(k1.node_id, k2.node_id);
    assert!(s.agent_key(&k1.key_id).await.unwrap().is_none());
    // A key enrolled for one node cannot be enrolled for another; nor a method switched.
    assert!(matches!(
        s.enroll_attested(&node("n-other", true, "x:y:z"), &[5; 32], 22)
            .await,
        Err(StoreError::KeyAlreadyEnrolled { .. })
    ));
    assert!(matches!(
        s.enroll_attested(&node("n-k8s", true, "x:y:z"), &[6; 32], 23)
            .await,
        Err(StoreError::Duplicate(_))
    ));
    // A join-token node's id cannot be taken by an attested one.
    s.create_join_token("tok", None, 0, 100).await.unwrap();
    let j = s.enroll("tok", &[7; 32], "h", 30).await.unwrap();
    assert!(matches!(
        s.enroll_attested(&node(&j.node_id, true, "x:y:z"), &[8; 32], 31)
            .await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(s.node_attestation(&j.node_id).await.unwrap(), None);
}

#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("sub/vouch.db");
    let s = SqliteStore::open(&path).await.unwrap();
    // A write, so the WAL exists.
    s.create_join_token("t", None, 0, 10).await.unwrap();
    for f in ["vouch.db", "vouch.db-wal", "vouch.db-shm"] {
        let p = d.path().join("sub").join(f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}: {mode:o}");
    }
    // Opened again, it is the same database: the token is there (a second one is refused).
    drop(s);
    let again = SqliteStore::open(&path).await.unwrap();
    assert!(
        again.create_join_token("t", None, 0, 10).await.is_err(),
        "the token written before is still there"
    );
}

/// The admission webhook finds the node a pod is bound to by what its platform's document said
/// (`k8s_psat:agent_node_name:<name>`): exact selectors only (no prefix, no LIKE wildcard
/// matches), of the method asked, newest attestation first.
async fn issue_15_attested_nodes_are_found_by_a_selector_of_their_document(s: &dyn Store) {
    use vouch_store::AttestedNode;
    let node = |id: &str, method: &str, selectors: &[&str]| AttestedNode {
        node_id: id.into(),
        method: method.into(),
        node_key: format!("{method}:{id}"),
        selectors: selectors.iter().map(|s| s.to_string()).collect(),
        hostname: "h".into(),
        reattestable: true,
    };
    let name = "k8s_psat:agent_node_name:worker-1";
    s.enroll_attested(
        &node("n1", "k8s_psat", &["k8s_psat:cluster:c", name]),
        &[1; 32],
        10,
    )
    .await
    .unwrap();
    s.enroll_attested(
        &node("n2", "k8s_psat", &["k8s_psat:cluster:d", name]),
        &[2; 32],
        20,
    )
    .await
    .unwrap();
    s.enroll_attested(
        &node("n3", "k8s_psat", &["k8s_psat:agent_node_name:worker-10"]),
        &[3; 32],
        30,
    )
    .await
    .unwrap();
    s.enroll_attested(&node("n4", "aws_iid", &[name]), &[4; 32], 40)
        .await
        .unwrap();
    let ids = |v: Vec<vouch_store::NodeAttestationRecord>| {
        v.into_iter().map(|r| r.node_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.nodes_attested_with("k8s_psat", name).await.unwrap()),
        ["n2", "n1"]
    );
    // worker-1 is not worker-10's prefix match, and `_` / `%` are not wildcards.
    for other in [
        "k8s_psat:agent_node_name:worker-",
        "k8s_psat:agent_node_name:worker_1",
        "k8s_psat:agent_node_name:worker%",
        "k8s_psat:agent_node_name:WORKER-1",
    ] {
        assert!(
            s.nodes_attested_with("k8s_psat", other)
                .await
                .unwrap()
                .is_empty(),
            "{other}"
        );
    }
    assert_eq!(
        ids(s.nodes_attested_with("aws_iid", name).await.unwrap()),
        ["n4"]
    );
}

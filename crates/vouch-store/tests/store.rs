//! Store behaviour, run against the embedded SQLite backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use vouch_policy::ReferenceValue;
use vouch_store::{AttestationRecord, SqliteStore, Store, StoreError};

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    (d, s)
}

#[tokio::test]
async fn join_tokens_are_single_use_and_expire() {
    let (_d, s) = store().await;
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

#[tokio::test]
async fn a_failed_enrollment_does_not_burn_the_token() {
    let (_d, s) = store().await;
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

#[tokio::test]
async fn policies_are_versioned_never_overwritten() {
    let (_d, s) = store().await;
    assert_eq!(s.add_policy("p", "v1", true, 1).await.unwrap(), 1);
    assert_eq!(s.add_policy("p", "v2", false, 2).await.unwrap(), 2);
    assert_eq!(s.policy("p", Some(1)).await.unwrap().unwrap().rego, "v1");
    assert_eq!(s.policy("p", None).await.unwrap().unwrap().rego, "v2");
    assert_eq!(s.active_policy_id().await.unwrap().as_deref(), Some("p"));
    assert!(s.activate_policy("missing").await.is_err());
    assert_eq!(s.policies().await.unwrap().len(), 1);
}

#[tokio::test]
async fn reference_value_revision_tracks_changes() {
    let (_d, s) = store().await;
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

#[tokio::test]
async fn attestations_update_workloads_and_deadlines_expire_them() {
    let (_d, s) = store().await;
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
    assert!(s.mark_overdue(100).await.unwrap().is_empty());
    assert_eq!(
        s.mark_overdue(101).await.unwrap(),
        vec![r.workload_id.clone()]
    );
    let w = s.workload(&r.workload_id).await.unwrap().unwrap();
    assert_eq!(w.status, "contraindicated");
    assert!(w.reason.contains("deadline"));
    // Already contraindicated: not reported twice.
    assert!(s.mark_overdue(102).await.unwrap().is_empty());
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

#[tokio::test]
async fn registration_entries_round_trip() {
    let (_d, s) = store().await;
    let id = vouch_identity::SpiffeId::parse("spiffe://example.org/db").unwrap();
    let sel = vec![vouch_identity::Selector::parse("unix:uid:1000").unwrap()];
    let e = vouch_identity::Entry::new("e1".into(), &id, sel.clone(), 3600, 5).unwrap();
    s.add_entry(&e).await.unwrap();
    assert_eq!(s.entries().await.unwrap(), vec![e.clone()]);
    let dup = vouch_identity::Entry::new("e2".into(), &id, sel, 60, 6).unwrap();
    assert!(matches!(
        s.add_entry(&dup).await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(s.delete_entry("e1").await.unwrap());
    assert!(!s.delete_entry("e1").await.unwrap());
}

#[tokio::test]
async fn revoking_a_node_revokes_its_keys_once() {
    let (_d, s) = store().await;
    s.create_join_token("h1", None, 0, 100).await.unwrap();
    let e = s.enroll("h1", &[7; 32], "host-a", 1).await.unwrap();
    assert!(s.agent_key(&e.key_id).await.unwrap().is_some());
    assert_eq!(s.revoke_node(&e.node_id, "stolen", 5).await.unwrap(), 1);
    assert!(
        s.agent_key(&e.key_id).await.unwrap().is_none(),
        "a revoked key is not found"
    );
    assert_eq!(s.revoke_node(&e.node_id, "again", 6).await.unwrap(), 0);
    assert_eq!(s.revoke_node("no-such-node", "x", 6).await.unwrap(), 0);
}

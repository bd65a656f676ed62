//! The audit log's storage (issue 16 item 3): appends get gap-free positions in order, also when
//! many writers append at once (on PostgreSQL from separate pools, as replicas would); what is
//! read back is what was hashed; stored rows cannot be changed or deleted. Run on both backends,
//! like tests/store.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_core::audit::{
    AuditEntry, check_entries, consistency_proof, leaf_hash, root, verify_consistency,
};
use vouch_store::{
    AttestationRecord, AuditEvent, AuditLog, PgStore, SqliteStore, Store, StoreError,
};

macro_rules! on_both_backends {
    ($($t:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $t() {
                    let d = tempfile::tempdir().unwrap();
                    let path = d.path().join("vouch.db");
                    let a = super::SqliteStore::open(&path).await.unwrap();
                    let b = super::SqliteStore::open(&path).await.unwrap();
                    let raw = super::Raw::Sqlite(path.display().to_string());
                    super::$t(std::sync::Arc::new(a), std::sync::Arc::new(b), raw).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $t() {
                    let pg = vouch_testkit::Postgres::start();
                    let url = pg.fresh_database();
                    let a = super::PgStore::connect(&url).await.unwrap();
                    let b = super::PgStore::connect(&url).await.unwrap();
                    let raw = super::Raw::Pg(url);
                    super::$t(std::sync::Arc::new(a), std::sync::Arc::new(b), raw).await;
                }
            )*
        }
    };
}

on_both_backends!(
    appends_are_ordered_gap_free_and_read_back_as_hashed,
    concurrent_writers_never_fork_the_sequence,
    stored_entries_cannot_be_changed_or_deleted,
    recorded_attestations_are_logged_in_their_transaction,
    enrollments_and_revocations_are_logged_in_their_transaction,
);

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        time: 1_764_900_000 + i,
        kind: "policy.add".into(),
        actor: "admin".into(),
        subject: format!("policy-{i}"),
        body: serde_json::json!({ "version": i, "sha256": "ab" }),
    }
}

async fn appends_are_ordered_gap_free_and_read_back_as_hashed(
    s: Arc<impl Store>,
    _other: Arc<impl Store>,
    _raw: Raw,
) {
    assert_eq!(s.audit_size().await.unwrap(), 0);
    assert!(s.audit_entries(0, 10).await.unwrap().is_empty());
    for i in 0..5 {
        let r = s.append_audit(&event(i)).await.unwrap();
        assert_eq!(r.seq, i);
        assert_eq!(r.leaf_hash, leaf_hash(r.entry.as_bytes()));
    }
    assert_eq!(s.audit_size().await.unwrap(), 5);
    let page = s.audit_entries(1, 4).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let e: AuditEntry = serde_json::from_str(&page[1].entry).unwrap();
    assert_eq!((e.seq, e.subject.as_str()), (2, "policy-2"));
    assert_eq!(e.body["version"], 2);
    // Reads past the end are empty, reads are capped.
    assert!(s.audit_entries(5, 9).await.unwrap().is_empty());
    let all = s.audit_entries(0, u64::MAX).await.unwrap();
    assert_eq!(all.len(), 5);
    // What the tree is built of is what the entries hash to.
    let leaves = s.audit_leaf_hashes(5).await.unwrap();
    let checked = check_entries(all.iter().map(|r| r.entry.as_bytes()), |_| {}).unwrap();
    assert_eq!(leaves, checked);
    assert_eq!(s.audit_leaf_hashes(3).await.unwrap().len(), 3);
    assert_eq!(root(&leaves), root(&checked));
}

async fn concurrent_writers_never_fork_the_sequence(
    a: Arc<impl Store>,
    b: Arc<impl Store>,
    _raw: Raw,
) {
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let s: Arc<dyn Store> = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                seqs.push(s.append_audit(&event(w * 100 + i)).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<u64>>(), "every position once");
    assert_eq!(b.audit_size().await.unwrap(), 200);
    let all = a.audit_entries(0, 200).await.unwrap();
    // Each entry carries its own position: the log checks as a whole.
    let leaves = check_entries(all.iter().map(|r| r.entry.as_bytes()), |_| {}).unwrap();
    assert_eq!(leaves, b.audit_leaf_hashes(200).await.unwrap());
}

async fn stored_entries_cannot_be_changed_or_deleted(
    s: Arc<impl Store>,
    _o: Arc<impl Store>,
    raw: Raw,
) {
    for i in 0..3 {
        s.append_audit(&event(i)).await.unwrap();
    }
    // The append-only triggers, reached through a raw connection to the same database.
    let err = raw_exec(&raw, "UPDATE audit_log SET subject = 'x' WHERE seq = 1").await;
    assert!(err.contains("append-only"), "{err}");
    let err = raw_exec(&raw, "DELETE FROM audit_log WHERE seq = 2").await;
    assert!(err.contains("append-only"), "{err}");
    assert_eq!(s.audit_entries(0, 3).await.unwrap().len(), 3);
    let e: AuditEntry =
        serde_json::from_str(&s.audit_entries(1, 2).await.unwrap()[0].entry).unwrap();
    assert_eq!(e.subject, "policy-1");

    // The database's owner drops the trigger and rewrites entry 1 with a matching leaf hash:
    // the store serves it, but the tree an auditor's earlier head signed no longer matches, and
    // no consistency proof leads from that head to the rewritten log.
    let earlier = root(&s.audit_leaf_hashes(3).await.unwrap());
    let mut forged: AuditEntry = e.clone();
    forged.subject = "policy-x".into();
    let bytes = forged.to_bytes();
    let hash = hex::encode(leaf_hash(&bytes));
    let entry = String::from_utf8(bytes).unwrap().replace('\'', "''");
    let drop = match raw {
        Raw::Sqlite(_) => "DROP TRIGGER audit_log_no_update",
        Raw::Pg(_) => "DROP TRIGGER audit_log_no_change ON audit_log",
    };
    assert_eq!(raw_exec(&raw, drop).await, "ok");
    let blob = match raw {
        Raw::Sqlite(_) => format!("X'{hash}'"),
        Raw::Pg(_) => format!("'\\x{hash}'::bytea"),
    };
    let update =
        format!("UPDATE audit_log SET entry = '{entry}', leaf_hash = {blob} WHERE seq = 1");
    assert_eq!(raw_exec(&raw, &update).await, "ok");
    s.append_audit(&event(3)).await.unwrap();
    let leaves = s.audit_leaf_hashes(4).await.unwrap();
    let served = s.audit_entries(0, 4).await.unwrap();
    // The rewrite is internally consistent (positions, leaf hashes)…
    assert_eq!(
        check_entries(served.iter().map(|r| r.entry.as_bytes()), |_| {}).unwrap(),
        leaves
    );
    assert!(served[1].entry.contains("policy-x"));
    // …but not with the earlier head.
    assert_ne!(root(&leaves[..3]), earlier);
    let proof = consistency_proof(&leaves, 3).unwrap();
    let e = verify_consistency(3, 4, &earlier, &root(&leaves), &proof).unwrap_err();
    assert!(e.to_string().contains("root mismatch"), "{e}");
}

/// Attestation records, group-committed by concurrent callers: each recorded one appends its
/// decision in its own savepoint of the batch transaction; one refused (a replayed nonce)
/// appends nothing, and the positions stay gap-free.
async fn recorded_attestations_are_logged_in_their_transaction(
    s: Arc<impl Store>,
    _o: Arc<impl Store>,
    _raw: Raw,
) {
    let s: Arc<dyn Store> = s;
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let node = s.enroll("t", &[1; 32], "h", 1).await.unwrap().node_id;
    s.use_nonce("used", 1_000).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60usize {
        let s = s.clone();
        let node = node.clone();
        tasks.spawn(async move {
            let r = AttestationRecord {
                id: format!("a{i}"),
                workload_id: format!("{node}/w{}", i % 5),
                node_id: node.clone(),
                key_id: "k".into(),
                evidence_kind: "software".into(),
                evidence_sha256: "00".into(),
                claims: serde_json::json!({"a": 1}),
                status: "affirming".into(),
                trust_vector: serde_json::json!({}),
                reasons: vec![format!("r{i}")],
                policy_id: "default".into(),
                policy_version: 1,
                result: format!("jwt-{i}"),
                created_at: 10,
                expires_at: 70,
            };
            let nonce = if i % 6 == 0 {
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
    let mut recorded = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done.unwrap();
        if i % 6 == 0 {
            assert!(matches!(r, Err(StoreError::NonceReused)), "{i}: {r:?}");
        } else {
            r.unwrap();
            recorded.push(format!("a{i}"));
        }
    }
    // The enrollment, then the recorded decisions.
    assert_eq!(s.audit_size().await.unwrap(), 1 + recorded.len() as u64);
    let all = s.audit_entries(0, 1000).await.unwrap();
    check_entries(all.iter().map(|r| r.entry.as_bytes()), |_| {}).unwrap();
    let mut logged: Vec<String> = all[1..]
        .iter()
        .map(|r| serde_json::from_str::<AuditEntry>(&r.entry).unwrap())
        .inspect(|e| {
            assert_eq!(e.kind, "attestation");
            assert_eq!(e.actor, node);
            assert_eq!(e.body["status"], "affirming");
        })
        .map(|e| e.body["attestation"].as_str().unwrap().to_string())
        .collect();
    logged.sort();
    recorded.sort();
    assert_eq!(logged, recorded, "exactly the recorded decisions");

    // Batches where nothing can be refused take the bulk path (one statement per kind): their
    // decisions are logged too, gap-free after the others.
    let before = s.audit_size().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40usize {
        let s = s.clone();
        let node = node.clone();
        tasks.spawn(async move {
            let mut r = AttestationRecord {
                id: format!("b{i}"),
                workload_id: format!("{node}/w{}", i % 5),
                node_id: node.clone(),
                key_id: "k".into(),
                evidence_kind: "software".into(),
                evidence_sha256: "00".into(),
                claims: serde_json::json!({"b": i}),
                status: "warning".into(),
                trust_vector: serde_json::json!({}),
                reasons: vec![],
                policy_id: "default".into(),
                policy_version: 1,
                result: format!("jwt-b{i}"),
                created_at: 20,
                expires_at: 80,
            };
            r.reasons.push(format!("b{i}"));
            s.record_attestation(&r, 100, Some((&format!("bn{i}"), 1_000)))
                .await
                .unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(s.audit_size().await.unwrap(), before + 40);
    let all = s.audit_entries(0, 1000).await.unwrap();
    check_entries(all.iter().map(|r| r.entry.as_bytes()), |_| {}).unwrap();
    let mut bulk: Vec<String> = all[before as usize..]
        .iter()
        .map(|r| serde_json::from_str::<AuditEntry>(&r.entry).unwrap())
        .map(|e| e.body["attestation"].as_str().unwrap().to_string())
        .collect();
    bulk.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("b{i}")).collect();
    want.sort();
    assert_eq!(bulk, want);
}

/// An enrollment and a revocation append their entry in their own transaction; a refused
/// enrollment (a used token) and a refused revocation (an epoch taken) append nothing.
async fn enrollments_and_revocations_are_logged_in_their_transaction(
    s: Arc<impl Store>,
    _o: Arc<impl Store>,
    _raw: Raw,
) {
    s.create_join_token("t", None, 0, 100).await.unwrap();
    let e = s.enroll("t", &[7; 32], "host-a", 1).await.unwrap();
    assert!(matches!(
        s.enroll("t", &[8; 32], "host-b", 2).await,
        Err(StoreError::TokenReused)
    ));
    let rec = vouch_store::RevocationRecord {
        epoch: 1,
        kind: "node".into(),
        target: e.node_id.clone(),
        reason: "stolen".into(),
        by: "alice".into(),
        created_at: 5,
        record: "jws".into(),
    };
    s.append_revocation(&rec).await.unwrap();
    assert!(s.append_revocation(&rec).await.is_err(), "epoch 1 is taken");
    let all = s.audit_entries(0, 10).await.unwrap();
    let entries: Vec<AuditEntry> = all
        .iter()
        .map(|r| serde_json::from_str(&r.entry).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].kind, "enroll.join-token");
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].seq),
        (e.node_id.as_str(), 0)
    );
    assert_eq!(entries[0].body["key_id"], e.key_id.as_str());
    assert_eq!(entries[0].body["hostname"], "host-a");
    assert_eq!(entries[1].kind, "revoke");
    assert_eq!(entries[1].actor, "alice");
    assert_eq!(entries[1].subject, format!("node:{}", e.node_id));
    assert_eq!(
        (
            entries[1].body["epoch"].as_u64(),
            entries[1].body["reason"].as_str()
        ),
        (Some(1), Some("stolen"))
    );
}

/// The store's database, reached around the store.
enum Raw {
    Sqlite(String),
    Pg(String),
}

/// Run `sql` on the store's own database (the error text, or "ok").
async fn raw_exec(raw: &Raw, sql: &str) -> String {
    let r = match raw {
        Raw::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.map(|_| ())
        }
        Raw::Pg(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.map(|_| ())
        }
    };
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// The trait is usable as an object (the verifier holds `Arc<dyn Store>`).
#[allow(dead_code)]
fn object_safe(s: &dyn Store) -> &dyn AuditLog {
    s
}

//! Issued X.509-SVIDs (issue 15 part 7, migration 0015) on both backends: a batch is recorded
//! and read back by its SHA-256 exactly; an unknown digest is not found; a batch larger than one
//! statement is recorded whole; a certificate recorded twice stays as first recorded; pruning
//! removes only rows whose notAfter has passed, at most `limit` a pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_store::{
    AuditEvent, ISSUED_SVIDS_PER_STATEMENT, IssuedSvidRecord, PgStore, SqliteStore, Store,
};

fn rec(i: usize, not_after: u64) -> IssuedSvidRecord {
    IssuedSvidRecord {
        sha256: format!("{i:064x}"),
        serial: format!("{:x}", 0xabc000 + i),
        node_id: format!("node-{}", i % 3),
        workload: format!("node-{}/w{i}", i % 3),
        spiffe_id: format!("spiffe://vouch.local/w{i}"),
        not_after,
        created_at: 1_000,
    }
}

async fn issued_svids_are_recorded_read_and_pruned(s: Arc<dyn Store>) {
    assert!(
        s.issued_svid(&format!("{:064x}", 1))
            .await
            .unwrap()
            .is_none()
    );
    s.record_issued_svids(&[]).await.unwrap();
    let batch = vec![rec(1, 2_000), rec(2, 3_000)];
    s.record_issued_svids(&batch).await.unwrap();
    for r in &batch {
        assert_eq!(s.issued_svid(&r.sha256).await.unwrap().as_ref(), Some(r));
    }
    // One hex digit changed: not found.
    assert!(
        s.issued_svid(&format!("{:064x}", 3))
            .await
            .unwrap()
            .is_none()
    );
    // The same certificate again (another node claimed): the first record stays.
    let mut again = rec(1, 2_000);
    again.node_id = "node-evil".into();
    again.workload = "node-evil/w1".into();
    s.record_issued_svids(&[again]).await.unwrap();
    assert_eq!(
        s.issued_svid(&batch[0].sha256).await.unwrap().unwrap(),
        batch[0]
    );

    // More than one statement's rows: all recorded.
    let big: Vec<_> = (100..100 + ISSUED_SVIDS_PER_STATEMENT + 7)
        .map(|i| rec(i, 5_000))
        .collect();
    s.record_issued_svids(&big).await.unwrap();
    for r in [
        &big[0],
        &big[ISSUED_SVIDS_PER_STATEMENT],
        big.last().unwrap(),
    ] {
        assert_eq!(s.issued_svid(&r.sha256).await.unwrap().as_ref(), Some(r));
    }

    // Nothing has expired before 2,000.
    assert_eq!(s.prune_issued_svids(2_000, 100).await.unwrap(), 0);
    // Before 3,001: the two small ones, but one a pass.
    assert_eq!(s.prune_issued_svids(3_001, 1).await.unwrap(), 1);
    assert_eq!(s.prune_issued_svids(3_001, 100).await.unwrap(), 1);
    assert!(s.issued_svid(&batch[0].sha256).await.unwrap().is_none());
    assert!(s.issued_svid(&batch[1].sha256).await.unwrap().is_none());
    assert!(s.issued_svid(&big[0].sha256).await.unwrap().is_some());
    // The big batch, bounded: 500 then the rest.
    assert_eq!(s.prune_issued_svids(5_001, 500).await.unwrap(), 500);
    assert_eq!(
        s.prune_issued_svids(5_001, 1_000).await.unwrap(),
        (ISSUED_SVIDS_PER_STATEMENT + 7 - 500) as u64
    );
    assert_eq!(s.prune_issued_svids(u64::MAX, 1_000).await.unwrap(), 0);

    // With the audit entry, in one transaction: both are there after it.
    let size = s.audit_size().await.unwrap();
    let batch = vec![rec(7_000, 9_000), rec(7_001, 9_000)];
    let event = AuditEvent {
        time: 1_000,
        kind: "svid.issue".into(),
        actor: "key".into(),
        subject: "w".into(),
        body: serde_json::json!({"svids": [batch[0].sha256, batch[1].sha256]}),
    };
    let entry = s.record_issued_svids_audited(&batch, &event).await.unwrap();
    assert_eq!(entry.seq, size);
    assert_eq!(s.audit_size().await.unwrap(), size + 1);
    for r in &batch {
        assert_eq!(s.issued_svid(&r.sha256).await.unwrap().as_ref(), Some(r));
    }
    // A batch whose second row repeats a key inside one statement is an error on PostgreSQL
    // (ON CONFLICT cannot affect a row twice) and a no-op on SQLite; either way the audit
    // entry is written exactly when the rows are.
    let twice = vec![rec(8_000, 9_000), rec(8_000, 9_000)];
    let size = s.audit_size().await.unwrap();
    let ok = s.record_issued_svids_audited(&twice, &event).await.is_ok();
    let found = s.issued_svid(&twice[0].sha256).await.unwrap().is_some();
    assert_eq!(ok, found);
    assert_eq!(s.audit_size().await.unwrap(), size + u64::from(ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_issued_svids_are_recorded_read_and_pruned() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    issued_svids_are_recorded_read_and_pruned(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_issued_svids_are_recorded_read_and_pruned() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let s = PgStore::connect(&url).await.unwrap();
    issued_svids_are_recorded_read_and_pruned(Arc::new(s)).await;
}

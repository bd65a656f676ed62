//! Secrets' storage (issue 17 item 4, migration 0013) on both backends: a put makes version 1,
//! each put again the next version with the new sealed bytes and policy; reads and lists give
//! back exactly what was stored; delete removes it once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_store::{PgStore, SqliteStore, Store};

async fn secrets_are_versioned_read_back_and_deleted(s: Arc<dyn Store>) {
    assert!(s.secret("db").await.unwrap().is_none());
    let sealed = vec![0u8, 1, 2, 255, 254];
    assert_eq!(
        s.put_secret("db", &sealed, "package vouch.secret\n", 3, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.put_secret("web", b"w", "p", 1, 101).await.unwrap(), 1);
    let r = s.secret("db").await.unwrap().unwrap();
    assert_eq!(
        (r.version, r.sealed.as_slice(), r.size, r.updated_at),
        (1, &sealed[..], 3, 100)
    );
    assert_eq!(r.policy, "package vouch.secret\n");
    assert_eq!(s.put_secret("db", b"new", "p2", 9, 200).await.unwrap(), 2);
    let r = s.secret("db").await.unwrap().unwrap();
    assert_eq!(
        (r.version, r.sealed.as_slice(), r.policy.as_str(), r.size),
        (2, &b"new"[..], "p2", 9)
    );
    let names: Vec<String> = s
        .secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["db", "web"]);
    assert!(s.delete_secret("db").await.unwrap());
    assert!(!s.delete_secret("db").await.unwrap());
    assert!(s.secret("db").await.unwrap().is_none());
    // A new secret under a deleted name starts again at version 1.
    assert_eq!(s.put_secret("db", b"again", "p", 5, 300).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secrets_are_versioned_read_back_and_deleted() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    secrets_are_versioned_read_back_and_deleted(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_secrets_are_versioned_read_back_and_deleted() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let s = PgStore::connect(&url).await.unwrap();
    secrets_are_versioned_read_back_and_deleted(Arc::new(s)).await;
}

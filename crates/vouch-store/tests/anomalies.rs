//! Fleet anomaly flags' storage (issue 16 item 5), on both backends: a new flag is stored and
//! appended to the audit log in one transaction; the same flag again (from any replica) moves
//! `last_seen` and `count` forward, never back, and is not logged twice; the reads filter and
//! page; group keys are kept once and read back in pages; all of it survives reopening.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_store::{
    AnomalyLog, AnomalyQuery, AnomalyRecord, PgStore, SeenRecord, SqliteStore, Store,
};

fn flag(id: &str, kind: &str, group: &str, node: &str, t: u64) -> AnomalyRecord {
    AnomalyRecord {
        id: id.into(),
        kind: kind.into(),
        group: group.into(),
        node_id: node.into(),
        workload_id: if node.is_empty() {
            String::new()
        } else {
            format!("{node}/{group}")
        },
        reason: format!("{kind} on {node} in {group}"),
        detail: serde_json::json!({"value": "sha256:ab"}),
        first_seen: t,
        last_seen: t,
        count: 1,
    }
}

async fn flags_are_stored_once_logged_once_and_move_forward(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let audit0 = a.audit_size().await.unwrap();
    let f = flag("f1", "new_measurement", "web", "n1", 100);
    let g = flag("f2", "fleet_change", "web", "", 110);
    let h = flag("f3", "tpm_counter", "db", "n2", 120);
    let seen = vec![
        SeenRecord {
            group: "web".into(),
            key: "00aa".into(),
            first_seen: 100,
        },
        SeenRecord {
            group: "db".into(),
            key: "00bb".into(),
            first_seen: 100,
        },
    ];
    assert_eq!(
        a.record_anomalies(&[f.clone(), g.clone()], &seen)
            .await
            .unwrap(),
        2
    );
    // Another replica raises f1 again later, and h.
    let mut again = f.clone();
    again.last_seen = 200;
    again.count = 3;
    assert_eq!(
        b.record_anomalies(&[again, h.clone()], &seen)
            .await
            .unwrap(),
        1
    );
    // A late writer with an older view does not move it back.
    assert_eq!(
        a.record_anomalies(std::slice::from_ref(&f), &[])
            .await
            .unwrap(),
        0
    );
    let all = a
        .anomalies(&AnomalyQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let f1 = all.iter().find(|x| x.id == "f1").unwrap();
    assert_eq!((f1.first_seen, f1.last_seen, f1.count), (100, 200, 3));
    assert_eq!(f1.detail["value"], "sha256:ab");
    assert_eq!(all[0].id, "f1", "newest last_seen first");
    // Filters.
    let web = a
        .anomalies(&AnomalyQuery {
            group: Some("web".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(web.len(), 2);
    let n2 = a
        .anomalies(&AnomalyQuery {
            node_id: Some("n2".into()),
            kind: Some("tpm_counter".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(n2, vec![h]);
    let recent = a
        .anomalies(&AnomalyQuery {
            since: 150,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 1);
    // Each new flag is one audit entry.
    assert_eq!(a.audit_size().await.unwrap(), audit0 + 3);
    let entries = a.audit_entries(audit0, audit0 + 3).await.unwrap();
    assert!(entries.iter().all(|e| e.entry.contains("\"anomaly.flag\"")));
    assert!(entries[0].entry.contains("new_measurement on n1 in web"));
    // Group keys: once each, paged in (group, key) order.
    let page = a.anomaly_seen(("", ""), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].group, "db");
    let rest = a.anomaly_seen(("db", "00bb"), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].group.as_str(), rest[0].key.as_str()),
        ("web", "00aa")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flags_are_stored_once_logged_once_and_survive_reopening() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("vouch.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    flags_are_stored_once_logged_once_and_move_forward(Arc::new(a), Arc::new(b)).await;
    let reopened = SqliteStore::open(&path).await.unwrap();
    let all = reopened
        .anomalies(&AnomalyQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flags_are_stored_once_logged_once() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    flags_are_stored_once_logged_once_and_move_forward(Arc::new(a), Arc::new(b)).await;
}

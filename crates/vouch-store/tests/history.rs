//! The dashboard's reads ([`vouch_store::History`], issue 16 item 6) on both backends: pages
//! worst first and bounded, nodes by their worst workload, counts per time bucket, a
//! workload's history newest first and paged by time, a policy's versions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_store::{AttestationRecord, HISTORY_PAGE_MAX, PgStore, SqliteStore, Store};

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

on_both_backends!(the_dashboards_reads_are_ordered_bounded_and_counted);

fn record(node: &str, name: &str, n: u64, status: &str, at: u64) -> AttestationRecord {
    AttestationRecord {
        id: format!("a-{name}-{n}"),
        workload_id: format!("{node}/{name}"),
        node_id: node.into(),
        key_id: "k".into(),
        evidence_kind: "software".into(),
        evidence_sha256: "00".into(),
        claims: serde_json::json!({"n": n}),
        status: status.into(),
        trust_vector: serde_json::json!({}),
        reasons: vec![format!("reason {n} of {name}")],
        policy_id: "default".into(),
        policy_version: 1,
        result: "r".into(),
        created_at: at,
        expires_at: at + 60,
    }
}

async fn the_dashboards_reads_are_ordered_bounded_and_counted(s: &dyn Store) {
    for t in ["t1", "t2", "t3"] {
        s.create_join_token(t, None, 0, 10_000).await.unwrap();
    }
    let a = s.enroll("t1", &[1; 32], "host-a", 1).await.unwrap().node_id;
    let b = s.enroll("t2", &[2; 32], "host-b", 1).await.unwrap().node_id;
    let idle = s.enroll("t3", &[3; 32], "host-c", 1).await.unwrap().node_id;
    // Node a: web affirming, db contraindicated. Node b: api warning.
    let mut n = 0;
    for (node, name, status, at) in [
        (&a, "web", "warning", 3_600),
        (&a, "web", "affirming", 3_700),
        (&a, "db", "affirming", 3_650),
        (&a, "db", "contraindicated", 7_300),
        (&b, "api", "warning", 7_350),
    ] {
        n += 1;
        s.record_attestation(&record(node, name, n, status, at), at + 100, None)
            .await
            .unwrap();
    }

    // Worst first, then by id; filtered; paged.
    let all = s.workloads_page(None, 0, 10).await.unwrap();
    let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["db", "api", "web"]);
    let warn = s.workloads_page(Some("warning"), 0, 10).await.unwrap();
    assert_eq!(warn.len(), 1);
    assert_eq!(warn[0].name, "api");
    let second = s.workloads_page(None, 1, 1).await.unwrap();
    assert_eq!(second[0].name, "api");
    assert!(s.workloads_page(None, 3, 10).await.unwrap().is_empty());
    assert!(s.workloads_page(None, 0, u32::MAX).await.unwrap().len() <= HISTORY_PAGE_MAX as usize);

    // Nodes by their worst workload; one without workloads is `none`.
    let nodes = s.node_statuses(0, 10).await.unwrap();
    let got: Vec<(&str, &str, u64)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.status.as_str(), n.workloads))
        .collect();
    assert_eq!(
        got,
        [
            (a.as_str(), "contraindicated", 2),
            (b.as_str(), "warning", 1),
            (idle.as_str(), "none", 0)
        ]
    );
    assert_eq!(nodes[0].hostname, "host-a");
    let mut counts = s.node_status_counts().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("contraindicated".to_string(), 1),
            ("none".to_string(), 1),
            ("warning".to_string(), 1)
        ]
    );

    // Attestations per hour since 3,600: two buckets.
    let buckets = s.attestation_counts(3_600, 3_600).await.unwrap();
    let got: Vec<(u64, &str, u64)> = buckets
        .iter()
        .map(|b| (b.start, b.status.as_str(), b.count))
        .collect();
    assert_eq!(
        got,
        [
            (3_600, "affirming", 2),
            (3_600, "warning", 1),
            (7_200, "contraindicated", 1),
            (7_200, "warning", 1)
        ]
    );
    assert_eq!(s.attestation_counts(7_300, 3_600).await.unwrap().len(), 2);

    // A workload's history, newest first, then the page before a time.
    let h = s
        .workload_history(&format!("{a}/web"), u64::MAX, 10)
        .await
        .unwrap();
    let got: Vec<(&str, u64)> = h
        .iter()
        .map(|x| (x.status.as_str(), x.created_at))
        .collect();
    assert_eq!(got, [("affirming", 3_700), ("warning", 3_600)]);
    assert_eq!(h[1].reasons, ["reason 1 of web"]);
    let older = s
        .workload_history(&format!("{a}/web"), 3_700, 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].created_at, 3_600);
    assert!(
        s.workload_history("nobody/x", u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A policy's versions, newest first.
    s.add_policy("p", "package a", true, 10).await.unwrap();
    s.add_policy("p", "package b", true, 20).await.unwrap();
    let v = s.policy_versions("p").await.unwrap();
    assert_eq!(v.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(v[1].created_at, 10);
    assert_eq!(v[0].sha256.len(), 64);
    assert!(s.policy_versions("none").await.unwrap().is_empty());
}

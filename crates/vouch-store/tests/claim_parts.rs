//! Issue 13 (durable writes): attestation claims stored deduplicated, their large parts once in
//! `claim_parts`, read back exactly as they were written, on both backends; rows written
//! before the migration read back unchanged; a missing or altered part is an error, not a
//! panic nor other claims.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use std::sync::Arc;
use vouch_store::{AttestationRecord, PgStore, SqliteStore, Store, StoreError};

/// A machine's claims: its image's packages and files (shared), its own process table.
fn claims(host: &str, image: u32, extra: Option<&str>) -> Value {
    let packages: serde_json::Map<String, Value> = (0..300)
        .map(|i| (format!("lib{i}"), json!(format!("1.{i}.{image}"))))
        .collect();
    let files: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("/etc/conf.d/{i}.conf"),
                json!({"sha256": format!("{i:064x}"), "signers": [], "error": null}),
            )
        })
        .collect();
    let mut processes: Vec<Value> = (0..60)
        .map(|i| json!({"pid": 100 + i, "name": format!("w-{host}-{i}"), "exe": "/usr/bin/w"}))
        .collect();
    if let Some(p) = extra {
        processes.push(json!({"pid": 9_999, "name": p, "exe": null}));
    }
    json!({
        "evidence": {"kind": "software", "collected_at": 17, "hardware_backed": false},
        "hostname": host,
        "os": {"id": "debian", "version_id": "12"},
        "kernel": "6.1.0 ünïcode \"quoted\" \u{1F600}",
        "ratio": 0.1,
        "big": 18_446_744_073_709_551_615u64,
        "neg": -3,
        "files": files,
        "processes": processes,
        "listening": [],
        "packages": packages,
    })
}

fn record(id: &str, node: &str, claims: Value) -> AttestationRecord {
    AttestationRecord {
        id: id.into(),
        workload_id: format!("{node}/app"),
        node_id: node.into(),
        key_id: "ak".into(),
        evidence_kind: "software".into(),
        evidence_sha256: "00".into(),
        claims,
        status: "affirming".into(),
        trust_vector: json!({"executables": 2}),
        reasons: vec![],
        policy_id: "default".into(),
        policy_version: 1,
        result: "jwt".into(),
        created_at: 10,
        expires_at: 70,
    }
}

/// Enroll `n` nodes; their ids.
async fn nodes(s: &dyn Store, n: u8) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..n {
        let t = format!("t{k}");
        s.create_join_token(&t, None, 0, 100).await.unwrap();
        out.push(s.enroll(&t, &[k; 32], "h", 1).await.unwrap().node_id);
    }
    out
}

/// Read `id` back and require exactly `want`, down to the JSON text.
async fn same(s: &dyn Store, id: &str, want: &AttestationRecord) {
    let got = s.attestation(id).await.unwrap().unwrap();
    assert_eq!(got.claims.to_string(), want.claims.to_string(), "{id}");
    assert_eq!(&got, want);
}

/// Records alone and in a group commit, sharing parts, with claims of every shape; each reads
/// back byte-identical. A record that fails after its parts were written (a duplicate id)
/// leaves no part marked as stored: a later record with that part still reads back.
async fn round_trip(s: Arc<dyn Store>) {
    let n = nodes(&*s, 10).await;
    // Alone.
    let a = record("a", &n[1], claims("h1", 1, None));
    s.record_attestation(&a, 100, Some(("na", 200)))
        .await
        .unwrap();
    same(&*s, "a", &a).await;
    // Many at once (group commit), sharing packages and files, each its own processes.
    let mut tasks = tokio::task::JoinSet::new();
    let mut want = Vec::new();
    for i in 0..40u32 {
        let r = record(
            &format!("b{i}"),
            &n[i as usize % 5],
            claims(&format!("h{}", i % 5), i % 2, (i % 3 == 0).then_some("new")),
        );
        want.push(r.clone());
        let s = s.clone();
        tasks.spawn(async move { s.record_attestation(&r, 100, Some((&r.id, 200))).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    for r in &want {
        same(&*s, &r.id, r).await;
    }
    // Claims with no large part, not an object, and ones that look like references.
    let fake = "ab".repeat(32);
    for (id, c) in [
        ("c1", json!({"a": 1})),
        ("c2", json!([1, {"files": {"$part": fake}}])),
        (
            "c3",
            json!({"packages": {"$part": fake}, "listening": null}),
        ),
        (
            "c4",
            json!({"files": {"$part": fake, "pad": "x".repeat(400)}, "processes": {"$part": fake}}),
        ),
        ("c5", json!(null)),
    ] {
        let r = record(id, &n[9], c);
        s.record_attestation(&r, 100, None).await.unwrap();
        same(&*s, id, &r).await;
    }
    // A record refused after it wrote a new part: the part goes with it, and is written
    // again by the next record that carries it.
    let fresh = claims("h-fresh", 7, Some("only-here"));
    let dup = record("a", &n[1], fresh.clone());
    assert!(s.record_attestation(&dup, 100, None).await.is_err());
    same(&*s, "a", &a).await;
    let ok = record("d", &n[1], fresh.clone());
    s.record_attestation(&ok, 100, None).await.unwrap();
    same(&*s, "d", &ok).await;
    // The same inside a batch: a duplicate among concurrent records.
    let fresh = claims("h-fresh2", 8, Some("only-here-too"));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, id) in ["e0", "e1", "a", "e2", "e3"].into_iter().enumerate() {
        let r = record(id, &n[k], fresh.clone());
        let s = s.clone();
        tasks.spawn(async move { (r.clone(), s.record_attestation(&r, 100, None).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (r, res) = done.unwrap();
        if r.id == "a" {
            assert!(res.is_err());
        } else {
            res.unwrap();
            same(&*s, &r.id, &r).await;
        }
    }
    same(&*s, "a", &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_sqlite_claims_are_stored_deduplicated_and_read_back_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("vouch.db");
    let s = SqliteStore::open(&path).await.unwrap();
    round_trip(Arc::new(s.clone())).await;
    let st = s.commit_stats();
    assert!(st.parts_known > 0, "{st:?}");
    // Each distinct part once: 3 images' packages and files, the process tables of 5 hosts
    // with and without the extra process, the fresh ones, the large fake-reference part.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let parts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM claim_parts")
        .fetch_one(&pool)
        .await
        .unwrap();
    // packages x4 (images 0, 1, 7, 8) + files x1 (the same in every image) + processes:
    // h1, h0..h4 each with and without "new" where they occur, h-fresh, h-fresh2 + c4's files.
    let distinct_processes: i64 = {
        let mut set = std::collections::BTreeSet::new();
        set.insert(("h1".to_string(), false));
        for i in 0..40u32 {
            set.insert((format!("h{}", i % 5), i % 3 == 0));
        }
        i64::try_from(set.len()).unwrap() + 2
    };
    assert_eq!(parts, 4 + 1 + distinct_processes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_postgres_claims_are_stored_deduplicated_and_read_back_unchanged() {
    let pg = vouch_testkit::Postgres::start();
    let s = PgStore::connect(&pg.fresh_database()).await.unwrap();
    round_trip(Arc::new(s.clone())).await;
    assert!(s.commit_stats().parts_known > 0);
}

/// Copy migrations 0001–0008 (the schema before claims were deduplicated) into `to`.
fn migrations_before_0009(from: &str, to: &std::path::Path) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(from);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.as_str() < "0009" {
            std::fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

const OLD_ROW: &str = "INSERT INTO attestations (id, workload_id, node_id, key_id, evidence_kind,
    evidence_sha256, claims, status, trust_vector, reasons, policy_id, policy_version, result,
    created_at, expires_at)
    VALUES ('old', 'n/app', 'n', 'ak', 'software', '00', $1, 'affirming', '{\"executables\":2}',
    '[]', 'default', 1, 'jwt', 10, 70)";

/// After the old row was read back: a new record's part deleted, then altered, in the table.
async fn damaged_parts_are_errors(s: &dyn Store, exec: impl AsyncFn(&str)) {
    let n = nodes(s, 1).await;
    let r = record("new", &n[0], claims("h", 1, None));
    s.record_attestation(&r, 100, None).await.unwrap();
    same(s, "new", &r).await;
    let body = r.claims["packages"].to_string();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    exec(&format!(
        "UPDATE claim_parts SET body = '[]' WHERE sha256 = '{digest}'"
    ))
    .await;
    assert!(matches!(
        s.attestation("new").await,
        Err(StoreError::Corrupt(m)) if m.contains(&digest)
    ));
    exec(&format!(
        "DELETE FROM claim_parts WHERE sha256 = '{digest}'"
    ))
    .await;
    match s.attestation("new").await {
        Err(StoreError::ClaimPartMissing {
            digest: d, part, ..
        }) => {
            assert_eq!((d.as_str(), part.as_str()), (digest.as_str(), "packages"))
        }
        other => panic!("{other:?}"),
    }
    // A reference to something that is not a measurement part.
    exec("UPDATE attestations SET claims_parts = '{\"kernel\": \"00\"}' WHERE id = 'new'").await;
    assert!(matches!(
        s.attestation("new").await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn issue_13_sqlite_rows_written_before_the_migration_read_back_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let old = d.path().join("old");
    std::fs::create_dir(&old).unwrap();
    migrations_before_0009("migrations", &old);
    let path = d.path().join("vouch.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let c = claims("h", 1, Some("x"));
    sqlx::query(OLD_ROW)
        .bind(c.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let s = SqliteStore::open(&path).await.unwrap();
    let got = s.attestation("old").await.unwrap().unwrap();
    assert_eq!(got.claims.to_string(), c.to_string());
    damaged_parts_are_errors(&s, async |sql: &str| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
    assert_eq!(s.attestation("old").await.unwrap().unwrap(), got);
}

#[tokio::test]
async fn issue_13_postgres_rows_written_before_the_migration_read_back_unchanged() {
    let d = tempfile::tempdir().unwrap();
    migrations_before_0009("migrations_pg", d.path());
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(d.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let c = claims("h", 1, Some("x"));
    sqlx::query(OLD_ROW)
        .bind(c.to_string())
        .execute(&pool)
        .await
        .unwrap();
    let s = PgStore::connect(&url).await.unwrap();
    let got = s.attestation("old").await.unwrap().unwrap();
    assert_eq!(got.claims.to_string(), c.to_string());
    damaged_parts_are_errors(&s, async |sql: &str| {
        sqlx::query(sql).execute(&pool).await.unwrap();
    })
    .await;
    assert_eq!(s.attestation("old").await.unwrap().unwrap(), got);
}

/// Two replicas on one PostgreSQL write records carrying the same new parts at the same time:
/// each part is stored once (the second insert finds it: `ON CONFLICT DO NOTHING`), every
/// record is acknowledged and reads back unchanged from either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_two_postgres_replicas_store_shared_parts_once() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let n = nodes(&*a, 8).await;
    let mut tasks = tokio::task::JoinSet::new();
    let mut want = Vec::new();
    for round in 0..3u32 {
        for i in 0..48usize {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Image and host shared across both replicas' records, new each round.
            let r = record(
                &format!("r{round}-{i}"),
                &n[i % 8],
                claims(
                    &format!("h{}-{round}", i % 4),
                    round * 10 + (i % 3) as u32,
                    None,
                ),
            );
            want.push(r.clone());
            tasks.spawn(async move { s.record_attestation(&r, 100, None).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    }
    for (k, r) in want.iter().enumerate() {
        same(if k % 2 == 0 { &*b } else { &*a }, &r.id, r).await;
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let parts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM claim_parts")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Per round: 3 package lists, 4 process tables; files are the same in every round.
    assert_eq!(parts, 3 * (3 + 4) + 1);
}

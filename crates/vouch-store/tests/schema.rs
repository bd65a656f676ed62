//! Issue 16 item 1: opening a store never migrates an existing database implicitly, and many
//! reference values are imported in one transaction.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vouch_policy::ReferenceValue;
use vouch_store::{AuditEvent, AuditLog, Migrations, SqliteStore, Store, StoreError, WriteOptions};

/// The last migration of the schema an "older Vouch" left behind.
const OLD: i64 = 11;

async fn open(p: &std::path::Path, m: Migrations) -> Result<SqliteStore, StoreError> {
    SqliteStore::open_with_schema(p, WriteOptions::default(), m).await
}

#[tokio::test]
async fn an_older_schema_is_refused_until_migrating_is_asked_for() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("vouch.db");
    SqliteStore::create_with_schema_upto(&p, OLD).await.unwrap();
    let e = open(&p, Migrations::RefuseOutdated).await.unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaOutdated { first: 12, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("vouch server --migrate") && msg.contains("vouch migrate"),
        "{msg}"
    );
    // Refusing changed nothing: still refused, and the old tables' data is intact.
    assert!(open(&p, Migrations::RefuseOutdated).await.is_err());
    // Asked for: migrated, and from then on it opens without asking.
    let s = open(&p, Migrations::Apply).await.unwrap();
    s.add_policy("p", "package x", true, 1).await.unwrap();
    drop(s);
    let s = open(&p, Migrations::RefuseOutdated).await.unwrap();
    assert_eq!(s.policies().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_database_gets_its_schema_a_newer_or_foreign_one_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("new.db");
    let s = open(&p, Migrations::RefuseOutdated).await.unwrap();
    assert_eq!(s.audit_size().await.unwrap(), 0);
    drop(s);

    // Migrated by a newer binary: a migration this one does not know.
    let p = d.path().join("newer.db");
    SqliteStore::create_with_schema_upto(&p, i64::MAX)
        .await
        .unwrap();
    {
        let pool = sqlx_pool(&p).await;
        sqlx_exec(
            &pool,
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (9999, 'future', TRUE, X'00', 0)",
        )
        .await;
    }
    for m in [Migrations::RefuseOutdated, Migrations::Apply] {
        let e = open(&p, m).await.unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaNewer { version: 9999 }),
            "{e:?}"
        );
    }

    // Some other program's database: never "migrated" into a Vouch store.
    let p = d.path().join("other.db");
    {
        let pool = sqlx_pool(&p).await;
        sqlx_exec(&pool, "CREATE TABLE invoices (id INTEGER)").await;
    }
    let e = open(&p, Migrations::Apply).await.unwrap_err();
    assert!(e.to_string().contains("not a Vouch store"), "{e}");
}

async fn sqlx_pool(p: &std::path::Path) -> sqlx::SqlitePool {
    let o = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(p)
        .create_if_missing(true);
    sqlx::SqlitePool::connect_with(o).await.unwrap()
}

async fn sqlx_exec(pool: &sqlx::SqlitePool, q: &str) {
    sqlx::query(q).execute(pool).await.unwrap();
}

fn event(n: usize) -> AuditEvent {
    AuditEvent {
        time: 1,
        kind: "refvalue.import".into(),
        actor: "test".into(),
        subject: format!("{n} values"),
        body: serde_json::json!({ "count": n }),
    }
}

#[tokio::test]
async fn thousands_of_reference_values_import_in_one_transaction_sqlite() {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&d.path().join("vouch.db")).await.unwrap();
    import_thousands(&s).await;
}

#[tokio::test]
async fn thousands_of_reference_values_import_in_one_transaction_postgres() {
    let pg = vouch_testkit::Postgres::start();
    let s = vouch_store::PgStore::connect(&pg.fresh_database())
        .await
        .unwrap();
    import_thousands(&s).await;
}

async fn import_thousands(s: &dyn Store) {
    // Join tokens are listed by hash, newest first, with their use.
    s.create_join_token("aa", Some("n1"), 10, 100)
        .await
        .unwrap();
    s.create_join_token("bb", None, 20, 200).await.unwrap();
    s.enroll("bb", &[7; 32], "h", 30).await.unwrap();
    let t = s.join_tokens(10).await.unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].token_sha256.as_str(), t[0].used_at), ("bb", Some(30)));
    assert!(t[0].used_by.is_some());
    assert_eq!(
        (t[1].node_name.as_deref(), t[1].expires_at),
        (Some("n1"), 100)
    );
    assert_eq!(s.join_tokens(1).await.unwrap().len(), 1);

    let values: Vec<ReferenceValue> = (0..5000)
        .map(|i| ReferenceValue {
            kind: "file".into(),
            key: format!("/opt/app/{i}"),
            value: format!("{i:064x}"),
        })
        .collect();
    let before = s.revision(vouch_store::REFVALUES_REVISION).await.unwrap();
    let audit_before = s.audit_size().await.unwrap();
    assert_eq!(
        s.import_reference_values(&values, &event(5000), 2)
            .await
            .unwrap(),
        5000
    );
    assert_eq!(s.reference_value_rows().await.unwrap().len(), 5000);
    assert_eq!(
        s.revision(vouch_store::REFVALUES_REVISION).await.unwrap(),
        before + 1,
        "one change"
    );
    assert_eq!(s.audit_size().await.unwrap(), audit_before + 1);
    // Again, with one new value: the others are kept, not duplicated.
    let mut again = values[..10].to_vec();
    again.push(ReferenceValue {
        kind: "executable".into(),
        key: "db".into(),
        value: "ab".repeat(32),
    });
    assert_eq!(
        s.import_reference_values(&again, &event(11), 3)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.reference_value_rows().await.unwrap().len(), 5001);
}

#[tokio::test]
async fn postgres_an_older_schema_is_refused_until_migrating_is_asked_for() {
    use vouch_store::PgStore;
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let open = |m| PgStore::connect_with_schema(&url, WriteOptions::default(), m);
    // A new database gets its schema without asking.
    let s = open(Migrations::RefuseOutdated).await.unwrap();
    s.add_policy("p", "package x", true, 1).await.unwrap();
    drop(s);
    // Pretend the last migration is still to come, as after upgrading the binary.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = $1")
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let e = open(Migrations::RefuseOutdated).await.unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaOutdated { first, .. } if first == last),
        "{e:?}"
    );
    sqlx::query("UPDATE _sqlx_migrations SET success = TRUE WHERE version = $1")
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let s = open(Migrations::RefuseOutdated).await.unwrap();
    assert_eq!(s.policies().await.unwrap().len(), 1);
    drop(s);
    // A version this binary does not know: refused whatever is asked.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'future', TRUE, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let e = open(Migrations::Apply).await.unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaNewer { version: 9999 }),
        "{e:?}"
    );
}

/// Replicas starting together on a new PostgreSQL database: one creates the schema, the others
/// wait for it (the migrator's advisory lock) instead of refusing a half-made schema.
#[tokio::test]
async fn postgres_replicas_starting_together_on_a_new_database_all_open() {
    use vouch_store::PgStore;
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let opens = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            PgStore::connect_with_schema(&url, WriteOptions::default(), Migrations::RefuseOutdated)
                .await
        })
    });
    for r in futures_join(opens.collect()).await {
        let s = r.unwrap().unwrap();
        assert!(s.policies().await.unwrap().is_empty());
    }
}

async fn futures_join<T>(
    hs: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in hs {
        out.push(h.await);
    }
    out
}

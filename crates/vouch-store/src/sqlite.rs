//! The embedded SQLite store.

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, sqlite::SqliteRow};
use std::path::Path;
use std::time::Duration;
use vouch_policy::{ReferenceValue, ReferenceValues};

use crate::{
    AgentKeyRecord, AttestationRecord, Enrollment, NodeRecord, PolicyRecord, Result, Store,
    StoreError, TpmKeyRecord, WorkloadRecord, WriteOptions,
};

/// The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so an
/// acknowledged write survives a crash of the process and of the machine. Concurrent
/// attestation records share transactions (group commit, one `fsync` for many); clones share
/// the pool and the committer, which ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The group-commit task's queue (`None`: every record is its own transaction).
    writer: Option<crate::group::Writer>,
    stats: std::sync::Arc<crate::group::Stats>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

crate::rows::row_mappers!(SqliteRow);
use crate::rows::{hex_sha256, key_id};

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and run migrations. Attestation
    /// records are group-committed ([`WriteOptions::default`]); this spawns the committer task
    /// on the current tokio runtime.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, WriteOptions::default()).await
    }

    /// [`SqliteStore::open`] with explicit write options.
    pub async fn open_with(path: &Path, write: WriteOptions) -> Result<Self> {
        Self::open_with_schema(path, write, crate::Migrations::Apply).await
    }

    /// Open the database at `path`, doing what `migrations` says about a schema older than
    /// this binary's (a new, empty database always gets its schema).
    pub async fn open_with_schema(
        path: &Path,
        write: WriteOptions,
        migrations: crate::Migrations,
    ) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        // A new database is created readable by its owner only (it holds enrollments, token
        // hashes and every record); SQLite gives its -wal and -shm files the database file's
        // mode. An empty file is an empty database to SQLite.
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::Database(sqlx::Error::Io(e))),
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A group commit's multi-row statements keep their statement journal in memory
            // instead of spilling it to a temporary file on every batch.
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone())
            .await?;
        let found = crate::schema::Found {
            applied: Self::applied_migrations(&pool).await?,
            has_tables: sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_one(&pool)
            .await?
                > 0,
        };
        let pool = if crate::schema::decide(&MIGRATOR, found, migrations)? {
            MIGRATOR.run(&pool).await?;
            // The schema changed under connections that had read it before: reading a row
            // written before a migration through them made sqlx-sqlite 0.8 index past the
            // row's columns (a panic in its worker, tests/claim_parts.rs issue_13_sqlite_…).
            // Start again from connections that never saw the old schema.
            pool.close().await;
            SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(opts)
                .await?
        } else {
            pool
        };
        let (writer, stats) = Self::start_writer(&pool, write);
        Ok(Self {
            pool,
            writer,
            stats,
        })
    }
}

impl SqliteStore {
    /// Create the database at `path` with the schema migrations up to number `last` only: a
    /// database as an older Vouch left it, for upgrade tests and rehearsals of `--migrate`.
    pub async fn create_with_schema_upto(path: &Path, last: i64) -> Result<()> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await?;
        let old = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                MIGRATOR
                    .iter()
                    .filter(|m| m.version <= last)
                    .cloned()
                    .collect(),
            ),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        old.run(&pool).await?;
        pool.close().await;
        Ok(())
    }

    /// The migrations recorded as applied (`None`: no migrations table).
    async fn applied_migrations(pool: &SqlitePool) -> Result<Option<Vec<i64>>> {
        let has: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(pool)
        .await?;
        if has == 0 {
            return Ok(None);
        }
        let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
        Ok(Some(sqlx::query_scalar(sql).fetch_all(pool).await?))
    }

    /// One page of entries as one JSON array built by SQLite (`Store::entries_page`): one row
    /// to hand over instead of one per entry, which is what reading a million entries costs.
    async fn entries_page_json(&self, after: &str, limit: u32) -> Result<String> {
        Ok(sqlx::query_scalar(
            "SELECT json_group_array(json_object('id', id, 'spiffe_id', spiffe_id,
                     'selectors', json(selectors), 'ttl', ttl, 'created_at', created_at))
             FROM (SELECT * FROM entries WHERE id > $1 ORDER BY id LIMIT $2)",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?)
    }
}

// One writer at a time: the first write of a transaction takes the database's lock.
crate::sql::store_impl!(
    SqliteStore,
    sqlx::SqliteConnection,
    sqlx::Sqlite,
    ("UPDATE nodes SET hostname = hostname WHERE id IN (", ")")
);
crate::audit::audit_impl!(SqliteStore);
crate::history::history_impl!(SqliteStore);
crate::anomaly::anomaly_impl!(SqliteStore);
crate::secrets::secrets_impl!(SqliteStore);
crate::issued::issued_impl!(SqliteStore);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[tokio::test]
    async fn one_batch_gives_each_record_its_own_answer() {
        let d = tempfile::tempdir().unwrap();
        crate::batch_test::one_batch_mixed_answers!(
            super::SqliteStore,
            super::SqliteStore::open(&d.path().join("vouch.db"))
                .await
                .unwrap()
        );
    }
}

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
    StoreError, TpmKeyRecord, WorkloadRecord,
};

/// The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`, so an
/// acknowledged write survives a crash of the process and of the machine.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

crate::rows::row_mappers!(SqliteRow);
use crate::rows::{hex_sha256, key_id, workload_name, workload_reason};

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and run migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

crate::sql::store_impl!(SqliteStore, sqlx::SqliteConnection);

//! The PostgreSQL store, for verifier clusters: any number of replicas share one database.
//! The schema is `migrations_pg/` (the SQLite schema in PostgreSQL types); rows map through the
//! same code as SQLite's.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use std::time::Duration;
use vouch_policy::{ReferenceValue, ReferenceValues};

use crate::{
    AgentKeyRecord, AttestationRecord, Enrollment, NodeRecord, PolicyRecord, Result, Store,
    StoreError, TpmKeyRecord, WorkloadRecord,
};

/// A PostgreSQL store. Every acknowledged write is a committed transaction.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_pg");

crate::rows::row_mappers!(PgRow);
use crate::rows::{hex_sha256, key_id, workload_name, workload_reason};

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db`) and run migrations. Connections are
    /// re-established by the pool after the server restarts.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

crate::sql::store_impl!(PgStore, sqlx::PgConnection);

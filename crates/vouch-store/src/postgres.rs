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
    StoreError, TpmKeyRecord, WorkloadRecord, WriteOptions,
};

/// A PostgreSQL store. Every acknowledged write is a committed transaction; concurrent
/// attestation records share one (group commit). Clones share the pool and the committer, which
/// ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The group-commit task's queue (`None`: every record is its own transaction).
    writer: Option<crate::group::Writer>,
    stats: std::sync::Arc<crate::group::Stats>,
    /// With several hosts: the watcher that fails the pool over to a new primary (ends with
    /// the last clone).
    _failover: Option<std::sync::Arc<crate::pg_hosts::Watcher>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_pg");

crate::rows::row_mappers!(PgRow);
use crate::rows::{hex_sha256, key_id};

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db`) and run migrations. Connections are
    /// re-established by the pool after the server restarts. Attestation records are
    /// group-committed ([`WriteOptions::default`]); this spawns the committer task on the
    /// current tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, WriteOptions::default()).await
    }

    /// [`PgStore::connect`] with explicit write options. `url` may list several hosts, libpq
    /// style (`postgres://user@db1:5432,db2:5432/db?target_session_attrs=read-write`): the
    /// store writes to whichever is the read-write primary and, when it is lost, finds the
    /// promoted standby by itself (see `pg_hosts`). Every connection the pool opens is checked
    /// not to be a standby.
    pub async fn connect_with(url: &str, opts: WriteOptions) -> Result<Self> {
        Self::connect_with_schema(url, opts, crate::Migrations::Apply).await
    }

    /// [`PgStore::connect_with`], doing what `migrations` says about a schema older than this
    /// binary's (a new, empty database always gets its schema).
    pub async fn connect_with_schema(
        url: &str,
        opts: WriteOptions,
        migrations: crate::Migrations,
    ) -> Result<Self> {
        use crate::pg_hosts::{Current, Hosts, find_primary_at_start};
        let hosts = std::sync::Arc::new(Hosts::parse(url)?);
        let (host, timeline) = find_primary_at_start(&hosts, Duration::from_secs(10)).await?;
        let current = std::sync::Arc::new(std::sync::Mutex::new(Current {
            host,
            timeline,
            switched_at: None,
        }));
        let seen = current.clone();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(hosts.acquire_timeout(Duration::from_secs(10)))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                        .fetch_one(&mut *conn)
                        .await?;
                    if standby {
                        return Err(sqlx::Error::Protocol(
                            "this PostgreSQL server is a standby (in recovery): the store \
                             writes only to a read-write primary"
                                .into(),
                        ));
                    }
                    Ok(())
                })
            })
            // After a failover, connections opened before the switch (to the old primary,
            // should it still answer) are closed instead of reused.
            .before_acquire(move |_conn, meta| {
                let switched = seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .switched_at;
                Box::pin(async move {
                    Ok(match switched {
                        Some(at) => std::time::Instant::now()
                            .checked_sub(meta.age)
                            .is_none_or(|born| born >= at),
                        None => true,
                    })
                })
            })
            .connect_with(hosts.options(host).clone())
            .await?;
        Self::migrate_locked(&pool, migrations).await?;
        let failover = (hosts.len() > 1).then(|| {
            std::sync::Arc::new(crate::pg_hosts::watch(
                pool.clone(),
                hosts.clone(),
                current.clone(),
            ))
        });
        if hosts.len() > 1 {
            tracing::info!(
                "store: PostgreSQL primary {} (timeline {timeline}) of {} hosts",
                hosts.name(host),
                hosts.len()
            );
        }
        let (writer, stats) = Self::start_writer(&pool, opts);
        Ok(Self {
            pool,
            writer,
            stats,
            _failover: failover,
        })
    }
}

impl PgStore {
    /// Look at the schema and migrate it when `migrations` says so, all under the migrator's
    /// advisory lock: replicas starting together on a new database wait for the one creating
    /// its schema, instead of finding it half made and refusing it as out of date.
    async fn migrate_locked(pool: &PgPool, migrations: crate::Migrations) -> Result<()> {
        use sqlx::migrate::Migrate as _;
        let mut conn = pool.acquire().await?;
        conn.lock().await?;
        let r = async {
            let found = Self::schema_found(&mut conn).await?;
            if crate::schema::decide(&MIGRATOR, found, migrations)? {
                // Takes the same (session, re-entrant) lock once more, and gives it back.
                MIGRATOR.run_direct(&mut *conn).await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        let unlocked = conn.unlock().await;
        r?;
        unlocked?;
        Ok(())
    }

    /// The migrations recorded as applied, and whether the schema has any table.
    async fn schema_found(conn: &mut sqlx::PgConnection) -> Result<crate::schema::Found> {
        async fn tables(conn: &mut sqlx::PgConnection, name: &str) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND ($1 = '' OR table_name = $1)",
            )
            .bind(name)
            .fetch_one(&mut *conn)
            .await?)
        }
        let applied = if tables(conn, "_sqlx_migrations").await? > 0 {
            let sql = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
            Some(sqlx::query_scalar(sql).fetch_all(&mut *conn).await?)
        } else {
            None
        };
        Ok(crate::schema::Found {
            applied,
            has_tables: tables(conn, "").await? > 0,
        })
    }

    /// One page of entries as one JSON array built by PostgreSQL (`Store::entries_page`).
    async fn entries_page_json(&self, after: &str, limit: u32) -> Result<String> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(json_agg(json_build_object('id', id, 'spiffe_id', spiffe_id,
                     'selectors', selectors::json, 'ttl', ttl, 'created_at', created_at)
                     ORDER BY id)::text, '[]')
             FROM (SELECT * FROM entries WHERE id > $1 ORDER BY id LIMIT $2) AS page",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?)
    }
}

// Row locks are taken as rows are returned, so in `id` order; the lock mode is the one the
// single-record `UPDATE nodes SET hostname = hostname` takes.
crate::sql::store_impl!(
    PgStore,
    sqlx::PgConnection,
    sqlx::Postgres,
    (
        "SELECT id FROM nodes WHERE id IN (",
        ") ORDER BY id FOR NO KEY UPDATE"
    )
);
crate::audit::audit_impl!(PgStore);
crate::anomaly::anomaly_impl!(PgStore);
crate::history::history_impl!(PgStore);
crate::secrets::secrets_impl!(PgStore);
crate::issued::issued_impl!(PgStore);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[tokio::test]
    async fn one_batch_gives_each_record_its_own_answer() {
        let pg = vouch_testkit::Postgres::start();
        crate::batch_test::one_batch_mixed_answers!(
            super::PgStore,
            super::PgStore::connect(&pg.fresh_database()).await.unwrap()
        );
    }
}

//! The X.509-SVIDs the verifier issued (issue 15 part 7, migration 0015): `POST /v1/timestamp`
//! countersigns a signature only for an SVID recorded here for the workload whose result is
//! presented. The SQL is the same on both backends, like [`crate::secrets`].

use async_trait::async_trait;

use crate::Result;

/// Rows one INSERT statement carries (7 parameters each: under SQLite's and PostgreSQL's
/// parameter limits). A larger batch is several statements in one transaction.
pub const ISSUED_SVIDS_PER_STATEMENT: usize = 500;

/// One issued X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSvidRecord {
    /// Lower-case hex SHA-256 of the certificate's DER (the key).
    pub sha256: String,
    /// Its serial number as a revocation target (lower-case hex, no leading zeros).
    pub serial: String,
    /// The node whose agent asked for it.
    pub node_id: String,
    /// The workload it was issued to (`<node>/<name>`).
    pub workload: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its notAfter, Unix seconds.
    pub not_after: u64,
    /// When it was issued, Unix seconds.
    pub created_at: u64,
}

/// The issued X.509-SVIDs table.
#[async_trait]
pub trait IssuedSvids: Send + Sync {
    /// Record a batch of issued SVIDs: one INSERT for up to [`ISSUED_SVIDS_PER_STATEMENT`]
    /// (more: one transaction). A certificate already recorded is left as it is.
    async fn record_issued_svids(&self, svids: &[IssuedSvidRecord]) -> Result<()>;

    /// [`IssuedSvids::record_issued_svids`] and the audit entry `event` in one transaction
    /// (one commit, one `fsync`: what `POST /v1/svid` writes). Returns the entry.
    async fn record_issued_svids_audited(
        &self,
        svids: &[IssuedSvidRecord],
        event: &crate::AuditEvent,
    ) -> Result<crate::AuditRecord>;

    /// The SVID whose DER has SHA-256 `sha256` (lower-case hex), when recorded.
    async fn issued_svid(&self, sha256: &str) -> Result<Option<IssuedSvidRecord>>;

    /// Delete at most `limit` SVIDs whose notAfter is before `before`; how many went.
    async fn prune_issued_svids(&self, before: u64, limit: u32) -> Result<u64>;
}

pub(crate) fn issued_row<R>(r: &R) -> Result<IssuedSvidRecord>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(IssuedSvidRecord {
        sha256: r.try_get("sha256")?,
        serial: r.try_get("serial")?,
        node_id: r.try_get("node_id")?,
        workload: r.try_get("workload")?,
        spiffe_id: r.try_get("spiffe_id")?,
        not_after: n(r.try_get("not_after")?),
        created_at: n(r.try_get("created_at")?),
    })
}

/// `INSERT … VALUES ($1, …, $7), ($8, …)` for `rows` rows.
pub(crate) fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO issued_svids \
         (sha256, serial, node_id, workload, spiffe_id, not_after, created_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        let b = i * 7;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    sql.push_str(" ON CONFLICT (sha256) DO NOTHING");
    sql
}

/// [`insert_sql`] for `rows`, or `None` when there are none.
pub(crate) fn insert_sql_for(rows: &[IssuedSvidRecord]) -> Option<String> {
    (!rows.is_empty()).then(|| insert_sql(rows.len()))
}

/// Bind the seven columns of each record of `$rows` to the query `$q`, in [`insert_sql`]'s
/// order.
macro_rules! bind_rows {
    ($q:expr, $rows:expr) => {{
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut q = $q;
        for s in $rows {
            q = q
                .bind(&s.sha256)
                .bind(&s.serial)
                .bind(&s.node_id)
                .bind(&s.workload)
                .bind(&s.spiffe_id)
                .bind(i(s.not_after))
                .bind(i(s.created_at));
        }
        q
    }};
}
pub(crate) use bind_rows;

/// Implement [`IssuedSvids`] for a store with a `pool` field (invoked next to `store_impl!`).
macro_rules! issued_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::issued::IssuedSvids for $store {
            async fn record_issued_svids(
                &self,
                svids: &[crate::IssuedSvidRecord],
            ) -> crate::Result<()> {
                if svids.len() <= crate::issued::ISSUED_SVIDS_PER_STATEMENT {
                    if let Some(sql) = crate::issued::insert_sql_for(svids) {
                        crate::issued::bind_rows!(sqlx::query(&sql), svids)
                            .execute(&self.pool)
                            .await?;
                    }
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for chunk in svids.chunks(crate::issued::ISSUED_SVIDS_PER_STATEMENT) {
                    let sql = crate::issued::insert_sql(chunk.len());
                    crate::issued::bind_rows!(sqlx::query(&sql), chunk)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn record_issued_svids_audited(
                &self,
                svids: &[crate::IssuedSvidRecord],
                event: &crate::AuditEvent,
            ) -> crate::Result<crate::AuditRecord> {
                let mut tx = self.pool.begin().await?;
                for chunk in svids.chunks(crate::issued::ISSUED_SVIDS_PER_STATEMENT) {
                    let sql = crate::issued::insert_sql(chunk.len());
                    crate::issued::bind_rows!(sqlx::query(&sql), chunk)
                        .execute(&mut *tx)
                        .await?;
                }
                let rec = crate::audit::append_in!(&mut *tx, event);
                tx.commit().await?;
                Ok(rec)
            }

            async fn issued_svid(
                &self,
                sha256: &str,
            ) -> crate::Result<Option<crate::IssuedSvidRecord>> {
                let row = sqlx::query("SELECT * FROM issued_svids WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(crate::issued::issued_row).transpose()
            }

            async fn prune_issued_svids(&self, before: u64, limit: u32) -> crate::Result<u64> {
                let n = sqlx::query(
                    "DELETE FROM issued_svids WHERE sha256 IN \
                     (SELECT sha256 FROM issued_svids WHERE not_after < $1 LIMIT $2)",
                )
                .bind(i64::try_from(before).unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n)
            }
        }
    };
}
pub(crate) use issued_impl;

//! Read-only views for the dashboard (issue 16 item 6): the fleet by status, a page of
//! workloads, nodes with the worst status of their workloads, attestation counts over time, a
//! workload's history and a policy's versions. Every read is bounded (a page of at most
//! [`HISTORY_PAGE_MAX`] rows, a time window for the counts); the SQL is the same on both
//! backends, like [`crate::audit`].
//!
//! The counts over time read `attestations` by `created_at`, which has no index of its own (the
//! existing one leads with `workload_id`): a scan of the window's rows' table, which the
//! dashboard keeps to one day.

use async_trait::async_trait;

use crate::{Result, WorkloadRecord};

/// Most rows one page of these views returns.
pub const HISTORY_PAGE_MAX: u32 = 500;

/// A node and the worst current status of its workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: String,
    /// Hostname it enrolled with.
    pub hostname: String,
    /// How many workloads it has.
    pub workloads: u64,
    /// The worst status among them (`contraindicated` > `warning` > `affirming` > `none`);
    /// `none` when it has none.
    pub status: String,
}

/// How many attestations ended with `status` in the bucket starting at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusBucket {
    /// Bucket start, Unix seconds (a multiple of the bucket width).
    pub start: u64,
    /// Result status.
    pub status: String,
    /// Attestations.
    pub count: u64,
}

/// One attestation of a workload's history, without its claims and signed result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationSummary {
    /// Attestation id.
    pub id: String,
    /// Evidence kind.
    pub evidence_kind: String,
    /// Result status.
    pub status: String,
    /// The findings that decided.
    pub reasons: Vec<String>,
    /// Policy that decided, and its version.
    pub policy_id: String,
    /// Its version.
    pub policy_version: u32,
    /// When, Unix seconds.
    pub created_at: u64,
}

/// One stored version of a policy, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// Version number.
    pub version: u32,
    /// SHA-256 of the Rego text.
    pub sha256: String,
    /// When it was added, Unix seconds.
    pub created_at: u64,
}

/// The dashboard's reads; every [`crate::Store`] has them.
#[async_trait]
pub trait History: Send + Sync {
    /// Workloads, worst status first then by id, `status` only when given; rows
    /// `offset..offset+limit` (limit at most [`HISTORY_PAGE_MAX`]).
    async fn workloads_page(
        &self,
        status: Option<&str>,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<WorkloadRecord>>;

    /// Nodes with the worst status of their workloads, worst first then by id; one page.
    async fn node_statuses(&self, offset: u64, limit: u32) -> Result<Vec<NodeStatus>>;

    /// How many nodes have each worst status.
    async fn node_status_counts(&self) -> Result<Vec<(String, u64)>>;

    /// Attestations since `since` counted by status in buckets of `bucket` seconds.
    async fn attestation_counts(&self, since: u64, bucket: u64) -> Result<Vec<StatusBucket>>;

    /// The latest attestations of `workload_id` made before `before` (Unix seconds,
    /// exclusive), newest first; one page.
    async fn workload_history(
        &self,
        workload_id: &str,
        before: u64,
        limit: u32,
    ) -> Result<Vec<AttestationSummary>>;

    /// Every stored version of policy `id`, newest first.
    async fn policy_versions(&self, id: &str) -> Result<Vec<PolicyVersion>>;
}

/// The rank of a status in SQL, worst highest (the column is `$col`).
macro_rules! severity {
    ($col:literal) => {
        concat!(
            "CASE ",
            $col,
            " WHEN 'contraindicated' THEN 3 WHEN 'warning' THEN 2 WHEN 'affirming' THEN 1 ELSE 0 END"
        )
    };
}
pub(crate) use severity;

/// The status of a severity rank.
pub(crate) fn status_of(rank: i64) -> &'static str {
    match rank {
        3 => "contraindicated",
        2 => "warning",
        1 => "affirming",
        _ => "none",
    }
}

/// Implement [`History`] for a store with a `pool` field (invoked next to `store_impl!`, where
/// the row mappers are in scope).
macro_rules! history_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::history::History for $store {
            async fn workloads_page(
                &self,
                status: Option<&str>,
                offset: u64,
                limit: u32,
            ) -> crate::Result<Vec<crate::WorkloadRecord>> {
                let limit = limit.min(crate::history::HISTORY_PAGE_MAX);
                let rows = sqlx::query(concat!(
                    "SELECT * FROM workloads WHERE ($1 = '' OR status = $1) ORDER BY ",
                    crate::history::severity!("status"),
                    " DESC, id LIMIT $2 OFFSET $3"
                ))
                .bind(status.unwrap_or(""))
                .bind(i64::from(limit))
                .bind(i(offset))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(workload_row).collect())
            }

            async fn node_statuses(
                &self,
                offset: u64,
                limit: u32,
            ) -> crate::Result<Vec<crate::history::NodeStatus>> {
                let limit = limit.min(crate::history::HISTORY_PAGE_MAX);
                let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(concat!(
                    "SELECT n.id, n.hostname, COUNT(w.id), CAST(COALESCE(MAX(",
                    crate::history::severity!("w.status"),
                    "), 0) AS BIGINT) AS rank FROM nodes n LEFT JOIN workloads w ON w.node_id = n.id
                     GROUP BY n.id, n.hostname ORDER BY rank DESC, n.id LIMIT $1 OFFSET $2"
                ))
                .bind(i64::from(limit))
                .bind(i(offset))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, hostname, n, rank)| crate::history::NodeStatus {
                        id,
                        hostname,
                        workloads: u(n),
                        status: crate::history::status_of(rank).into(),
                    })
                    .collect())
            }

            async fn node_status_counts(&self) -> crate::Result<Vec<(String, u64)>> {
                let rows: Vec<(i64, i64)> = sqlx::query_as(concat!(
                    "SELECT rank, COUNT(*) FROM (SELECT CAST(COALESCE(MAX(",
                    crate::history::severity!("w.status"),
                    "), 0) AS BIGINT) AS rank FROM nodes n LEFT JOIN workloads w ON w.node_id = n.id
                     GROUP BY n.id) AS per_node GROUP BY rank"
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(rank, n)| (crate::history::status_of(rank).to_string(), u(n)))
                    .collect())
            }

            async fn attestation_counts(
                &self,
                since: u64,
                bucket: u64,
            ) -> crate::Result<Vec<crate::history::StatusBucket>> {
                let bucket = bucket.max(1);
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                    "SELECT (created_at / $1) * $1 AS b, status, COUNT(*) FROM attestations
                     WHERE created_at >= $2 GROUP BY b, status ORDER BY b, status",
                )
                .bind(i(bucket))
                .bind(i(since))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(b, status, n)| crate::history::StatusBucket {
                        start: u(b),
                        status,
                        count: u(n),
                    })
                    .collect())
            }

            async fn workload_history(
                &self,
                workload_id: &str,
                before: u64,
                limit: u32,
            ) -> crate::Result<Vec<crate::history::AttestationSummary>> {
                let limit = limit.min(crate::history::HISTORY_PAGE_MAX);
                let rows: Vec<(String, String, String, String, String, i64, i64)> =
                    sqlx::query_as(
                        "SELECT id, evidence_kind, status, reasons, policy_id, policy_version,
                                created_at
                         FROM attestations WHERE workload_id = $1 AND created_at < $2
                         ORDER BY created_at DESC, id DESC LIMIT $3",
                    )
                    .bind(workload_id)
                    .bind(i(before))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(id, evidence_kind, status, reasons, policy_id, v, at)| {
                        let reasons: Vec<String> = serde_json::from_str(&reasons).map_err(|e| {
                            crate::StoreError::Corrupt(format!("attestation {id} reasons: {e}"))
                        })?;
                        Ok(crate::history::AttestationSummary {
                            id,
                            evidence_kind,
                            status,
                            reasons,
                            policy_id,
                            policy_version: u32::try_from(v).unwrap_or(0),
                            created_at: u(at),
                        })
                    })
                    .collect()
            }

            async fn policy_versions(
                &self,
                id: &str,
            ) -> crate::Result<Vec<crate::history::PolicyVersion>> {
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                    "SELECT version, sha256, created_at FROM policies WHERE id = $1
                     ORDER BY version DESC",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(v, sha256, at)| crate::history::PolicyVersion {
                        version: u32::try_from(v).unwrap_or(0),
                        sha256,
                        created_at: u(at),
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use history_impl;

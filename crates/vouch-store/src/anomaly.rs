//! Fleet anomaly flags (issue 16 item 5): the flags the verifier's detector raised and each
//! workload group's baseline of measurement keys. The SQL is the same on both backends, like
//! [`crate::audit`]. A flag stored for the first time is appended to the audit log in the same
//! transaction (`anomaly.flag`); raised again, only its `last_seen` and `count` move.

use async_trait::async_trait;

use crate::Result;

/// Most flags one read returns.
pub const ANOMALY_PAGE_MAX: u32 = 1_000;

/// One stored anomaly flag.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AnomalyRecord {
    /// SHA-256 (hex) of kind, group, node and subject.
    pub id: String,
    /// `new_measurement`, `fleet_change`, `tpm_counter`, `rate_outlier`, `latency_outlier`,
    /// `cloned_measurements`.
    pub kind: String,
    /// The workload group.
    pub group: String,
    /// The node (empty for a group flag).
    pub node_id: String,
    /// The workload it was raised on (empty for a group flag).
    pub workload_id: String,
    /// Why, in words.
    pub reason: String,
    /// The values behind the reason.
    pub detail: serde_json::Value,
    /// First raised, Unix seconds.
    pub first_seen: u64,
    /// Last raised, Unix seconds.
    pub last_seen: u64,
    /// How many times raised.
    pub count: u64,
}

/// A measurement key a group has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRecord {
    /// The workload group.
    pub group: String,
    /// The key (hex of 16 bytes).
    pub key: String,
    /// When the group first saw it.
    pub first_seen: u64,
}

/// Which flags to read.
#[derive(Debug, Clone, Default)]
pub struct AnomalyQuery {
    /// Only this group.
    pub group: Option<String>,
    /// Only this node.
    pub node_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only flags last raised at or after this time.
    pub since: u64,
    /// At most this many (capped at [`ANOMALY_PAGE_MAX`]), newest `last_seen` first.
    pub limit: u32,
}

/// Where anomaly flags are kept; every [`crate::Store`] has it.
#[async_trait]
pub trait AnomalyLog: Send + Sync {
    /// Store `flags` (new ones inserted and appended to the audit log, known ones updated to
    /// the later `last_seen` and the higher `count`) and the group keys `seen`, in one
    /// transaction; returns how many flags were new.
    async fn record_anomalies(&self, flags: &[AnomalyRecord], seen: &[SeenRecord]) -> Result<u64>;

    /// Flags matching `q`, newest `last_seen` first.
    async fn anomalies(&self, q: &AnomalyQuery) -> Result<Vec<AnomalyRecord>>;

    /// Group keys after `(group, key)` in that order, at most `limit` (pages, for a replica
    /// rebuilding its detector).
    async fn anomaly_seen(&self, after: (&str, &str), limit: u32) -> Result<Vec<SeenRecord>>;
}

/// The audit entry of a new flag.
pub(crate) fn flag_event(f: &AnomalyRecord) -> crate::AuditEvent {
    crate::AuditEvent {
        time: f.first_seen,
        kind: "anomaly.flag".into(),
        actor: "verifier".into(),
        subject: if f.workload_id.is_empty() {
            format!("group:{}", f.group)
        } else {
            f.workload_id.clone()
        },
        body: serde_json::json!({
            "id": f.id, "kind": f.kind, "group": f.group, "node_id": f.node_id,
            "reason": f.reason, "detail": f.detail,
        }),
    }
}

pub(crate) type FlagRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

pub(crate) fn flag_of(r: FlagRow) -> AnomalyRecord {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    AnomalyRecord {
        id: r.0,
        kind: r.1,
        group: r.2,
        node_id: r.3,
        workload_id: r.4,
        reason: r.5,
        detail: serde_json::from_str(&r.6).unwrap_or(serde_json::Value::Null),
        first_seen: u(r.7),
        last_seen: u(r.8),
        count: u(r.9),
    }
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Implement [`AnomalyLog`] for a store with a `pool` field.
macro_rules! anomaly_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::anomaly::AnomalyLog for $store {
            async fn record_anomalies(
                &self,
                flags: &[crate::anomaly::AnomalyRecord],
                seen: &[crate::anomaly::SeenRecord],
            ) -> crate::Result<u64> {
                use crate::anomaly::i;
                let mut tx = self.pool.begin().await?;
                let mut new = 0;
                for f in flags {
                    let inserted = sqlx::query(
                        "INSERT INTO anomalies (id, kind, grp, node_id, workload_id, reason,
                             detail, first_seen, last_seen, count)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(&f.id)
                    .bind(&f.kind)
                    .bind(&f.group)
                    .bind(&f.node_id)
                    .bind(&f.workload_id)
                    .bind(&f.reason)
                    .bind(f.detail.to_string())
                    .bind(i(f.first_seen))
                    .bind(i(f.last_seen))
                    .bind(i(f.count))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 1 {
                        new += 1;
                        let event = crate::anomaly::flag_event(f);
                        crate::audit::append_in!(&mut *tx, &event);
                    } else {
                        sqlx::query(
                            "UPDATE anomalies SET
                                 last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END,
                                 count = CASE WHEN count < $3 THEN $3 ELSE count END
                             WHERE id = $1",
                        )
                        .bind(&f.id)
                        .bind(i(f.last_seen))
                        .bind(i(f.count))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                for s in seen {
                    sqlx::query(
                        "INSERT INTO anomaly_seen (grp, mkey, first_seen) VALUES ($1, $2, $3)
                         ON CONFLICT (grp, mkey) DO NOTHING",
                    )
                    .bind(&s.group)
                    .bind(&s.key)
                    .bind(i(s.first_seen))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(new)
            }

            async fn anomalies(
                &self,
                q: &crate::anomaly::AnomalyQuery,
            ) -> crate::Result<Vec<crate::anomaly::AnomalyRecord>> {
                let limit = q.limit.clamp(1, crate::anomaly::ANOMALY_PAGE_MAX);
                let rows: Vec<crate::anomaly::FlagRow> = sqlx::query_as(
                    "SELECT id, kind, grp, node_id, workload_id, reason, detail, first_seen,
                            last_seen, count
                     FROM anomalies
                     WHERE last_seen >= $1
                       AND ($2 IS NULL OR grp = $2)
                       AND ($3 IS NULL OR node_id = $3)
                       AND ($4 IS NULL OR kind = $4)
                     ORDER BY last_seen DESC, id
                     LIMIT $5",
                )
                .bind(crate::anomaly::i(q.since))
                .bind(q.group.as_deref())
                .bind(q.node_id.as_deref())
                .bind(q.kind.as_deref())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(crate::anomaly::flag_of).collect())
            }

            async fn anomaly_seen(
                &self,
                after: (&str, &str),
                limit: u32,
            ) -> crate::Result<Vec<crate::anomaly::SeenRecord>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT grp, mkey, first_seen FROM anomaly_seen
                     WHERE grp > $1 OR (grp = $1 AND mkey > $2)
                     ORDER BY grp, mkey LIMIT $3",
                )
                .bind(after.0)
                .bind(after.1)
                .bind(i64::from(limit.max(1)))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(group, key, t)| crate::anomaly::SeenRecord {
                        group,
                        key,
                        first_seen: u64::try_from(t).unwrap_or(0),
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use anomaly_impl;

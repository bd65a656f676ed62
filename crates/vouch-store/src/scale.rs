//! Bulk fill for measurements at scale (`vouch bench scale`, issue 13 item 5): many nodes and
//! workloads written in one transaction with multi-row statements, as a fleet that has been
//! attesting would have left them, without attesting a million times first.

use crate::{Result, SqliteStore};

/// Rows per multi-row statement (four parameters each, well under SQLite's limit).
const CHUNK: usize = 1000;

impl SqliteStore {
    /// Add `nodes` nodes (`scale-n<i>`) and `workloads` workloads spread over them
    /// (`scale-n<i>/w<j>`, affirming, due at `deadline`), in one transaction. For benchmarks:
    /// the workloads carry no attestation.
    pub async fn fill_for_scale(
        &self,
        nodes: usize,
        workloads: usize,
        now: u64,
        deadline: u64,
    ) -> Result<()> {
        let nodes = nodes.max(1);
        let (now, deadline) = (
            i64::try_from(now).unwrap_or(i64::MAX),
            i64::try_from(deadline).unwrap_or(i64::MAX),
        );
        let mut tx = self.pool.begin().await?;
        for start in (0..nodes).step_by(CHUNK) {
            let end = (start + CHUNK).min(nodes);
            let mut q = sqlx::QueryBuilder::new("INSERT INTO nodes (id, hostname, created_at) ");
            q.push_values(start..end, |mut b, i| {
                b.push_bind(format!("scale-n{i}"))
                    .push_bind(format!("host-{i}"))
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
        }
        for start in (0..workloads).step_by(CHUNK) {
            let end = (start + CHUNK).min(workloads);
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO workloads (id, node_id, name, status, reason, deadline, updated_at) ",
            );
            q.push_values(start..end, |mut b, w| {
                let node = format!("scale-n{}", w % nodes);
                let name = format!("w{}", w / nodes);
                b.push_bind(format!("{node}/{name}"))
                    .push_bind(node)
                    .push_bind(name)
                    .push("'affirming'")
                    .push("''")
                    .push_bind(deadline)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

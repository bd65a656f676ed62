//! The audit log (issue 16 item 3): an append-only table of entries, each the exact JSON bytes
//! of a [`vouch_core::audit::AuditEntry`] and its RFC 9162 leaf hash. The Merkle tree over the
//! leaf hashes, its signed heads and proofs are the verifier's (`vouch_core::audit` does the
//! maths); the store only appends in order and reads back.
//!
//! Order: an append first bumps the one-row counter `audit_size` (`UPDATE … RETURNING`), which
//! takes that row's lock on PostgreSQL (the database's write lock on SQLite) until the
//! transaction ends, then inserts the entry at the position it got. Concurrent appends on any
//! number of replicas therefore get distinct, gap-free positions in commit order, and a failed
//! append gives its position back with its rollback. Triggers refuse UPDATE and DELETE of
//! `audit_log`.

use async_trait::async_trait;
use vouch_core::audit::{AuditEntry, Hash, leaf_hash};

use crate::{Result, StoreError};

/// Most entries one read returns.
pub const AUDIT_PAGE_MAX: u64 = 10_000;

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The entry's JSON, exactly the bytes hashed.
    pub entry: String,
    /// `SHA-256(0x00 || entry)`.
    pub leaf_hash: Hash,
}

/// What an append records (the store adds the position).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When, Unix seconds.
    pub time: u64,
    /// What happened (`attestation`, `enroll`, `policy.add` …).
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// What it was done to.
    pub subject: String,
    /// The details.
    pub body: serde_json::Value,
}

/// The audit log's storage; every [`crate::Store`] has it.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Append `event` at the next position, atomically; returns what was stored.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord>;

    /// How many entries the log has.
    async fn audit_size(&self) -> Result<u64>;

    /// Entries `start..end` (end exclusive, at most [`AUDIT_PAGE_MAX`] of them), in order.
    async fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditRecord>>;

    /// The leaf hashes of entries `0..end`, in order (32 bytes each: what the tree is built of).
    async fn audit_leaf_hashes(&self, end: u64) -> Result<Vec<Hash>>;
}

/// The entry bytes and leaf hash of `event` at position `seq`.
pub(crate) fn encode(seq: u64, event: &AuditEvent) -> (String, Hash) {
    let entry = AuditEntry {
        seq,
        time: event.time,
        kind: event.kind.clone(),
        actor: event.actor.clone(),
        subject: event.subject.clone(),
        body: event.body.clone(),
    }
    .to_bytes();
    let hash = leaf_hash(&entry);
    (String::from_utf8_lossy(&entry).into_owned(), hash)
}

/// The audit entry of an attestation result: the decision and what it was made on (the
/// evidence's and the signed result's digests, not their bytes).
pub(crate) fn attestation_event(rec: &crate::AttestationRecord) -> AuditEvent {
    use sha2::Digest as _;
    AuditEvent {
        time: rec.created_at,
        kind: "attestation".into(),
        actor: rec.node_id.clone(),
        subject: rec.workload_id.clone(),
        body: serde_json::json!({
            "attestation": rec.id,
            "key_id": rec.key_id,
            "evidence_kind": rec.evidence_kind,
            "evidence_sha256": rec.evidence_sha256,
            "status": rec.status,
            "policy": format!("{}/v{}", rec.policy_id, rec.policy_version),
            "reasons": rec.reasons,
            "result_sha256": hex::encode(sha2::Sha256::digest(rec.result.as_bytes())),
        }),
    }
}

/// The audit entry of an enrollment: the node enrolled itself (actor and subject are the node).
pub(crate) fn enrollment_event(
    kind: &str,
    node_id: &str,
    body: serde_json::Value,
    now: u64,
) -> AuditEvent {
    AuditEvent {
        time: now,
        kind: kind.into(),
        actor: node_id.into(),
        subject: node_id.into(),
        body,
    }
}

/// Append `$event` on connection `$conn` inside the caller's transaction (SQL shared by both
/// backends): bump the counter, insert the entry at the position it gave.
macro_rules! append_in {
    ($conn:expr, $event:expr) => {{
        let event: &crate::audit::AuditEvent = $event;
        let size: i64 =
            sqlx::query_scalar("UPDATE audit_size SET size = size + 1 WHERE id = 0 RETURNING size")
                .fetch_one($conn)
                .await?;
        let seq = u64::try_from(size - 1).unwrap_or(0);
        let (entry, hash) = crate::audit::encode(seq, event);
        sqlx::query(
            "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry, leaf_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(size - 1)
        .bind(i64::try_from(event.time).unwrap_or(i64::MAX))
        .bind(&event.kind)
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(&entry)
        .bind(hash.to_vec())
        .execute($conn)
        .await?;
        crate::audit::AuditRecord {
            seq,
            entry,
            leaf_hash: hash,
        }
    }};
}
pub(crate) use append_in;

/// A stored leaf hash of the wrong length is corruption, not a panic.
pub(crate) fn hash_of(bytes: &[u8], seq: i64) -> Result<Hash> {
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Database(sqlx::Error::Decode(
            format!("audit_log row {seq}: leaf hash of {} bytes", bytes.len()).into(),
        ))
    })
}

/// Implement [`AuditLog`] for a store with a `pool` field (invoked next to `store_impl!`, where
/// the field is visible). The SQL is the same on both backends.
macro_rules! audit_impl {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::audit::AuditLog for $store {
            async fn append_audit(
                &self,
                event: &crate::audit::AuditEvent,
            ) -> crate::Result<crate::audit::AuditRecord> {
                let mut tx = self.pool.begin().await?;
                let rec = crate::audit::append_in!(&mut *tx, event);
                tx.commit().await?;
                Ok(rec)
            }

            async fn audit_size(&self) -> crate::Result<u64> {
                let size: i64 = sqlx::query_scalar("SELECT size FROM audit_size WHERE id = 0")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u64::try_from(size).unwrap_or(0))
            }

            async fn audit_entries(
                &self,
                start: u64,
                end: u64,
            ) -> crate::Result<Vec<crate::audit::AuditRecord>> {
                let end = end.min(start.saturating_add(crate::audit::AUDIT_PAGE_MAX));
                let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, entry, leaf_hash FROM audit_log
                     WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                )
                .bind(i64::try_from(start).unwrap_or(i64::MAX))
                .bind(i64::try_from(end).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(seq, entry, h)| {
                        Ok(crate::audit::AuditRecord {
                            seq: u64::try_from(seq).unwrap_or(0),
                            leaf_hash: crate::audit::hash_of(&h, seq)?,
                            entry,
                        })
                    })
                    .collect()
            }

            async fn audit_leaf_hashes(
                &self,
                end: u64,
            ) -> crate::Result<Vec<vouch_core::audit::Hash>> {
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, leaf_hash FROM audit_log WHERE seq < $1 ORDER BY seq",
                )
                .bind(i64::try_from(end).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for (at, (seq, h)) in rows.into_iter().enumerate() {
                    if u64::try_from(seq).ok() != Some(at as u64) {
                        return Err(crate::StoreError::Database(sqlx::Error::Decode(
                            format!("audit_log has a gap at {at}").into(),
                        )));
                    }
                    out.push(crate::audit::hash_of(&h, seq)?);
                }
                Ok(out)
            }
        }
    };
}
pub(crate) use audit_impl;

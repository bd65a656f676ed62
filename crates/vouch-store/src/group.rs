//! Group commit of attestation records: many [`Store::record_attestation`](crate::Store)
//! calls share one transaction and one `fsync`, and each is answered only after that
//! transaction committed.
//!
//! Each store that writes this way owns one committer task, fed by a bounded channel of
//! [`Job`]s. The task takes whatever is queued (at most [`WriteOptions::max_batch`]) without
//! waiting for more, so an attestation that arrives alone is written at once, exactly as
//! before; under load the records that queued while the previous transaction was being made
//! durable go together in the next one. Inside the transaction each record is wrapped in a
//! savepoint: a record that is refused (nonce reused, revoked, a constraint) rolls back to its
//! savepoint alone, and its caller gets its own error while the others commit. A failed
//! `COMMIT` fails every record of the batch. The task ends when the store (every clone of it)
//! is dropped: its channel closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

use crate::{AttestationRecord, Result, StoreError};

/// How a store writes attestation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Group commit: concurrent [`Store::record_attestation`](crate::Store) calls share one
    /// transaction (one `fsync`). When `false`, every call is its own transaction.
    pub group_commit: bool,
    /// The most records one group-commit transaction holds (at least 1).
    pub max_batch: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            group_commit: true,
            max_batch: 256,
        }
    }
}

/// What a store's attestation writes have cost so far: the figure that shows group commit at
/// work (fewer transactions than records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions that committed attestation records.
    pub transactions: u64,
    /// Attestation records those transactions committed.
    pub records: u64,
    /// The most records one transaction committed.
    pub largest_batch: u64,
    /// Batches written record by record, a savepoint each, because some record in them could
    /// be refused (a used nonce, a revocation, a constraint); the others went in one
    /// statement per table.
    pub record_by_record: u64,
    /// Claim parts sent to `claim_parts` (not yet known to be there; each stored once).
    pub parts_sent: u64,
    /// Claim parts of records not sent because they were known to be stored.
    pub parts_known: u64,
}

/// The counters behind [`CommitStats`], and the claim parts known to be stored, shared by a
/// store's clones and its committer.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Claim parts a committed transaction of this store wrote or found ([`crate::parts`]).
    pub(crate) known: crate::parts::KnownParts,
    transactions: AtomicU64,
    records: AtomicU64,
    largest_batch: AtomicU64,
    record_by_record: AtomicU64,
    parts_sent: AtomicU64,
    parts_known: AtomicU64,
}

impl Stats {
    /// One transaction committed `records` attestation records.
    pub(crate) fn committed(&self, records: usize) {
        if records == 0 {
            return;
        }
        let n = u64::try_from(records).unwrap_or(u64::MAX);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(n, Ordering::Relaxed);
        self.largest_batch.fetch_max(n, Ordering::Relaxed);
    }

    /// A batch went record by record.
    pub(crate) fn record_by_record(&self) {
        self.record_by_record.fetch_add(1, Ordering::Relaxed);
    }

    /// `sent` claim parts went to the table, `known` were left out as stored already.
    pub(crate) fn parts(&self, sent: usize, known: usize) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.parts_sent.fetch_add(n(sent), Ordering::Relaxed);
        self.parts_known.fetch_add(n(known), Ordering::Relaxed);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            record_by_record: self.record_by_record.load(Ordering::Relaxed),
            parts_sent: self.parts_sent.load(Ordering::Relaxed),
            parts_known: self.parts_known.load(Ordering::Relaxed),
        }
    }
}

/// One attestation record with everything it binds already encoded: the JSON is serialised
/// by the caller's task, in parallel, not by the committer that every record waits for.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) id: String,
    pub(crate) workload_id: String,
    pub(crate) node_id: String,
    pub(crate) key_id: String,
    pub(crate) evidence_kind: String,
    pub(crate) evidence_sha256: String,
    /// The claims as stored: the rest, the references and the parts taken out
    /// ([`crate::parts`]).
    pub(crate) claims: crate::parts::Split,
    pub(crate) status: String,
    pub(crate) trust_vector: String,
    pub(crate) reasons: String,
    pub(crate) policy_id: String,
    pub(crate) policy_version: u32,
    pub(crate) result: String,
    pub(crate) created_at: u64,
    pub(crate) expires_at: u64,
    /// The workload's name and status reason.
    pub(crate) name: String,
    pub(crate) reason: String,
    /// The workload's next deadline.
    pub(crate) deadline: u64,
    /// The nonce to use up (id, expiry).
    pub(crate) nonce: Option<(String, u64)>,
    /// Its audit log entry (appended in the same transaction).
    pub(crate) audit: crate::audit::AuditEvent,
}

impl Prepared {
    /// Encode `rec` for [`Store::record_attestation`](crate::Store).
    pub(crate) fn new(rec: &AttestationRecord, deadline: u64, nonce: Option<(&str, u64)>) -> Self {
        Self {
            id: rec.id.clone(),
            workload_id: rec.workload_id.clone(),
            node_id: rec.node_id.clone(),
            key_id: rec.key_id.clone(),
            evidence_kind: rec.evidence_kind.clone(),
            evidence_sha256: rec.evidence_sha256.clone(),
            claims: crate::parts::split(&rec.claims),
            status: rec.status.clone(),
            trust_vector: rec.trust_vector.to_string(),
            reasons: serde_json::to_string(&rec.reasons).unwrap_or_else(|_| "[]".into()),
            policy_id: rec.policy_id.clone(),
            policy_version: rec.policy_version,
            result: rec.result.clone(),
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            name: crate::rows::workload_name(&rec.workload_id).to_string(),
            reason: crate::rows::workload_reason(rec),
            deadline,
            nonce: nonce.map(|(id, exp)| (id.to_string(), exp)),
            audit: crate::audit::attestation_event(rec),
        }
    }
}

/// One queued [`Store::record_attestation`](crate::Store) call and where its answer goes.
#[derive(Debug)]
pub(crate) struct Job {
    /// The record.
    pub(crate) rec: Prepared,
    /// The caller, waiting for the commit.
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

impl Job {
    /// Answer the caller (who may have stopped waiting: then nobody hears it).
    pub(crate) fn answer(self, r: Result<()>) {
        let _ = self.reply.send(r);
    }
}

/// Answer every job of a batch whose transaction failed with the same failure.
pub(crate) fn fail_all(jobs: Vec<Job>, e: sqlx::Error) {
    let e = Arc::new(e);
    for job in jobs {
        job.answer(Err(StoreError::CommitFailed(Some(e.clone()))));
    }
}

/// Whether a record that failed inside a batch should be tried again alone, after the batch
/// committed: a database error that is not about the record itself (a PostgreSQL deadlock or
/// serialization failure against another writer that a batch, holding several rows' locks,
/// can meet where a lone record cannot; a busy SQLite). Refusals (nonce reused, revoked) and
/// constraint violations are the record's own answer.
pub(crate) fn retry_alone(r: &Result<()>) -> bool {
    match r {
        Err(StoreError::Database(sqlx::Error::Database(d))) => !matches!(
            d.kind(),
            sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
        ),
        Err(StoreError::Database(_)) => true,
        _ => false,
    }
}

/// A store's handle on its committer task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// A channel for a committer taking at most `max_batch` records at a time; the receiver
    /// goes to the task.
    pub(crate) fn channel(max_batch: usize) -> (Self, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(max_batch.saturating_mul(4).max(16));
        (Self { tx }, rx)
    }

    /// Queue a record and wait for the commit of its batch. `Err(rec)` gives the record back
    /// when no committer runs any more (the runtime it was spawned on shut down): the caller
    /// writes it alone.
    pub(crate) async fn submit(&self, rec: Prepared) -> Result<Result<()>, Prepared> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.tx.send(Job { rec, reply }).await {
            return Err(job.rec);
        }
        Ok(match answer.await {
            Ok(r) => r,
            // The committer stopped with this record queued or in flight (its runtime shut
            // down): whether it committed is unknown, so it is not acknowledged.
            Err(_) => Err(StoreError::CommitFailed(None)),
        })
    }
}

/// Take the next batch: wait for one job, then whatever else is queued, up to `max` in all.
/// `None` when the channel closed and drained (the store was dropped).
pub(crate) async fn next_batch(rx: &mut mpsc::Receiver<Job>, max: usize) -> Option<Vec<Job>> {
    let first = rx.recv().await?;
    let mut jobs = Vec::with_capacity(max.clamp(1, 64));
    jobs.push(first);
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

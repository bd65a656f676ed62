//! Vouch store: one [`Store`] trait for everything the verifier must remember, with SQLite
//! (sqlx, WAL, `synchronous=FULL`) as the embedded default and PostgreSQL ([`PgStore`]) for
//! verifier clusters.
//!
//! Records: nodes, enrolled agent keys, one-time join tokens, workloads and their current
//! status, versioned policies (never overwritten), reference values, attestations (evidence
//! digest, claims, result, reasons; append-only) and the nonce replay cache. Every write that
//! the verifier acknowledges to an agent is committed before the acknowledgement.
//!
//! Attestation records are group-committed: concurrent [`Store::record_attestation`] calls
//! share one transaction and one `fsync`, each with its own savepoint, so each keeps its own
//! checks and its own answer, and none is answered before the commit ([`WriteOptions`],
//! [`SqliteStore::commit_stats`]).
#![deny(missing_docs)]

mod anomaly;
mod audit;
#[cfg(test)]
mod batch_test;
mod bench;
mod error;
mod group;
mod history;
mod issued;
mod parts;
mod pg_hosts;
mod postgres;
mod records;
mod rows;
mod scale;
mod schema;
mod secrets;
mod sql;
mod sqlite;

pub use anomaly::{ANOMALY_PAGE_MAX, AnomalyLog, AnomalyQuery, AnomalyRecord, SeenRecord};
pub use audit::{AUDIT_PAGE_MAX, AuditEvent, AuditLog, AuditRecord};
pub use bench::{RecordsBench, RecordsBenchConfig, bench_records};
pub use error::StoreError;
pub use group::{CommitStats, WriteOptions};
pub use history::{
    AttestationSummary, HISTORY_PAGE_MAX, History, NodeStatus, PolicyVersion, StatusBucket,
};
pub use issued::{ISSUED_SVIDS_PER_STATEMENT, IssuedSvidRecord, IssuedSvids};
pub use postgres::PgStore;
pub use records::{
    AgentKeyRecord, AppraisalContext, AttestationRecord, AttestedNode, Enrollment, EntriesSince,
    JoinTokenRecord, NodeAttestationRecord, NodeRecord, PolicyRecord, RevocationRecord,
    TpmJoinRecord, TpmKeyRecord, TpmReenrollment, WorkloadRecord,
};
pub use schema::Migrations;
pub use secrets::{SecretRecord, Secrets};
pub use sqlite::SqliteStore;

/// A store's connection pool at one moment ([`Store::pool_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, in use or idle.
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

use async_trait::async_trait;

/// The revision counter of reference values.
pub const REFVALUES_REVISION: &str = "refvalues_revision";
/// The revision counter of registration entries.
pub const ENTRIES_REVISION: &str = "entries_revision";
/// The highest entries revision whose change-log row may be pruned (setting).
pub const ENTRIES_LOG_FLOOR: &str = "entries_log_floor";
/// Revisions of registration-entry changes kept in the change log.
pub const ENTRIES_LOG_KEEP: u64 = 100_000;
use vouch_policy::{ReferenceValue, ReferenceValues};

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the verifier persists (and its audit log, [`AuditLog`]).
/// The dashboard's reads are [`History`].
#[async_trait]
pub trait Store:
    AuditLog + History + AnomalyLog + Secrets + IssuedSvids + Send + Sync + 'static
{
    /// Record a join token (only its SHA-256 is stored).
    async fn create_join_token(
        &self,
        token_hash: &str,
        node_name: Option<&str>,
        now: u64,
        expires_at: u64,
    ) -> Result<()>;

    /// The newest `limit` join tokens (used, unused and expired), newest first.
    async fn join_tokens(&self, limit: u32) -> Result<Vec<JoinTokenRecord>>;

    /// Consume a join token and enroll `public_key` as a new node's key, atomically.
    async fn enroll(
        &self,
        token_hash: &str,
        public_key: &[u8],
        hostname: &str,
        now: u64,
    ) -> Result<Enrollment>;

    /// Enroll `public_key` for a node a zero-touch node attestor vouched for, atomically:
    /// creates the node on its first attestation (recording method, key and selectors).
    /// Attested again: with the same key, the enrollment it has; with another key, when
    /// `node.reattestable`, the node's other keys are revoked and this one enrolled; when not,
    /// only under an open admin re-enrolment ([`Store::add_tpm_reenrollment`]), which it uses
    /// up, and otherwise [`StoreError::NodeAttested`].
    async fn enroll_attested(
        &self,
        node: &AttestedNode,
        public_key: &[u8],
        now: u64,
    ) -> Result<Enrollment>;

    /// [`Store::enroll_attested`] for a node whose TPM vouched for it, and its TPM binding
    /// `tpm` (EK, certificate, AK; the AK already proven by credential activation), recorded
    /// activated and bound, in one transaction: either the node, its key and its binding all
    /// exist afterwards or none of them changed. `tpm` must name `node.node_id` and carry its
    /// `ek_key`; an EK that another bound node holds is [`StoreError::EkEnrolled`]. The same EK
    /// again keeps its TPM's clock and IMA replay state.
    async fn enroll_attested_tpm(
        &self,
        node: &AttestedNode,
        public_key: &[u8],
        tpm: &TpmKeyRecord,
        now: u64,
    ) -> Result<Enrollment>;

    /// Hold a TPM join waiting for its credential activation, shared by every replica: first
    /// drops expired joins (`expires_at` before `now`) and an open join of the same EK (the
    /// newer replaces it); `false`, holding nothing, when `max_open` joins are still open.
    async fn open_tpm_join(&self, join: &TpmJoinRecord, max_open: u64, now: u64) -> Result<bool>;

    /// Take the open TPM join `id`: it is deleted, whatever its expiry, so exactly one
    /// activation attempt on any replica gets it.
    async fn take_tpm_join(&self, id: &str) -> Result<Option<TpmJoinRecord>>;

    /// How `node_id` was attested without a join token, if it was.
    async fn node_attestation(&self, node_id: &str) -> Result<Option<NodeAttestationRecord>>;

    /// The nodes attested by `method` whose latest document gave `selector` (such as
    /// `k8s_psat:agent_node_name:<name>`), most recently attested first, at most 64.
    async fn nodes_attested_with(
        &self,
        method: &str,
        selector: &str,
    ) -> Result<Vec<NodeAttestationRecord>>;

    /// Look up an enrolled, unrevoked agent key.
    async fn agent_key(&self, key_id: &str) -> Result<Option<AgentKeyRecord>>;

    /// Everything appraising evidence signed by `key_id` reads, in one statement: the key
    /// (`None` when unknown or revoked), the reference-value revision, the active policy
    /// (`default_policy` when none is set) with its latest version, and the TPM binding and
    /// activation of the key's node.
    async fn appraisal_context(
        &self,
        key_id: &str,
        default_policy: &str,
    ) -> Result<Option<crate::AppraisalContext>>;

    /// Whether a nonce was already used (a read-only early check; the authoritative check is
    /// the insert in [`Store::record_attestation`]).
    async fn nonce_used(&self, nonce_id: &str) -> Result<bool>;

    /// Use up a one-time id (`id`, kept until `expires_at`) in the same replay table as
    /// attestation nonces: [`StoreError::NonceReused`] when any replica already used it. The
    /// verifier keeps JWT-SVID request ids (`jti`) here.
    async fn use_nonce(&self, id: &str, expires_at: u64) -> Result<()>;

    /// Store a new version of policy `id`; returns the version. Optionally make `id` active.
    async fn add_policy(&self, id: &str, rego: &str, activate: bool, now: u64) -> Result<u32>;

    /// A policy version (the latest when `version` is `None`).
    async fn policy(&self, id: &str, version: Option<u32>) -> Result<Option<PolicyRecord>>;

    /// Latest version of every policy.
    async fn policies(&self) -> Result<Vec<PolicyRecord>>;

    /// Id of the active policy.
    async fn active_policy_id(&self) -> Result<Option<String>>;

    /// Make `id` the active policy.
    async fn activate_policy(&self, id: &str) -> Result<()>;

    /// Add a reference value (idempotent); returns its id.
    async fn add_reference_value(&self, value: &ReferenceValue, now: u64) -> Result<i64>;

    /// Remove a reference value by id; `false` when there was none.
    async fn remove_reference_value(&self, id: i64) -> Result<bool>;

    /// All reference values with their ids.
    async fn reference_value_rows(&self) -> Result<Vec<(i64, ReferenceValue)>>;

    /// Add many reference values and append `audit` to the audit log, in one transaction: all
    /// of them and the entry, or nothing. Values already present are kept (not duplicated);
    /// returns how many were new. The revision moves once, when any was.
    async fn import_reference_values(
        &self,
        values: &[ReferenceValue],
        audit: &AuditEvent,
        now: u64,
    ) -> Result<u64>;

    /// All reference values, with the revision that changes whenever they do.
    async fn reference_values(&self) -> Result<ReferenceValues>;

    /// Consume the nonce (`id`, expiry), append the attestation and update its workload, in
    /// one transaction: a replayed nonce fails with [`StoreError::NonceReused`] and records
    /// nothing.
    async fn record_attestation(
        &self,
        rec: &AttestationRecord,
        deadline: u64,
        nonce: Option<(&str, u64)>,
    ) -> Result<()>;

    /// One attestation.
    async fn attestation(&self, id: &str) -> Result<Option<AttestationRecord>>;

    /// Number of attestations recorded.
    async fn attestation_count(&self) -> Result<u64>;

    /// All workloads.
    async fn workloads(&self) -> Result<Vec<WorkloadRecord>>;

    /// One workload.
    async fn workload(&self, id: &str) -> Result<Option<WorkloadRecord>>;

    /// How many workloads have each status, counted in the database (for `/metrics`, which
    /// must not read a million rows on every scrape).
    async fn workload_status_counts(&self) -> Result<Vec<(String, u64)>>;

    /// Mark every workload whose deadline passed as contraindicated; returns their ids. Also
    /// forget used nonces, but only those whose `expires_at` (the nonce's own issue time + ttl +
    /// skew) is more than `clock_skew` before `now`: a replica whose clock runs ahead by up to
    /// the skew never forgets a nonce that one whose clock runs behind by up to the skew would
    /// still accept. TPM joins whose challenge expired before `now` are dropped too.
    async fn mark_overdue(&self, now: u64, clock_skew: u64) -> Result<Vec<String>>;

    /// All nodes.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;

    /// Record (or replace) a node's TPM enrollment; it is not active until
    /// [`Store::activate_tpm`]. Enrolling the same EK again keeps the clock of its last quote
    /// and its IMA replay state (sticky failures included): they are the TPM's, not the AK's.
    /// A node stays TPM-bound (`bound_at`) whatever it enrolls. An EK that another bound node
    /// holds is [`StoreError::EkEnrolled`]. Whether the node may change its EK or AK at all is
    /// the caller's decision (see [`Store::open_tpm_reenrollment`]).
    async fn put_tpm_enrollment(&self, rec: &TpmKeyRecord) -> Result<()>;

    /// A node's TPM enrollment.
    async fn tpm_key(&self, node_id: &str) -> Result<Option<TpmKeyRecord>>;

    /// The bound node that holds the EK whose key is `ek_key`, if any.
    async fn tpm_node_for_ek(&self, ek_key: &str) -> Result<Option<String>>;

    /// Mark a node's AK activated (credential activation succeeded), clear the challenge, bind
    /// the node to its TPM for good (`bound_at`, once) and use up its open re-enrolment, in one
    /// transaction. [`StoreError::EkEnrolled`] when another bound node holds the EK.
    async fn activate_tpm(&self, node_id: &str, now: u64) -> Result<()>;

    /// Enrollments of unrevoked nodes whose `ek_key` is not recorded (enrolled before it was):
    /// for the verifier to fill in at start.
    async fn tpm_keys_without_ek_key(&self) -> Result<Vec<TpmKeyRecord>>;

    /// Record a node's `ek_key` ([`StoreError::EkEnrolled`] when another bound node holds it).
    async fn set_tpm_ek_key(&self, node_id: &str, ek_key: &str) -> Result<()>;

    /// Record an admin re-enrolment of a TPM-bound node.
    async fn add_tpm_reenrollment(&self, rec: &TpmReenrollment) -> Result<()>;

    /// The newest unused, unexpired re-enrolment of a node.
    async fn open_tpm_reenrollment(
        &self,
        node_id: &str,
        now: u64,
    ) -> Result<Option<TpmReenrollment>>;

    /// Every re-enrolment of a node, newest first.
    async fn tpm_reenrollments(&self, node_id: &str) -> Result<Vec<TpmReenrollment>>;

    /// Remember the clock of the last accepted quote of a node's AK and, when an IMA log was
    /// replayed, where the replay stands.
    async fn set_tpm_state(
        &self,
        node_id: &str,
        clock_json: &str,
        ima_state_json: Option<&str>,
    ) -> Result<()>;

    /// Add a registration entry; refused when the same SPIFFE ID and selectors exist.
    async fn add_entry(&self, entry: &vouch_identity::Entry) -> Result<()>;

    /// All registration entries.
    async fn entries(&self) -> Result<Vec<vouch_identity::Entry>>;

    /// Delete a registration entry; `false` when there was none.
    async fn delete_entry(&self, id: &str) -> Result<bool>;

    /// A change counter (one row): [`REFVALUES_REVISION`] or [`ENTRIES_REVISION`], bumped in
    /// the transaction of every change, so replicas keep what they read in memory and re-read
    /// only when it moved, instead of scanning the table on every request.
    async fn revision(&self, key: &str) -> Result<u64>;

    /// All registration entries and the [`ENTRIES_REVISION`] they are at, read together.
    async fn entries_at_revision(&self) -> Result<(u64, Vec<vouch_identity::Entry>)>;

    /// Add many registration entries in one transaction (all or none), each its own change
    /// (its own revision and change-log row); returns the entries revision after them.
    async fn add_entries(&self, entries: &[vouch_identity::Entry]) -> Result<u64>;

    /// Registration entries with ids after `after` in id order, at most `limit` of them: pages
    /// for reading every entry without holding every row at once.
    async fn entries_page(&self, after: &str, limit: u32) -> Result<Vec<vouch_identity::Entry>>;

    /// What changed in the registration entries after revision `since`, from the change log,
    /// read together with the revision it brings the reader to: at most `limit` changes
    /// ([`EntriesSince::Resync`] when there are more, or when the log does not reach back to
    /// `since`). An index range scan: the cost follows the changes, not the entries.
    async fn entries_since(&self, since: u64, limit: u32) -> Result<EntriesSince>;

    /// Forget change-log rows at or below revision `upto` (readers older than that resync).
    /// Every change also prunes what is more than [`ENTRIES_LOG_KEEP`] revisions old.
    async fn prune_entries_log(&self, upto: u64) -> Result<()>;

    /// The highest epoch in the revocation log (0 when it is empty).
    async fn revocation_epoch(&self) -> Result<u64>;

    /// Append `rec` to the revocation log and apply it, in one transaction: a node's agent keys
    /// are revoked and its workloads contraindicated; an agent key is revoked; a workload is
    /// contraindicated. `rec.epoch` must be the current epoch + 1 ([`StoreError::EpochTaken`]
    /// otherwise: another replica appended first; sign again at the new epoch). A node, agent
    /// key, workload or result that does not exist is [`StoreError::NotFound`]; a target revoked
    /// before is [`StoreError::Duplicate`].
    async fn append_revocation(&self, rec: &RevocationRecord) -> Result<()>;

    /// Revocations with an epoch above `after`, in epoch order, at most `limit` of them: the
    /// incremental feed replicas publish (an index range scan, never the whole log).
    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<RevocationRecord>>;

    /// The revocation of `target` of `kind`, if any.
    async fn revocation(&self, kind: &str, target: &str) -> Result<Option<RevocationRecord>>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// The connection pool's size now (for `/metrics`); all zero for a store without one.
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }
}

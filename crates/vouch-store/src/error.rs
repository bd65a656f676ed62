use vouch_core::ErrorKind;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The join token is unknown.
    #[error("join token is not known to this verifier; create one with `vouch token create`")]
    TokenInvalid,
    /// The join token expired.
    #[error("join token expired; create a new one with `vouch token create`")]
    TokenExpired,
    /// The join token was already used.
    #[error("join token was already used; join tokens are single-use")]
    TokenReused,
    /// The public key is already enrolled.
    #[error("this agent key is already enrolled as {key_id}")]
    KeyAlreadyEnrolled {
        /// The existing key id.
        key_id: String,
    },
    /// The nonce was already used.
    #[error("this nonce was already used; ask for a new challenge for every attestation")]
    NonceReused,
    /// An equal record already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The record was not found.
    #[error("{0} not found")]
    NotFound(String),
    /// The workload was revoked: no new result is recorded for it.
    #[error("{0} was revoked")]
    Revoked(String),
    /// Another writer appended a revocation at this epoch first.
    #[error("revocation epoch {0} was taken by another writer; sign again at the next epoch")]
    EpochTaken(u64),
    /// The EK is bound to another node: one TPM attests for one node.
    #[error(
        "this TPM's EK is bound to node {node_id}; one TPM attests for one node (revoking that node frees it)"
    )]
    EkEnrolled {
        /// The node that holds it.
        node_id: String,
    },
    /// The group commit that held this write (with others) did not commit, so this write was
    /// not acknowledged: the database's error, or none when the store's committer stopped
    /// (its runtime shut down) before it answered.
    #[error("the transaction holding this write did not commit{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    CommitFailed(#[source] Option<std::sync::Arc<sqlx::Error>>),
    /// The node was attested with a long-lived document under another agent key, and no
    /// admin re-enrolment is open for it.
    #[error(
        "node {node_id} was already attested ({method}) with another agent key; a long-lived \
         document could be replayed by anyone who read it, so attesting it again needs an admin \
         re-enrolment: `vouch node reenroll {node_id} --reason …`"
    )]
    NodeAttested {
        /// The node.
        node_id: String,
        /// The method it was attested with.
        method: String,
    },
    /// The database's schema is older than this binary's and migrating was not asked for.
    #[error(
        "the database schema is out of date ({applied} migrations applied, {pending} pending \
         from {first:04}); back it up, then apply them with `vouch migrate` or \
         `vouch server --migrate` (nothing migrates a database implicitly)"
    )]
    SchemaOutdated {
        /// Migrations already applied.
        applied: usize,
        /// Migrations this binary would apply.
        pending: usize,
        /// The first pending migration's number.
        first: i64,
    },
    /// The database was migrated by a newer binary.
    #[error(
        "the database has migration {version:04}, which this binary does not know: it was \
         migrated by a newer Vouch; run that version"
    )]
    SchemaNewer {
        /// The unknown migration's number.
        version: i64,
    },
    /// A stored value could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// An attestation's claims name a part (stored once for many records, in `claim_parts`)
    /// whose row is not there.
    #[error(
        "claim part {part} of attestation {attestation} (SHA-256 {digest}) is missing from the store"
    )]
    ClaimPartMissing {
        /// The attestation whose claims reference it.
        attestation: String,
        /// The part's name (`files`, `processes`, `listening` or `packages`).
        part: String,
        /// Its lowercase hex SHA-256.
        digest: String,
    },
}

impl StoreError {
    /// The stable error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Database(_)
            | Self::Migrate(_)
            | Self::SchemaOutdated { .. }
            | Self::SchemaNewer { .. }
            | Self::CommitFailed(_)
            | Self::Corrupt(_)
            | Self::ClaimPartMissing { .. }
            | Self::EpochTaken(_) => ErrorKind::StoreUnavailable,
            Self::TokenInvalid => ErrorKind::TokenInvalid,
            Self::TokenExpired => ErrorKind::TokenExpired,
            Self::TokenReused | Self::KeyAlreadyEnrolled { .. } => ErrorKind::TokenReused,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Duplicate(_) => ErrorKind::MalformedRequest,
            Self::NonceReused => ErrorKind::NonceReused,
            Self::Revoked(_) => ErrorKind::Revoked,
            Self::EkEnrolled { .. } => ErrorKind::TpmEkInUse,
            Self::NodeAttested { .. } => ErrorKind::NodeAttested,
        }
    }
}

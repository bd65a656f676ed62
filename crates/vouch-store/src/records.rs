use serde::{Deserialize, Serialize};

/// The outcome of a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The new node.
    pub node_id: String,
    /// The new key.
    pub key_id: String,
}

/// What appraising one piece of evidence needs from the store, read in one round trip
/// ([`crate::Store::appraisal_context`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppraisalContext {
    /// The enrolled, unrevoked key that signed the evidence.
    pub key: AgentKeyRecord,
    /// The reference values' revision.
    pub refvalues_revision: u64,
    /// The active policy's id.
    pub policy_id: String,
    /// Its latest version (`None`: the policy has no version).
    pub policy_version: Option<u32>,
    /// Whether the key's node is bound to a TPM.
    pub tpm_bound: bool,
    /// Whether the key's node has an activated AK.
    pub tpm_activated: bool,
}

/// An enrolled agent key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeyRecord {
    /// Key id.
    pub id: String,
    /// Node the key belongs to.
    pub node_id: String,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Enrollment time.
    pub enrolled_at: u64,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// Host name reported at enrollment.
    pub hostname: String,
    /// Creation time.
    pub created_at: u64,
}

/// One version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Policy id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// Rego source.
    pub rego: String,
    /// SHA-256 of the source, hex.
    pub sha256: String,
    /// Creation time.
    pub created_at: u64,
}

/// One appraisal, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationRecord {
    /// Attestation id.
    pub id: String,
    /// Workload (`node-id/name`).
    pub workload_id: String,
    /// Node.
    pub node_id: String,
    /// Signing agent key.
    pub key_id: String,
    /// Evidence kind.
    pub evidence_kind: String,
    /// SHA-256 of the evidence payload.
    pub evidence_sha256: String,
    /// Verified claims (policy input).
    pub claims: serde_json::Value,
    /// Status (`affirming`, …).
    pub status: String,
    /// Trust vector (JSON object).
    pub trust_vector: serde_json::Value,
    /// Why the policy decided as it did.
    pub reasons: Vec<String>,
    /// Deciding policy.
    pub policy_id: String,
    /// Deciding policy version.
    pub policy_version: u32,
    /// The signed EAR.
    pub result: String,
    /// Time of appraisal.
    pub created_at: u64,
    /// Expiry of the result.
    pub expires_at: u64,
}

/// A join token as the store keeps it: its SHA-256, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// The name given to the node that uses it.
    pub node_name: Option<String>,
    /// When it was made.
    pub created_at: u64,
    /// When it stops being accepted.
    pub expires_at: u64,
    /// When it was used (single use).
    pub used_at: Option<u64>,
    /// The node that used it.
    pub used_by: Option<String>,
}

/// A workload and its current standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    /// `node-id/name`.
    pub id: String,
    /// Node.
    pub node_id: String,
    /// Name on the node.
    pub name: String,
    /// Current status.
    pub status: String,
    /// Why.
    pub reason: String,
    /// Last evidence time.
    pub last_attested_at: Option<u64>,
    /// Latest attestation.
    pub last_attestation_id: Option<String>,
    /// When it will be marked contraindicated without new evidence.
    pub deadline: Option<u64>,
    /// Last change.
    pub updated_at: u64,
}

/// A node's TPM: EK, AK, activation state and the last accepted quote clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmKeyRecord {
    /// The node.
    pub node_id: String,
    /// EK `TPM2B_PUBLIC`.
    pub ek_public: Vec<u8>,
    /// EK certificate (DER), when presented.
    pub ek_cert: Option<Vec<u8>>,
    /// The trusted CA that issued the EK certificate.
    pub ek_issuer: Option<String>,
    /// AK `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The AK's qualified name (what `qualifiedSigner` must equal).
    pub ak_qualified_name: Vec<u8>,
    /// SHA-256 (hex) of the pending credential-activation secret.
    pub challenge_hash: Option<String>,
    /// Expiry of the pending challenge.
    pub challenge_expires: Option<u64>,
    /// When credential activation succeeded; `None` until it has.
    pub activated_at: Option<u64>,
    /// JSON of the last accepted quote's `clockInfo`.
    pub last_clock: Option<String>,
    /// JSON of the IMA replay state.
    pub ima_state: Option<String>,
    /// Enrollment time.
    pub created_at: u64,
    /// SHA-256 (hex) of the EK's public key: once the node is bound, no other bound node may
    /// hold the same. `None` once the node is revoked (its TPM is free again).
    pub ek_key: Option<String>,
    /// When an AK of this node was first activated; never cleared. From then on the node is
    /// TPM-bound: its EK and AK change only through an admin re-enrolment.
    pub bound_at: Option<u64>,
}

/// An admin re-enrolment of a TPM-bound node: it lets the node's next enrollment present
/// another EK or AK, until an AK is activated under it or it expires. Kept as the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmReenrollment {
    /// Id (a UUID).
    pub id: String,
    /// The node.
    pub node_id: String,
    /// Why.
    pub reason: String,
    /// Who decided.
    pub requested_by: String,
    /// When.
    pub created_at: u64,
    /// Until when it may be used.
    pub expires_at: u64,
    /// The EK key (SHA-256, hex) the node was bound to.
    pub previous_ek: Option<String>,
    /// The AK name (hex) the node was bound to.
    pub previous_ak: Option<String>,
    /// When an AK was activated under it (it is used up).
    pub used_at: Option<u64>,
    /// The EK key the node was then bound to.
    pub ek_key: Option<String>,
}

/// One entry of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// Position in the log, from 1, without gaps.
    pub epoch: u64,
    /// `workload`, `node`, `svid`, `agent-key` or `result`.
    pub kind: String,
    /// What is revoked (canonical form).
    pub target: String,
    /// Why.
    pub reason: String,
    /// Who decided.
    pub by: String,
    /// When.
    pub created_at: u64,
    /// The signed record (compact JWS) whose claims these are.
    pub record: String,
}

/// What changed in the registration entries after a revision ([`crate::Store::entries_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntriesSince {
    /// Every change after the revision asked for, up to `revision`; for each entry only its
    /// latest state.
    Changes {
        /// The entries revision these changes bring the reader to.
        revision: u64,
        /// Entries added after the revision asked for (and not deleted since).
        upserted: Vec<vouch_identity::Entry>,
        /// Ids of entries deleted after the revision asked for (tombstones).
        deleted: Vec<String>,
    },
    /// The log no longer reaches back to the revision asked for (pruned, or older than the
    /// log), the revision is ahead of the store's, or more changed than the limit: the reader
    /// must read every entry again ([`crate::Store::entries_at_revision`]).
    Resync {
        /// The store's current entries revision.
        revision: u64,
    },
}

/// A node a zero-touch node attestor vouched for, to be enrolled with an agent key
/// ([`crate::Store::enroll_attested`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedNode {
    /// The node id, derived from `node_key`.
    pub node_id: String,
    /// The method (`k8s_psat`, `aws_iid`, ...).
    pub method: String,
    /// The method's stable name for the machine.
    pub node_key: String,
    /// Selectors from the verified document.
    pub selectors: Vec<String>,
    /// The host name to record.
    pub hostname: String,
    /// Whether another agent key may take the node over without an admin re-enrolment (the
    /// node's earlier keys are then revoked: one agent per node).
    pub reattestable: bool,
}

/// A TPM join (zero-touch `tpm` node attestation) waiting for its credential activation
/// ([`crate::Store::open_tpm_join`]): what the verifier checked and the challenge it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmJoinRecord {
    /// The challenge id (random).
    pub id: String,
    /// SHA-256 (hex) of the EK's key material: at most one open join per EK.
    pub ek_key: String,
    /// The node id the EK derives.
    pub node_id: String,
    /// The agent key to enroll (raw Ed25519).
    pub public_key: Vec<u8>,
    /// The host name the agent gave.
    pub hostname: String,
    /// EK `TPM2B_PUBLIC`.
    pub ek_public: Vec<u8>,
    /// The validated EK certificate (DER).
    pub ek_cert: Vec<u8>,
    /// The trusted CA that issued it.
    pub ek_issuer: String,
    /// AK `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The AK's qualified name under the EK.
    pub ak_qualified_name: Vec<u8>,
    /// SHA-256 (hex) of the credential's secret.
    pub secret_hash: String,
    /// When the challenge expires (Unix seconds).
    pub expires_at: u64,
}

/// How a node was attested without a join token, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAttestationRecord {
    /// The node.
    pub node_id: String,
    /// The method.
    pub method: String,
    /// The method's stable name for the machine.
    pub node_key: String,
    /// Selectors from the verified document (the latest attestation's).
    pub selectors: Vec<String>,
    /// The first attestation.
    pub first_at: u64,
    /// The latest attestation.
    pub attested_at: u64,
    /// How many times the node was attested.
    pub attestations: u64,
}

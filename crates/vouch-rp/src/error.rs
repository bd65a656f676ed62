/// Why a result was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpError {
    /// The key set could not be parsed or holds no usable key.
    #[error("key set: {0}")]
    Keys(String),
    /// The token is not a well-formed JWS/JWT or its claims are not an EAR.
    #[error("malformed result: {0}")]
    Malformed(String),
    /// The token asks for an algorithm that is not accepted (including `none`).
    #[error("algorithm {0} is not accepted for attestation results")]
    Algorithm(String),
    /// The key set's last good fetch ([`crate::JwksSource`]) is older than the relying party
    /// allows: keys the verifier removed since may still be held.
    #[error("the key set was last fetched {age} s ago, more than the {max_age} s allowed")]
    KeysStale {
        /// Seconds since the last good fetch.
        age: u64,
        /// Seconds allowed.
        max_age: u64,
    },
    /// The SPIFFE Workload API gave no usable identity: unreachable, refused, or malformed.
    #[error("Workload API: {0}")]
    WorkloadApi(String),
    /// No key in the set has the token's `kid`.
    #[error("no key with kid {0:?} in the key set (refresh the JWKS if the verifier rotated keys)")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// The result expired.
    #[error("result expired")]
    Expired,
    /// The result is not valid yet.
    #[error("result is not valid yet (nbf in the future)")]
    NotYetValid,
    /// The result has no `aud`, or names another relying party than the required one.
    #[error("the result is not for audience {0:?} (its aud is missing or names another)")]
    Audience(String),
    /// The requirements name no audience, so no result is accepted: a result for any other
    /// relying party would pass.
    #[error(
        "no audience is required: set the audience this relying party expects \
         (Requirements::for_audience, `vouch verify --audience`; agents request it with \
         result_audience); Audience::Unchecked (`--any-audience`) only to inspect a result"
    )]
    NoAudience,
    /// The nonce does not match.
    #[error("result nonce does not match the expected nonce")]
    Nonce,
    /// The EAR profile is not one this SDK understands.
    #[error("unknown EAR profile {0:?}")]
    Profile(String),
    /// The appraisal status is not acceptable.
    #[error("appraisal status is {0}, which this relying party does not accept")]
    Status(String),
    /// A signed revocation record revokes what was presented.
    #[error("{kind} {target} is revoked (revocation epoch {epoch})")]
    Revoked {
        /// What kind of thing.
        kind: String,
        /// Which one.
        target: String,
        /// The revocation's epoch.
        epoch: u64,
    },
    /// The revocation set has no signed head, or lacks a record its newest head announces: it
    /// cannot tell whether what was presented is revoked.
    #[error(
        "revocation state incomplete: records held through epoch {complete_through}, {}",
        announced(.head_epoch)
    )]
    RevocationsIncomplete {
        /// Every record up to this epoch is held.
        complete_through: u64,
        /// The epoch the newest head announces, if any head was received.
        head_epoch: Option<u64>,
    },
    /// The newest signed revocation head is older than the relying party allows: revocations
    /// since then may not have arrived.
    #[error(
        "revocation state is stale: the newest signed head is {age} s old, more than the \
         {max_age} s allowed"
    )]
    RevocationsStale {
        /// Seconds since the head was signed.
        age: u64,
        /// Seconds allowed.
        max_age: u64,
    },
    /// Two validly signed revocation records for one epoch say different things: a replica
    /// misbehaved. The second is kept as evidence, and both revoke.
    #[error(
        "two signed revocation records for epoch {epoch}: {held}, and {other}; both are kept \
         and both revoke"
    )]
    RevocationConflict {
        /// The epoch.
        epoch: u64,
        /// The record held first.
        held: String,
        /// The conflicting one.
        other: String,
    },
    /// The result lacks a submodule the relying party requires.
    #[error("the result has no {0:?} submodule, which this relying party requires")]
    Submodule(String),
    /// The result comes from evidence of a kind the relying party does not accept.
    #[error("the result comes from {0} evidence, which this relying party does not accept")]
    EvidenceKind(String),
    /// The result names another tenant (`vouch.tenant`) than the one the relying party
    /// serves, or none.
    #[error("the result is tenant {got:?}'s, not tenant {expected:?}'s")]
    Tenant {
        /// The tenant required.
        expected: String,
        /// The result's `vouch.tenant` (empty when it has none).
        got: String,
    },
    /// The relying party requires an ML-DSA-65 signature ([`crate::SignatureMode`]) and the
    /// result carries none: a compact JWT, or JWS JSON whose post-quantum signature was
    /// stripped (a downgrade).
    #[error(
        "the result carries no ML-DSA-65 signature, which this relying party requires (use the verifier's result_pq)"
    )]
    PostQuantumMissing,
    /// The ML-DSA-65 signature does not verify.
    #[error("ML-DSA-65 signature does not verify")]
    PostQuantumSignature,
    /// A trust-vector claim is below the required tier.
    #[error("trust vector claim {claim} is {value} ({tier}); required {required}")]
    Tier {
        /// The claim.
        claim: String,
        /// Its value.
        value: i8,
        /// Its tier.
        tier: String,
        /// The required tier.
        required: String,
    },
}

fn announced(head_epoch: &Option<u64>) -> String {
    match head_epoch {
        Some(e) => format!("the newest signed head announces epoch {e}"),
        None => "and no signed head was received".into(),
    }
}

use std::fmt;

/// Stable, machine-readable error kinds shared by the verifier API, the agent and the relying
/// party SDK.
///
/// The string form ([`ErrorKind::as_str`]) is part of the wire protocol: it appears in every
/// error body the verifier returns (`{"error": {"kind": "...", "message": "..."}}`) and never
/// changes meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request body was not valid JSON or did not match the expected shape.
    MalformedRequest,
    /// The request body exceeded the configured size limit.
    BodyTooLarge,
    /// The nonce could not be decoded or its authentication tag did not verify.
    NonceInvalid,
    /// The nonce was older than its time to live.
    NonceExpired,
    /// The nonce was issued further in the future than the allowed clock skew.
    NonceFromFuture,
    /// The nonce was issued for another audience (verifier cluster).
    NonceAudience,
    /// The nonce was already used by an earlier attestation.
    NonceReused,
    /// The evidence's nonce does not match the nonce being presented.
    NonceMismatch,
    /// The evidence could not be parsed.
    EvidenceMalformed,
    /// The evidence signature did not verify with the enrolled key.
    EvidenceSignature,
    /// The evidence was signed by a key that is not enrolled (or has been revoked).
    UnknownKey,
    /// The evidence kind is not supported by this verifier.
    UnsupportedEvidence,
    /// The node has no TPM enrolled, or its AK never completed credential activation.
    TpmNotEnrolled,
    /// TPM enrollment was refused (EK certificate, EK/AK public areas, AK attributes).
    TpmEnrollment,
    /// The TPM quote did not verify (signature, nonce binding, PCRs, signer, clock).
    TpmQuote,
    /// The workload is not (or no longer) attested affirming, so it gets no identity.
    NotAttested,
    /// No registration entry grants an identity to this workload.
    NoIdentity,
    /// The join token is unknown.
    TokenInvalid,
    /// The join token has expired.
    TokenExpired,
    /// The join token was already used.
    TokenReused,
    /// The policy could not be compiled or evaluated.
    PolicyError,
    /// The request needs the verifier's admin token and did not carry it (or a wrong one).
    Unauthenticated,
    /// The requested record does not exist.
    NotFound,
    /// The store failed; the request may be retried.
    StoreUnavailable,
    /// An unexpected internal failure; the request may be retried.
    Internal,
    /// TEE evidence was refused: its chain to the vendor root, its signature, or its binding
    /// to the nonce and the agent key.
    TeeEvidence,
    /// Too few verifiers of the quorum agreed (or answered) to make a quorum result; retry.
    QuorumUnavailable,
    /// This verifier's own appraisal differs from the result it was asked to co-sign.
    QuorumDisagrees,
    /// The workload, node or key was revoked (`vouch revoke`); nothing more is accepted for it.
    Revoked,
    /// No route serves this path.
    RouteNotFound,
    /// The route exists but does not take this HTTP method.
    MethodNotAllowed,
    /// The request (headers and body) did not arrive, or was not answered, within the
    /// verifier's request timeout.
    RequestTimeout,
    /// The request's URI is longer than the verifier accepts.
    UriTooLong,
    /// The request's header section is larger than the verifier accepts.
    HeadersTooLarge,
    /// The verifier holds as many connections or requests as it accepts (in all, or from
    /// this client); retry later.
    Overloaded,
    /// The node is bound to another TPM (EK) or AK: once an AK is activated, another needs an
    /// admin re-enrolment (`vouch node reenroll`).
    TpmBound,
    /// The EK is bound to another node: one TPM attests for one node.
    TpmEkInUse,
    /// The node is bound to a TPM, and its policy does not accept this evidence without a
    /// quote (reference value `tpm_fallback`).
    TpmRequired,
    /// The evidence sends a part of its measurements by digest (`held`), and this verifier
    /// does not hold that part: send the measurements in full.
    PartsUnknown,
    /// A zero-touch node attestation (`POST /v1/node/attest`) was refused: a method this
    /// verifier does not accept, or a document whose signature, signer, audience, nonce or
    /// validity does not hold.
    NodeAttestation,
    /// The node was already attested with a long-lived document (a cloud instance identity)
    /// under another agent key: attesting it again needs an admin re-enrolment
    /// (`vouch node reenroll`), or anyone who once read the document could take the node over.
    NodeAttested,
    /// The credential is valid but does not allow this call: its role is too low (an auditor
    /// writing, an operator changing policy) or it belongs to another tenant.
    Forbidden,
}

impl ErrorKind {
    /// The stable string form used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::BodyTooLarge => "body_too_large",
            Self::NonceInvalid => "nonce_invalid",
            Self::NonceExpired => "nonce_expired",
            Self::NonceFromFuture => "nonce_from_future",
            Self::NonceAudience => "nonce_audience",
            Self::NonceReused => "nonce_reused",
            Self::NonceMismatch => "nonce_mismatch",
            Self::EvidenceMalformed => "evidence_malformed",
            Self::EvidenceSignature => "evidence_signature",
            Self::UnknownKey => "unknown_key",
            Self::UnsupportedEvidence => "unsupported_evidence",
            Self::TpmNotEnrolled => "tpm_not_enrolled",
            Self::TpmEnrollment => "tpm_enrollment",
            Self::TpmQuote => "tpm_quote",
            Self::NotAttested => "not_attested",
            Self::NoIdentity => "no_identity",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenReused => "token_reused",
            Self::PolicyError => "policy_error",
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
            Self::Revoked => "revoked",
            Self::TeeEvidence => "tee_evidence",
            Self::QuorumUnavailable => "quorum_unavailable",
            Self::QuorumDisagrees => "quorum_disagrees",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Overloaded => "overloaded",
            Self::TpmBound => "tpm_bound",
            Self::TpmEkInUse => "tpm_ek_in_use",
            Self::TpmRequired => "tpm_required",
            Self::PartsUnknown => "parts_unknown",
            Self::NodeAttestation => "node_attestation",
            Self::NodeAttested => "node_attested",
            Self::Forbidden => "forbidden",
        }
    }

    /// Parse the wire form back into a kind (unknown strings give `None`).
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [ErrorKind; 42] = [
            ErrorKind::MalformedRequest,
            ErrorKind::BodyTooLarge,
            ErrorKind::NonceInvalid,
            ErrorKind::NonceExpired,
            ErrorKind::NonceFromFuture,
            ErrorKind::NonceAudience,
            ErrorKind::NonceReused,
            ErrorKind::NonceMismatch,
            ErrorKind::EvidenceMalformed,
            ErrorKind::EvidenceSignature,
            ErrorKind::UnknownKey,
            ErrorKind::UnsupportedEvidence,
            ErrorKind::TpmNotEnrolled,
            ErrorKind::TpmEnrollment,
            ErrorKind::TpmQuote,
            ErrorKind::NotAttested,
            ErrorKind::NoIdentity,
            ErrorKind::TokenInvalid,
            ErrorKind::TokenExpired,
            ErrorKind::TokenReused,
            ErrorKind::PolicyError,
            ErrorKind::Unauthenticated,
            ErrorKind::NotFound,
            ErrorKind::StoreUnavailable,
            ErrorKind::Internal,
            ErrorKind::Revoked,
            ErrorKind::TeeEvidence,
            ErrorKind::QuorumUnavailable,
            ErrorKind::QuorumDisagrees,
            ErrorKind::RouteNotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::RequestTimeout,
            ErrorKind::UriTooLong,
            ErrorKind::HeadersTooLarge,
            ErrorKind::Overloaded,
            ErrorKind::TpmBound,
            ErrorKind::TpmEkInUse,
            ErrorKind::TpmRequired,
            ErrorKind::PartsUnknown,
            ErrorKind::NodeAttestation,
            ErrorKind::NodeAttested,
            ErrorKind::Forbidden,
        ];
        ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a client may retry the same request later with a chance of success.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::StoreUnavailable
                | Self::Internal
                | Self::QuorumUnavailable
                | Self::RequestTimeout
                | Self::Overloaded
        )
    }
}

/// At most `max` bytes of `s` (cut at a character boundary), followed by how long it was when
/// it was longer: for putting a value a client sent into an error message or a log line
/// without echoing a megabyte of it.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes in all)", &s[..end], s.len()))
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        for k in [
            ErrorKind::NonceReused,
            ErrorKind::Internal,
            ErrorKind::TokenReused,
            ErrorKind::RouteNotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::RequestTimeout,
            ErrorKind::UriTooLong,
            ErrorKind::HeadersTooLarge,
            ErrorKind::Overloaded,
            ErrorKind::TpmBound,
            ErrorKind::TpmEkInUse,
            ErrorKind::TpmRequired,
            ErrorKind::PartsUnknown,
            ErrorKind::NodeAttestation,
            ErrorKind::NodeAttested,
        ] {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ErrorKind::parse("nope"), None);
    }

    #[test]
    fn clip_cuts_long_values_at_a_character_boundary() {
        assert_eq!(clip("short", 8), "short");
        let long = "é".repeat(1000);
        let c = clip(&long, 301);
        assert!(c.starts_with(&"é".repeat(150)), "{c}");
        assert!(c.ends_with("… (2000 bytes in all)"), "{c}");
        assert!(c.len() < 330);
    }
}

//! Signed heads of a verifier's audit log (issue 16 item 3), checked offline.
//!
//! A head is a compact JWS (`typ` [`vouch_core::audit::AUDIT_HEAD_TYP`]) by a verifier replica
//! whose certificate (`x5c`) chains to the trust bundle, like revocation heads. The tree maths
//! (root, inclusion and consistency proofs) is [`vouch_core::audit`]'s.

use vouch_core::audit::{AUDIT_HEAD_TYP, AuditHead};

use crate::{RpError, SpiffeVerifier, x5c};

/// Check a signed audit tree head against `bundle` as of `now` (signature, certificate chain,
/// issuer) and return its claims.
pub fn verify_audit_head(
    jws: &str,
    bundle: &SpiffeVerifier,
    now: u64,
) -> Result<AuditHead, RpError> {
    let (compact, _) = crate::pq::split(jws)?;
    verify_classical(&compact, bundle, now)
}

/// As [`verify_audit_head`], and the head must also carry an ML-DSA-65 signature (the
/// `head_pq` of `GET /v1/audit/head`, JWS JSON) under a key of `jwks`, the verifiers' JWKS,
/// over the same claims: a head kept for years stays unforgeable by whoever later breaks the
/// classical signature. Refused: a compact head or one without an ML-DSA-65 signature
/// ([`RpError::PostQuantumMissing`]), an unknown key, a bad signature, or an ML-DSA signature
/// over another kind of statement.
pub fn verify_audit_head_pq(
    jws: &str,
    bundle: &SpiffeVerifier,
    jwks: &str,
    now: u64,
) -> Result<AuditHead, RpError> {
    let keys = crate::pq::keys_from_jwks(jwks)?;
    let (compact, general) = crate::pq::split(jws)?;
    crate::pq::verify(&keys, general.as_ref(), Some(AUDIT_HEAD_TYP))?;
    verify_classical(&compact, bundle, now)
}

fn verify_classical(jws: &str, bundle: &SpiffeVerifier, now: u64) -> Result<AuditHead, RpError> {
    let signed = x5c::verify(jws, AUDIT_HEAD_TYP, bundle, now)?;
    let head: AuditHead = serde_json::from_slice(&signed.payload)
        .map_err(|e| RpError::Malformed(format!("audit head claims: {e}")))?;
    if signed.signer.to_string() != head.iss {
        return Err(RpError::Malformed(format!(
            "audit head says it was issued by {} but is signed by {}",
            head.iss, signed.signer
        )));
    }
    if head.iat > now.saturating_add(300) {
        return Err(RpError::Malformed(format!(
            "audit head from the future (iat {})",
            head.iat
        )));
    }
    head.root_hash()
        .map_err(|e| RpError::Malformed(format!("audit head root: {e}")))?;
    Ok(head)
}

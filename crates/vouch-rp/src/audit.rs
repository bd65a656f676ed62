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
    let signed = x5c::verify(jws.trim(), AUDIT_HEAD_TYP, bundle, now)?;
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

//! ML-DSA-65 (FIPS 204) co-signatures, shared by results, revocation records and signed heads.
//!
//! A verifier with `pq_signatures` hands out each signed statement twice: the compact JWS with
//! its classical signature, and the JWS JSON general serialization ([`vouch_core::jws`]) of the
//! same payload whose first signature is exactly the compact one and whose second is
//! `{"alg": "ML-DSA-65", "kid", "typ"}` by the verifier's ML-DSA-65 key, published in its JWKS
//! as an `AKP` key (RFC 9964). Which of the two a relying party requires is its
//! [`crate::SignatureMode`].

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use vouch_core::jws::GeneralJws;

use crate::RpError;

/// Trusted ML-DSA-65 public keys (raw FIPS 204 encoding, 1,952 bytes) by `kid`.
pub(crate) type PqKeyMap = HashMap<String, Vec<u8>>;

/// The ML-DSA-65 keys (`AKP` JWKs with `alg` `ML-DSA-65`) of a JWKS document; other keys are
/// skipped. Refused: a document that is not a JWKS, or an ML-DSA-65 key without `kid` or whose
/// `pub` is not 1,952 bytes of base64url.
pub(crate) fn keys_from_jwks(json: &str) -> Result<PqKeyMap, RpError> {
    let raw: serde_json::Value =
        serde_json::from_str(json).map_err(|e| RpError::Keys(format!("not a JWKS: {e}")))?;
    let entries = raw
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| RpError::Keys("not a JWKS: no \"keys\" array".into()))?;
    let mut keys = PqKeyMap::new();
    for entry in entries {
        if entry.get("kty").and_then(|k| k.as_str()) == Some(vouch_core::jws::AKP)
            && let Some((kid, pk)) = akp_key(entry)?
        {
            keys.insert(kid, pk);
        }
    }
    Ok(keys)
}

/// The `kid` and raw public key of an `AKP` JWK, if it is an ML-DSA-65 key.
pub(crate) fn akp_key(jwk: &serde_json::Value) -> Result<Option<(String, Vec<u8>)>, RpError> {
    if jwk.get("alg").and_then(|a| a.as_str()) != Some(vouch_core::jws::ML_DSA_65) {
        return Ok(None);
    }
    let kid = jwk
        .get("kid")
        .and_then(|k| k.as_str())
        .ok_or_else(|| RpError::Keys("an ML-DSA-65 key without kid".into()))?;
    let pk = jwk
        .get("pub")
        .and_then(|p| p.as_str())
        .and_then(|p| B64.decode(p).ok())
        .ok_or_else(|| RpError::Keys(format!("ML-DSA-65 key {kid}: pub is not base64url")))?;
    // FIPS 204: an ML-DSA-65 public key is 1,952 bytes.
    if pk.len() != 1952 {
        return Err(RpError::Keys(format!(
            "ML-DSA-65 key {kid}: {} bytes, not 1952",
            pk.len()
        )));
    }
    Ok(Some((kid.to_string(), pk)))
}

/// `token` as its compact classical form and, when it came as JWS JSON, the parsed document.
/// Longer than [`vouch_core::jws::MAX_GENERAL_JWS`] is refused before parsing.
pub(crate) fn split(token: &str) -> Result<(String, Option<GeneralJws>), RpError> {
    if token.len() > vouch_core::jws::MAX_GENERAL_JWS {
        return Err(RpError::Malformed(format!(
            "token longer than {} bytes",
            vouch_core::jws::MAX_GENERAL_JWS
        )));
    }
    let trimmed = token.trim();
    if trimmed.starts_with('{') {
        let jws = GeneralJws::parse(trimmed).map_err(|e| RpError::Malformed(e.to_string()))?;
        let compact = jws
            .compact(0)
            .ok_or_else(|| RpError::Malformed("no signature".into()))?;
        Ok((compact, Some(jws)))
    } else {
        Ok((trimmed.to_string(), None))
    }
}

/// Check the ML-DSA-65 signature of `jws` (after the first, classical one) under a key of
/// `keys`. When `typ` is given, the ML-DSA signature's protected header must carry it, so a
/// post-quantum signature over one kind of statement (a result) cannot be presented as
/// another (a revocation record) by someone able to forge the classical one. Refused: no
/// JWS JSON or no ML-DSA-65 signature ([`RpError::PostQuantumMissing`]), an unknown `kid`, a
/// wrong `typ`, a signature that does not verify ([`RpError::PostQuantumSignature`]).
pub(crate) fn verify(
    keys: &PqKeyMap,
    jws: Option<&GeneralJws>,
    typ: Option<&str>,
) -> Result<(), RpError> {
    let jws = jws.ok_or(RpError::PostQuantumMissing)?;
    let mut found = None;
    for (i, sig) in jws.signatures.iter().enumerate().skip(1) {
        let header = B64
            .decode(&sig.protected)
            .ok()
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
            .ok_or_else(|| RpError::Malformed("a protected header is not JSON".into()))?;
        if header.get("alg").and_then(|a| a.as_str()) == Some(vouch_core::jws::ML_DSA_65) {
            found = Some((i, header));
            break;
        }
    }
    let (i, header) = found.ok_or(RpError::PostQuantumMissing)?;
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if let Some(want) = typ {
        let got = header.get("typ").and_then(|t| t.as_str());
        if got != Some(want) {
            return Err(RpError::Malformed(format!(
                "the ML-DSA-65 signature is over a {} statement, not {want}",
                got.unwrap_or("typ-less")
            )));
        }
    }
    let pk = keys
        .get(kid)
        .ok_or_else(|| RpError::UnknownKey(kid.to_string()))?;
    let input = jws
        .signing_input(i)
        .ok_or_else(|| RpError::Malformed("no signature".into()))?;
    let sig = jws
        .signatures
        .get(i)
        .and_then(|s| B64.decode(&s.signature).ok())
        .ok_or_else(|| RpError::Malformed("signature is not base64url".into()))?;
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ML_DSA_65, pk)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| RpError::PostQuantumSignature)
}

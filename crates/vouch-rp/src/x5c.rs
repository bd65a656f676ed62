//! Compact JWS signed by a verifier replica whose key is certified by the trust domain: the
//! header's `x5c` holds the replica's X.509-SVID (and any intermediates), which must chain to
//! the trust bundle and name a verifier (`spiffe://<td>/vouch/verifier/<kid>`); the signature
//! is checked with the certified key, under the one algorithm that key type allows.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use vouch_core::revocation::VERIFIER_ID_PREFIX;
use vouch_spiffe::SpiffeId;

use crate::{RpError, SpiffeVerifier};

/// Longest signed statement accepted, bytes.
pub(crate) const MAX_JWS: usize = 32 * 1024;
/// Most certificates accepted in `x5c`.
const MAX_CHAIN: usize = 4;

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
}

/// A JWS whose signer's certificate chained to the trust bundle and whose signature verified.
#[derive(Clone)]
pub(crate) struct Signed {
    /// The certified key.
    pub key: DecodingKey,
    /// The one algorithm it is used with.
    pub alg: Algorithm,
    /// The signer's SPIFFE ID.
    pub signer: SpiffeId,
    /// The signer certificate's serial, as a revocation target.
    pub serial: String,
    /// When the signer certificate expires, Unix seconds.
    pub not_after: u64,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

fn malformed(m: impl Into<String>) -> RpError {
    RpError::Malformed(m.into())
}

/// Whether `token`'s header carries `x5c`.
pub(crate) fn has_x5c(token: &str) -> bool {
    token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Header>(&b).ok())
        .is_some_and(|h| h.x5c.is_some())
}

/// The leaf key of `x5c` as a decoding key, the algorithm its type allows, its serial (as a
/// revocation target) and its expiry.
fn leaf_key(der: &[u8]) -> Result<(DecodingKey, Algorithm, String, u64), RpError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| malformed(format!("x5c leaf does not parse: {e}")))?;
    let spki = cert.public_key();
    let raw = spki.subject_public_key.data.as_ref();
    let oid = spki.algorithm.algorithm.to_id_string();
    let (key, alg) = match oid.as_str() {
        "1.3.101.112" => (DecodingKey::from_ed_der(raw), Algorithm::EdDSA),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => (DecodingKey::from_ec_der(raw), Algorithm::ES256),
                "1.3.132.0.34" => (DecodingKey::from_ec_der(raw), Algorithm::ES384),
                other => {
                    return Err(RpError::Algorithm(format!("x5c leaf key on curve {other}")));
                }
            }
        }
        other => return Err(RpError::Algorithm(format!("x5c leaf key type {other}"))),
    };
    let serial = vouch_core::revocation::serial_target(cert.raw_serial());
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok((key, alg, serial, not_after))
}

/// Verify `token` (compact JWS, `typ` equal to `typ`) signed by a verifier replica certified
/// by `bundle`, with the chain checked as of `at` (Unix seconds).
pub(crate) fn verify(
    token: &str,
    typ: &str,
    bundle: &SpiffeVerifier,
    at: u64,
) -> Result<Signed, RpError> {
    let signed = signer(token, typ, bundle, at)?;
    let (h, rest) = token.split_once('.').unwrap_or_default();
    let (p, sig) = rest.split_once('.').unwrap_or_default();
    let signing_input = &token[..h.len() + 1 + p.len()];
    let ok = jsonwebtoken::crypto::verify(sig, signing_input.as_bytes(), &signed.key, signed.alg)
        .map_err(|_| RpError::Signature)?;
    if !ok {
        return Err(RpError::Signature);
    }
    Ok(signed)
}

/// The certified signer of `token`: the header checks and the chain, not the signature (the
/// caller checks it with [`Signed::key`], once).
pub(crate) fn signer(
    token: &str,
    typ: &str,
    bundle: &SpiffeVerifier,
    at: u64,
) -> Result<Signed, RpError> {
    if token.len() > MAX_JWS {
        return Err(malformed(format!("longer than {MAX_JWS} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS (three dot-separated parts)"));
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("header is not base64url JSON"))?;
    if header.typ.as_deref() != Some(typ) {
        return Err(malformed(format!(
            "typ is {:?}, expected {typ:?}",
            header.typ.unwrap_or_default()
        )));
    }
    let x5c = header
        .x5c
        .ok_or_else(|| malformed("no x5c: the signer's certificate is missing"))?;
    if x5c.is_empty() || x5c.len() > MAX_CHAIN {
        return Err(malformed(format!("x5c holds 1-{MAX_CHAIN} certificates")));
    }
    let chain = x5c
        .iter()
        .map(|c| STANDARD.decode(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| malformed("x5c entry is not base64"))?;
    let signer = bundle.verify_signer_chain(&chain, at).map_err(|e| {
        RpError::Keys(format!(
            "signer certificate (a verifier replica's, with EKU documentSigning): {e}"
        ))
    })?;
    if !signer.path().starts_with(VERIFIER_ID_PREFIX) {
        return Err(RpError::Keys(format!(
            "{signer} is not a verifier replica (expected a path under {VERIFIER_ID_PREFIX})"
        )));
    }
    let (key, alg, serial, not_after) = leaf_key(&chain[0])?;
    if header.alg != format!("{alg:?}") {
        return Err(RpError::Algorithm(format!(
            "{} (the certified key is {alg:?})",
            header.alg
        )));
    }
    if sig.is_empty() {
        return Err(RpError::Signature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| malformed("payload is not base64url"))?;
    Ok(Signed {
        key,
        alg,
        signer,
        serial,
        not_after,
        payload,
    })
}

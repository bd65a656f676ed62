//! JWS JSON General Serialization (RFC 7515 §7.2.1) of a result signed twice: the classical
//! signature (EdDSA or ES256, or the quorum's FROST Ed25519) and an ML-DSA-65 one (FIPS 204,
//! JOSE algorithm name `ML-DSA-65` of RFC 9964).
//!
//! ```json
//! {"payload": "<claims, base64url>",
//!  "signatures": [
//!    {"protected": "<classical header>", "signature": "<classical signature>"},
//!    {"protected": "<{\"alg\":\"ML-DSA-65\",\"kid\":…,\"typ\":…}>", "signature": "<ML-DSA>"}]}
//! ```
//!
//! Each signature covers its own `protected` header and the shared payload, as RFC 7515 says
//! (`ASCII(protected) || '.' || ASCII(payload)`), so the first signature with the payload is
//! exactly the compact JWT Vouch has always issued ([`GeneralJws::compact`]): any JWT library
//! verifies the classical half, and the post-quantum half adds a signature without changing it.
//! No code here does cryptography; the verifier signs and `vouch-rp` checks.

use serde::{Deserialize, Serialize};

/// The JOSE algorithm name of ML-DSA-65 (RFC 9964, draft-ietf-cose-dilithium).
pub const ML_DSA_65: &str = "ML-DSA-65";

/// The JWK key type of ML-DSA public keys (`AKP`, "Algorithm Key Pair", RFC 9964): the key is
/// `pub` (base64url of the raw FIPS 204 public key) and the JWK must name its `alg`.
pub const AKP: &str = "AKP";

/// Longest serialization parsed, bytes: a result with certificates and two signatures fits
/// well within it (an ML-DSA-65 signature is 3,309 bytes, 4,412 in base64url).
pub const MAX_GENERAL_JWS: usize = 96 * 1024;

/// Most signatures parsed in one serialization.
const MAX_SIGNATURES: usize = 4;

/// One signature of a [`GeneralJws`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwsSignature {
    /// The protected header, base64url of its JSON.
    pub protected: String,
    /// The signature, base64url.
    pub signature: String,
}

/// A JWS in the general JSON serialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralJws {
    /// The payload, base64url.
    pub payload: String,
    /// The signatures, the classical one first.
    pub signatures: Vec<JwsSignature>,
}

/// Why a serialization was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not a compact JWS (three base64url parts).
    #[error("not a compact JWS: {0}")]
    Compact(&'static str),
    /// Not a JWS JSON serialization this code reads.
    #[error("not a JWS JSON serialization: {0}")]
    Json(String),
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl GeneralJws {
    /// Split a compact JWS into the general serialization with its one signature.
    pub fn from_compact(compact: &str) -> Result<Self, JwsError> {
        let mut parts = compact.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Compact("not three parts"));
        };
        if h.is_empty() || s.is_empty() || ![h, p, s].iter().all(|x| is_b64url(x)) {
            return Err(JwsError::Compact("a part is empty or not base64url"));
        }
        Ok(Self {
            payload: p.to_string(),
            signatures: vec![JwsSignature {
                protected: h.to_string(),
                signature: s.to_string(),
            }],
        })
    }

    /// Parse the JSON serialization (bounded: [`MAX_GENERAL_JWS`] bytes, at most four
    /// signatures, every part base64url; no unprotected `header`).
    pub fn parse(json: &str) -> Result<Self, JwsError> {
        if json.len() > MAX_GENERAL_JWS {
            return Err(JwsError::Json(format!(
                "longer than {MAX_GENERAL_JWS} bytes"
            )));
        }
        let jws: Self = serde_json::from_str(json).map_err(|e| JwsError::Json(e.to_string()))?;
        if jws.signatures.is_empty() || jws.signatures.len() > MAX_SIGNATURES {
            return Err(JwsError::Json(format!(
                "{} signatures (1 to {MAX_SIGNATURES} accepted)",
                jws.signatures.len()
            )));
        }
        let all = std::iter::once(&jws.payload).chain(
            jws.signatures
                .iter()
                .flat_map(|s| [&s.protected, &s.signature]),
        );
        for part in all {
            if !is_b64url(part) {
                return Err(JwsError::Json("a part is not base64url".into()));
            }
        }
        if jws
            .signatures
            .iter()
            .any(|s| s.protected.is_empty() || s.signature.is_empty())
        {
            return Err(JwsError::Json(
                "an empty protected header or signature".into(),
            ));
        }
        Ok(jws)
    }

    /// The bytes signature `i` covers: `protected.payload`.
    pub fn signing_input(&self, i: usize) -> Option<String> {
        self.signatures
            .get(i)
            .map(|s| format!("{}.{}", s.protected, self.payload))
    }

    /// Signature `i` with the payload as a compact JWS (`protected.payload.signature`).
    pub fn compact(&self, i: usize) -> Option<String> {
        self.signatures
            .get(i)
            .map(|s| format!("{}.{}.{}", s.protected, self.payload, s.signature))
    }

    /// The serialization as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing strings and vectors of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trips_through_the_general_serialization() {
        let c = "eyJhbGciOiJFZERTQSJ9.eyJhIjoxfQ.c2ln";
        let mut g = GeneralJws::from_compact(c).unwrap();
        assert_eq!(g.compact(0).as_deref(), Some(c));
        g.signatures.push(JwsSignature {
            protected: "eyJhbGciOiJNTC1EU0EtNjUifQ".into(),
            signature: "cHE".into(),
        });
        let back = GeneralJws::parse(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert_eq!(
            back.signing_input(1).as_deref(),
            Some("eyJhbGciOiJNTC1EU0EtNjUifQ.eyJhIjoxfQ")
        );
        assert_eq!(back.compact(2), None);
    }

    #[test]
    fn refuses_what_it_does_not_read() {
        assert!(GeneralJws::from_compact("a.b").is_err());
        assert!(GeneralJws::from_compact("a.b.c.d").is_err());
        assert!(GeneralJws::from_compact("a+.b.c").is_err());
        assert!(GeneralJws::parse("{}").is_err());
        assert!(GeneralJws::parse(r#"{"payload":"e30","signatures":[]}"#).is_err());
        // An unprotected header could carry an unsigned `kid` or `alg`: refused.
        assert!(
            GeneralJws::parse(
                r#"{"payload":"e30","signatures":[{"protected":"e30","header":{},"signature":"AA"}]}"#
            )
            .is_err()
        );
        assert!(
            GeneralJws::parse(
                r#"{"payload":"e3=","signatures":[{"protected":"e30","signature":"AA"}]}"#
            )
            .is_err()
        );
        let big = format!(
            r#"{{"payload":"{}","signatures":[{{"protected":"e30","signature":"AA"}}]}}"#,
            "A".repeat(MAX_GENERAL_JWS)
        );
        assert!(GeneralJws::parse(&big).is_err());
    }
}

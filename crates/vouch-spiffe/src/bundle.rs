//! SPIFFE trust bundles (SPIFFE Trust Domain and Bundle standard §4): a JWKS whose keys have
//! `use` `x509-svid` (an `x5c` holding one authority certificate) or `jwt-svid` (a JWT-SVID
//! signing key with a `kid`), with `spiffe_sequence` and `spiffe_refresh_hint`; and the
//! Workload API's form, concatenated DER authorities.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::{SpiffeError, TrustDomain, split_der_certificates};

/// Largest bundle document read, bytes.
pub const MAX_BUNDLE: usize = 1024 * 1024;
/// Most keys read from one bundle.
const MAX_KEYS: usize = 256;

fn b(m: impl Into<String>) -> SpiffeError {
    SpiffeError::Bundle(m.into())
}

/// The authorities of one trust domain: X.509 authorities (DER) that X.509-SVIDs chain to,
/// and JWT authorities (JWKs by `kid`) that sign JWT-SVIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    x509_authorities: Vec<Vec<u8>>,
    jwt_authorities: BTreeMap<String, serde_json::Value>,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
}

impl TrustBundle {
    /// A bundle of `trust_domain` holding these X.509 authorities (DER) and no JWT authority.
    pub fn new(trust_domain: TrustDomain, x509_authorities: Vec<Vec<u8>>) -> Self {
        Self {
            trust_domain,
            x509_authorities,
            jwt_authorities: BTreeMap::new(),
            sequence: None,
            refresh_hint: None,
        }
    }

    /// The Workload API's form: the authorities as concatenated DER certificates.
    pub fn from_der(trust_domain: TrustDomain, der: &[u8]) -> Result<Self, SpiffeError> {
        if der.len() > MAX_BUNDLE {
            return Err(b(format!("longer than {MAX_BUNDLE} bytes")));
        }
        Ok(Self::new(trust_domain, split_der_certificates(der)?))
    }

    /// Parse a SPIFFE bundle document (JWKS). Keys with another `use` are skipped, as the
    /// standard asks; an `x509-svid` key must hold exactly one certificate in `x5c`, and a
    /// `jwt-svid` key must have a `kid`.
    pub fn from_jwks(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, SpiffeError> {
        if json.len() > MAX_BUNDLE {
            return Err(b(format!("longer than {MAX_BUNDLE} bytes")));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| b(format!("not JSON: {e}")))?;
        let keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| b("no \"keys\" array"))?;
        if keys.len() > MAX_KEYS {
            return Err(b(format!("more than {MAX_KEYS} keys")));
        }
        let mut bundle = Self::new(trust_domain, Vec::new());
        for (i, k) in keys.iter().enumerate() {
            match k.get("use").and_then(|u| u.as_str()) {
                Some("x509-svid") => {
                    let x5c = k
                        .get("x5c")
                        .and_then(|c| c.as_array())
                        .ok_or_else(|| b(format!("key {i}: x509-svid without x5c")))?;
                    let [one] = x5c.as_slice() else {
                        return Err(b(format!(
                            "key {i}: an x509-svid key holds exactly one certificate"
                        )));
                    };
                    let der = one
                        .as_str()
                        .and_then(|c| STANDARD.decode(c).ok())
                        .ok_or_else(|| b(format!("key {i}: x5c is not base64")))?;
                    let certs = split_der_certificates(&der)?;
                    if certs.len() != 1 {
                        return Err(b(format!("key {i}: x5c entry is not one certificate")));
                    }
                    bundle.x509_authorities.extend(certs);
                }
                Some("jwt-svid") => {
                    let kid = k
                        .get("kid")
                        .and_then(|c| c.as_str())
                        .filter(|c| !c.is_empty())
                        .ok_or_else(|| b(format!("key {i}: jwt-svid without kid")))?;
                    bundle.jwt_authorities.insert(kid.to_string(), k.clone());
                }
                _ => {}
            }
        }
        bundle.sequence = doc.get("spiffe_sequence").and_then(|s| s.as_u64());
        bundle.refresh_hint = doc
            .get("spiffe_refresh_hint")
            .and_then(|s| s.as_u64())
            .map(Duration::from_secs);
        Ok(bundle)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The X.509 authorities, DER.
    pub fn x509_authorities(&self) -> &[Vec<u8>] {
        &self.x509_authorities
    }

    /// The JWT authorities (JWKs) by `kid`.
    pub fn jwt_authorities(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.jwt_authorities
    }

    /// `spiffe_sequence`, if the document had one.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// `spiffe_refresh_hint`: how often the publisher asks to be polled.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A self-signed CA certificate (DER).
    fn ca() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn doc(keys: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"keys": keys, "spiffe_sequence": 7, "spiffe_refresh_hint": 30})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_bundle_document_reads_both_kinds_of_authority() {
        let (a, b) = (ca(), ca());
        let jwk = serde_json::json!({"use": "jwt-svid", "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let bundle = TrustBundle::from_jwks(
            td(),
            &doc(serde_json::json!([
                {"use": "x509-svid", "kty": "EC", "x5c": [STANDARD.encode(&a)]},
                {"use": "x509-svid", "kty": "EC", "x5c": [STANDARD.encode(&b)]},
                jwk,
                {"use": "something-else", "kty": "EC"},
            ])),
        )
        .unwrap();
        assert_eq!(bundle.x509_authorities(), &[a.clone(), b.clone()]);
        assert_eq!(bundle.jwt_authorities().keys().collect::<Vec<_>>(), ["k1"]);
        assert_eq!(bundle.sequence(), Some(7));
        assert_eq!(bundle.refresh_hint(), Some(Duration::from_secs(30)));
        // The Workload API's form: the same authorities, concatenated.
        let der = [a.clone(), b.clone()].concat();
        assert_eq!(
            TrustBundle::from_der(td(), &der)
                .unwrap()
                .x509_authorities(),
            &[a, b]
        );
    }

    #[test]
    fn malformed_bundles_are_refused() {
        let a = ca();
        let refused = |keys: serde_json::Value| {
            TrustBundle::from_jwks(td(), &doc(keys)).expect_err("accepted")
        };
        // Two certificates in one x5c, none, a non-base64 one, a flipped byte in the DER.
        refused(
            serde_json::json!([{"use": "x509-svid", "x5c": [STANDARD.encode(&a), STANDARD.encode(&a)]}]),
        );
        refused(serde_json::json!([{"use": "x509-svid", "x5c": []}]));
        refused(serde_json::json!([{"use": "x509-svid", "x5c": ["%%%"]}]));
        let mut bad = a.clone();
        bad[1] ^= 0x01;
        refused(serde_json::json!([{"use": "x509-svid", "x5c": [STANDARD.encode(&bad)]}]));
        // Two certificates concatenated inside one x5c entry.
        refused(
            serde_json::json!([{"use": "x509-svid", "x5c": [STANDARD.encode([a.clone(), a.clone()].concat())]}]),
        );
        // A jwt-svid key without kid.
        refused(serde_json::json!([{"use": "jwt-svid", "kty": "EC"}]));
        // Not a JWKS at all; too big.
        assert!(TrustBundle::from_jwks(td(), b"[]").is_err());
        assert!(TrustBundle::from_jwks(td(), &vec![b' '; MAX_BUNDLE + 1]).is_err());
        // Concatenated DER with trailing garbage.
        let mut der = a.clone();
        der.push(0x30);
        assert!(TrustBundle::from_der(td(), &der).is_err());
    }
}

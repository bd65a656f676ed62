//! JWT-SVIDs (JWT-SVID standard): compact JWS, ES256, `sub` = SPIFFE ID, `aud` and `exp`
//! required, `kid` in the header. Validation against a trust bundle's `jwt-svid` keys (the
//! signing side is `vouch-identity`'s).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

use crate::{SpiffeError, SpiffeId, TrustDomain};

const MAX_TOKEN: usize = 16 * 1024;

fn j(m: impl Into<String>) -> SpiffeError {
    SpiffeError::Jwt(m.into())
}

/// The claims of a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSvidClaims {
    /// The SPIFFE ID.
    pub sub: String,
    /// Audiences (at least one).
    pub aud: Vec<String>,
    /// Expiry.
    pub exp: u64,
    /// Issue time.
    pub iat: u64,
}

/// Validates JWT-SVIDs against the `jwt-svid` keys of a trust bundle.
#[derive(Debug, Clone)]
pub struct JwtSvidValidator {
    trust_domain: TrustDomain,
    keys: HashMap<String, Vec<u8>>,
}

impl JwtSvidValidator {
    /// From a SPIFFE bundle (JWKS): every key with `use: jwt-svid`, P-256, and a `kid`.
    pub fn from_bundle(trust_domain: &TrustDomain, bundle: &Value) -> Result<Self, SpiffeError> {
        let mut keys = HashMap::new();
        for k in bundle["keys"].as_array().into_iter().flatten() {
            if k["use"] != "jwt-svid" || k["kty"] != "EC" || k["crv"] != "P-256" {
                continue;
            }
            let (Some(kid), Some(x), Some(y)) =
                (k["kid"].as_str(), k["x"].as_str(), k["y"].as_str())
            else {
                continue;
            };
            let (x, y) = (
                B64.decode(x).map_err(|_| j("bad x"))?,
                B64.decode(y).map_err(|_| j("bad y"))?,
            );
            if x.len() != 32 || y.len() != 32 {
                continue;
            }
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            keys.insert(kid.to_string(), point);
        }
        Ok(Self {
            trust_domain: trust_domain.clone(),
            keys,
        })
    }

    /// Validate `token` for `audience` at `now`.
    pub fn validate(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<(SpiffeId, JwtSvidClaims), SpiffeError> {
        if token.len() > MAX_TOKEN {
            return Err(j("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(j("not a compact JWS"));
        };
        let header: Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| j("header is not base64url"))?)
                .map_err(|_| j("header is not JSON"))?;
        match header["alg"].as_str() {
            Some("ES256") => {}
            Some(other) => return Err(j(format!("algorithm {other} is not accepted"))),
            None => return Err(j("no alg")),
        }
        let kid = header["kid"].as_str().ok_or_else(|| j("no kid"))?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| j(format!("no jwt-svid key {kid:?} in the bundle")))?;
        let sig = B64.decode(s).map_err(|_| j("signature is not base64url"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| j("signature does not verify"))?;
        let raw: Value =
            serde_json::from_slice(&B64.decode(c).map_err(|_| j("claims are not base64url"))?)
                .map_err(|_| j("claims are not JSON"))?;
        let aud: Vec<String> = match &raw["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return Err(j("aud is required")),
        };
        let exp = raw["exp"].as_u64().ok_or_else(|| j("exp is required"))?;
        let sub = raw["sub"].as_str().ok_or_else(|| j("sub is required"))?;
        let id = SpiffeId::parse(sub)?;
        if id.trust_domain() != &self.trust_domain {
            return Err(j(format!(
                "{id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        if !aud.iter().any(|a| a == audience) {
            return Err(j(format!("audience {audience:?} is not in {aud:?}")));
        }
        if now >= exp {
            return Err(j("expired"));
        }
        let claims = JwtSvidClaims {
            sub: sub.to_string(),
            aud,
            exp,
            iat: raw["iat"].as_u64().unwrap_or(0),
        };
        Ok((id, claims))
    }
}

//! JWT-SVIDs (JWT-SVID standard): compact JWS, ES256, `sub` = SPIFFE ID, `aud` and `exp`
//! required, `kid` in the header.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::{IdentityError, SpiffeId, TrustDomain};

const MAX_TOKEN: usize = 16 * 1024;

fn j(m: impl Into<String>) -> IdentityError {
    IdentityError::Jwt(m.into())
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

/// Signs JWT-SVIDs with an ECDSA P-256 key.
pub struct JwtSvidSigner {
    kid: String,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for JwtSvidSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvidSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtSvidSigner {
    /// A new key.
    pub fn generate() -> Result<Self, IdentityError> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|e| j(e.to_string()))?;
        let kid = hex::encode(
            &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref())
                .as_ref()[..8],
        );
        Ok(Self { kid, key })
    }

    /// From a PKCS#8 document.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, IdentityError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| j(format!("JWT-SVID key: {e}")))?;
        let kid = hex::encode(
            &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref())
                .as_ref()[..8],
        );
        Ok(Self { kid, key })
    }

    /// Load the key at `path`, or create it (mode 0600).
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, IdentityError> {
        if let Ok(der) = std::fs::read(path) {
            return Self::from_pkcs8(&der);
        }
        let fresh = Self::generate()?;
        let der = fresh.key.to_pkcs8v1().map_err(|e| j(e.to_string()))?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| j(e.to_string()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| j(format!("{}: {e}", path.display())))?;
        f.write_all(der.as_ref()).map_err(|e| j(e.to_string()))?;
        Self::from_pkcs8(der.as_ref())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (for the `jwt-svid` part of the bundle).
    pub fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid,
               "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }

    /// Sign a JWT-SVID for `id`, for `audience`, valid `ttl` seconds from `now`.
    pub fn sign(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: u64,
        now: u64,
    ) -> Result<String, IdentityError> {
        if audience.is_empty() {
            return Err(j("a JWT-SVID needs at least one audience"));
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = JwtSvidClaims {
            sub: id.to_string(),
            aud: audience.to_vec(),
            exp: now + ttl,
            iat: now,
        };
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&claims).map_err(|e| j(e.to_string()))?)
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|e| j(e.to_string()))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

/// Validates JWT-SVIDs against the `jwt-svid` keys of a trust bundle.
#[derive(Debug, Clone)]
pub struct JwtSvidValidator {
    trust_domain: TrustDomain,
    keys: HashMap<String, Vec<u8>>,
}

impl JwtSvidValidator {
    /// From a SPIFFE bundle (JWKS): every key with `use: jwt-svid`, P-256, and a `kid`.
    pub fn from_bundle(trust_domain: &TrustDomain, bundle: &Value) -> Result<Self, IdentityError> {
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
    ) -> Result<(SpiffeId, JwtSvidClaims), IdentityError> {
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

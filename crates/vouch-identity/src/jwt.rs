//! JWT-SVIDs (JWT-SVID standard): compact JWS, ES256, `sub` = SPIFFE ID, `aud` and `exp`
//! required, `kid` in the header. Signing here; the claims and validation are
//! `vouch-spiffe`'s (relying parties need no signing code).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::{IdentityError, JwtSvidClaims, SpiffeId};

fn j(m: impl Into<String>) -> IdentityError {
    IdentityError::Jwt(m.into())
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

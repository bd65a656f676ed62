//! `gcp_iit`: the Compute Engine instance identity token, a Google-signed JWT (RS256) the
//! agent asks its metadata server for:
//!
//! ```text
//! GET http://metadata/computeMetadata/v1/instance/service-accounts/default/identity
//!     ?audience=<audience>&format=full        (Metadata-Flavor: Google)
//! ```
//!
//! `format=full` puts the `google.compute_engine` claims (project, zone, instance id and
//! name) in the token; a token without them is refused.
//!
//! **Audience and nonce.** The token's `aud` is whatever the agent asked for. With
//! `bind_nonce` (the default) the verifier expects [`gcp_audience`]`(audience, nonce)` —
//! `<audience>#<nonce>`, the verifier's audience and the nonce of this attestation — so a
//! token is good for one attestation only (the agent percent-encodes it in the query).
//! Without it the token is good for any attestation until it expires (an hour): it is then
//! treated as a replayable document and the node is not re-attestable.
//!
//! **Keys.** `keys_dir` holds Google's published signing keys: JSON files in the JWKS form of
//! `https://www.googleapis.com/oauth2/v3/certs` (`{"keys":[{"kid","n","e",...}]}`) or the
//! PEM form of `https://www.googleapis.com/oauth2/v1/certs` (`{"<kid>": "-----BEGIN
//! CERTIFICATE-----..."}`). Google rotates these keys every few weeks; the directory must be
//! refreshed by the operator (see docs/SECURITY.md). Nothing is fetched while verifying.

use crate::cloud::{self, allowed, ident, text};
use crate::{MAX_DATA, NodeAttestError, NodeAttestation, NodeAttestor, NodeIdentity};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use x509_cert::der::Decode as _;

const METHOD: &str = "gcp_iit";

/// The issuers Google writes in instance identity tokens.
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// The attestor's configuration (`method = "gcp_iit"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GcpIitConfig {
    /// Directory of Google's signing keys (JWKS or v1 PEM-certificate JSON files).
    pub keys_dir: PathBuf,
    /// Project ids whose instances may attest; empty: any project.
    #[serde(default)]
    pub allowed_projects: Vec<String>,
    /// Require the token's audience to carry the attestation's nonce
    /// ([`gcp_audience`]); default true.
    #[serde(default = "cloud::yes")]
    pub bind_nonce: bool,
    /// Tolerance for `iat`/`exp`, seconds.
    #[serde(default = "cloud::default_skew")]
    pub max_clock_skew_secs: u64,
}

/// The audience an agent requests its identity token for when the verifier binds nonces:
/// `<audience>#<nonce>`.
pub fn gcp_audience(audience: &str, nonce: &str) -> String {
    format!("{audience}#{nonce}")
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    email: Option<String>,
    email_verified: Option<bool>,
    google: Option<Google>,
}

#[derive(Debug, Deserialize)]
struct Google {
    compute_engine: Option<ComputeEngine>,
}

#[derive(Debug, Deserialize)]
struct ComputeEngine {
    project_id: String,
    project_number: Option<u64>,
    zone: String,
    instance_id: String,
    instance_name: String,
}

/// The v3 JWKS form.
#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    n: String,
    e: String,
}

/// Verifies GCE instance identity tokens.
pub struct GcpIitAttestor {
    config: GcpIitConfig,
    keys: BTreeMap<String, DecodingKey>,
}

impl std::fmt::Debug for GcpIitAttestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpIitAttestor")
            .field("config", &self.config)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn cfg_err(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Config {
        method: METHOD,
        why: why.into(),
    }
}

/// The keys of one key file (JWKS or v1 PEM map): `(kid, key)`.
fn keys_of(name: &str, bytes: &[u8]) -> Result<Vec<(String, DecodingKey)>, NodeAttestError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| cfg_err(format!("{name}: {e}")))?;
    let mut out = Vec::new();
    if v.get("keys").is_some() {
        let jwks: Jwks = serde_json::from_value(v).map_err(|e| cfg_err(format!("{name}: {e}")))?;
        for k in jwks.keys {
            if k.kty != "RSA" {
                continue;
            }
            let key = DecodingKey::from_rsa_components(&k.n, &k.e)
                .map_err(|e| cfg_err(format!("{name}: key {}: {e}", k.kid)))?;
            out.push((k.kid, key));
        }
    } else if let Some(map) = v.as_object() {
        for (kid, pem) in map {
            let pem = pem
                .as_str()
                .ok_or_else(|| cfg_err(format!("{name}: {kid} is not a PEM string")))?;
            let der = vouch_x509::pem_certificates(pem)
                .into_iter()
                .next()
                .ok_or_else(|| cfg_err(format!("{name}: {kid} holds no certificate")))?;
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| cfg_err(format!("{name}: {kid}: {e}")))?;
            let pkcs1 = cert
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .as_bytes()
                .ok_or_else(|| cfg_err(format!("{name}: {kid}: key bit string")))?;
            out.push((kid.clone(), DecodingKey::from_rsa_der(pkcs1)));
        }
    } else {
        return Err(cfg_err(format!(
            "{name}: neither a JWKS nor a kid → PEM map"
        )));
    }
    Ok(out)
}

impl GcpIitAttestor {
    /// Build from configuration, reading the key directory.
    pub fn from_config(config: GcpIitConfig) -> Result<Self, NodeAttestError> {
        let files = cloud::read_dir_files(METHOD, &config.keys_dir, &[".json"])?;
        let files = files
            .into_iter()
            .map(|(p, b)| (p.display().to_string(), b))
            .collect();
        Self::with_key_files(config, files)
    }

    /// Build from configuration and key files already read: `(name, JSON)` pairs.
    pub fn with_key_files(
        config: GcpIitConfig,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, NodeAttestError> {
        let mut keys = BTreeMap::new();
        for (name, bytes) in files {
            for (kid, key) in keys_of(&name, &bytes)? {
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err(cfg_err("no Google signing keys configured"));
        }
        for p in &config.allowed_projects {
            ident(METHOD, "allowed project", p).map_err(|e| cfg_err(e.to_string()))?;
        }
        Ok(Self { config, keys })
    }

    /// The key ids configured.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

fn malformed(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Malformed {
        method: METHOD,
        why: why.into(),
    }
}

fn refused(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Refused {
        method: METHOD,
        why: why.into(),
    }
}

impl NodeAttestor for GcpIitAttestor {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn attest(&self, att: &NodeAttestation<'_>, now: u64) -> Result<NodeIdentity, NodeAttestError> {
        if att.data.len() > MAX_DATA {
            return Err(malformed(format!("more than {MAX_DATA} bytes")));
        }
        let token = std::str::from_utf8(att.data)
            .map_err(|_| malformed("token is not UTF-8"))?
            .trim();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| malformed(format!("token header: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(malformed(format!("algorithm {:?}, not RS256", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| malformed("token header has no kid"))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| NodeAttestError::Signature {
                method: METHOD,
                why: format!("signing key {kid:?} is not among the configured Google keys"),
            })?;
        // The signature only; every claim is checked below against `now`, which
        // jsonwebtoken's own time checks (the system clock) cannot take.
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => NodeAttestError::Signature {
                    method: METHOD,
                    why: "the token's signature does not verify".into(),
                },
                _ => malformed(format!("token: {e}")),
            })?
            .claims;
        let cfg = &self.config;
        if !ISSUERS.contains(&claims.iss.as_str()) {
            return Err(refused(format!("issuer {:?} is not Google", claims.iss)));
        }
        let want = if cfg.bind_nonce {
            gcp_audience(att.audience, att.nonce)
        } else {
            att.audience.to_string()
        };
        if claims.aud != want {
            return Err(refused(format!(
                "audience {:?}, expected {want:?}",
                claims.aud
            )));
        }
        let skew = cfg.max_clock_skew_secs;
        if claims.exp.saturating_add(skew) < now {
            return Err(refused(format!("expired at {} (now {now})", claims.exp)));
        }
        if claims.iat > now.saturating_add(skew) {
            return Err(refused(format!("issued in the future ({})", claims.iat)));
        }
        let ce = claims
            .google
            .and_then(|g| g.compute_engine)
            .ok_or_else(|| refused("no google.compute_engine claims (request format=full)"))?;
        let project = ident(METHOD, "project_id", &ce.project_id)?;
        let instance = ident(METHOD, "instance_id", &ce.instance_id)?;
        let zone = ident(METHOD, "zone", &ce.zone)?;
        let name = ident(METHOD, "instance_name", &ce.instance_name)?;
        if !allowed(&cfg.allowed_projects, project) {
            return Err(refused(format!("project {project} is not allowed")));
        }
        let mut selectors = vec![
            format!("{METHOD}:project-id:{project}"),
            format!("{METHOD}:zone:{zone}"),
            format!("{METHOD}:instance-name:{name}"),
            format!("{METHOD}:instance-id:{instance}"),
        ];
        if let Some(n) = ce.project_number {
            selectors.push(format!("{METHOD}:project-number:{n}"));
        }
        if let (Some(email), Some(true)) = (&claims.email, claims.email_verified) {
            selectors.push(format!("{METHOD}:sa:{}", text(METHOD, "email", email)?));
        }
        Ok(NodeIdentity {
            key: format!("{METHOD}:{project}:{instance}"),
            selectors,
            hostname: Some(name.to_string()),
            reattestable: cfg.bind_nonce,
        })
    }
}

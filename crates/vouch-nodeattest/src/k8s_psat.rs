//! `k8s_psat`: a node proves it runs the agent's pod in a Kubernetes cluster with a projected
//! service-account token (PSAT) — a JWT the cluster's API server signed for the agent's pod,
//! audience `vouch`, valid minutes to hours.
//!
//! The token is checked offline against the cluster's service-account issuer keys (the JWKS
//! its OIDC discovery document points at, `/.well-known/openid-configuration` → `jwks_uri`),
//! held in a local file per cluster; [`fetch_jwks`] fetches them over HTTPS at start-up or
//! refresh, never while verifying. Checked: the algorithm (RS256 or ES256 only, the one the
//! key is for: never `none`, never HMAC), the key id, the signature, the issuer, the audience,
//! `exp`/`nbf`/`iat` with a bounded clock skew, and the `kubernetes.io` claims: namespace,
//! service account, the pod the token is bound to and the node it runs on (the node claims are
//! in tokens from Kubernetes 1.30 on). The service account must be on the cluster's allow list
//! (`namespace:name`, as SPIRE's `service_account_allow_list`).
//!
//! The node is `k8s_psat:<cluster>:<node uid>` (the node name when the token has no node uid);
//! a token without node claims is refused, since nothing offline ties it to a machine.
//! Tokens are short-lived, so a node may attest again with a fresh one (`reattestable`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{MAX_DATA, NodeAttestError, NodeAttestation, NodeAttestor, NodeIdentity};

/// The method's name.
pub const METHOD: &str = "k8s_psat";
/// The audience tokens must carry unless a cluster is configured with another.
pub const DEFAULT_AUDIENCE: &str = "vouch";
/// Seconds of clock skew allowed on `exp`, `nbf` and `iat` unless configured otherwise.
pub const DEFAULT_SKEW: u64 = 60;
/// The most bytes of a JWKS (file or HTTPS body) read.
pub const MAX_JWKS: usize = 256 * 1024;
/// The most usable keys one cluster's JWKS may hold.
pub const MAX_KEYS: usize = 64;
/// The most skew that may be configured.
const MAX_SKEW: u64 = 600;

fn malformed(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Malformed {
        method: METHOD,
        why: why.into(),
    }
}

fn signature(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Signature {
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

fn config(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Config {
        method: METHOD,
        why: why.into(),
    }
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.into()
}

/// One cluster as configured (the verifier's `[[node_attestors.k8s_psat.clusters]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsatClusterConfig {
    /// The cluster's name, as selectors and node keys name it.
    pub name: String,
    /// The cluster's service-account issuer (`--service-account-issuer`), exactly as tokens'
    /// `iss` carries it.
    pub issuer: String,
    /// The audience tokens must carry (default `vouch`).
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The issuer's keys: a JWKS file, as its `jwks_uri` serves it (see [`fetch_jwks`]).
    pub jwks: PathBuf,
    /// Service accounts whose tokens may attest a node, as `namespace:name`
    /// (e.g. `vouch:vouch-agent`). Empty: none may.
    pub service_account_allow_list: Vec<String>,
}

fn default_skew() -> u64 {
    DEFAULT_SKEW
}

/// The `k8s_psat` method's settings (the verifier's `[node_attestor.k8s_psat]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sPsatConfig {
    /// The clusters whose agents' tokens are accepted (`[[node_attestor.k8s_psat.clusters]]`).
    pub clusters: Vec<PsatClusterConfig>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat` (default 60, at most 600).
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
}

/// One signing key of a cluster's issuer.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// A cluster whose tokens are accepted: its issuer, audience, allowed service accounts and
/// the issuer's keys.
#[derive(Debug, Clone)]
pub struct PsatCluster {
    name: String,
    issuer: String,
    audience: String,
    allowed: BTreeSet<String>,
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// The usable keys of a JWKS: RSA keys of at least 2048 bits (RS256) and P-256 keys (ES256),
/// meant for signatures. Others (encryption keys, other curves, symmetric keys) are skipped;
/// none usable is an error.
fn parse_jwks(json: &[u8]) -> Result<Vec<Key>, String> {
    if json.len() > MAX_JWKS {
        return Err(format!("JWKS of {} bytes (at most {MAX_JWKS})", json.len()));
    }
    let set: Jwks = serde_json::from_slice(json).map_err(|e| format!("JWKS: {e}"))?;
    let mut keys = Vec::new();
    for k in set.keys {
        if k.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let (alg, key) = match (k.kty.as_str(), k.crv.as_deref()) {
            ("RSA", _) => {
                let (Some(n), Some(e)) = (&k.n, &k.e) else {
                    continue;
                };
                // A modulus under 2048 bits is not a key to trust a node on.
                let Some(nb) = b64url(n) else { continue };
                let bits = (nb.len() * 8)
                    .saturating_sub(nb.first().map_or(8, |b| b.leading_zeros() as usize));
                if bits < 2048 || b64url(e).is_none() {
                    continue;
                }
                match DecodingKey::from_rsa_components(n, e) {
                    Ok(d) => (Algorithm::RS256, d),
                    Err(_) => continue,
                }
            }
            ("EC", Some("P-256")) => {
                let (Some(x), Some(y)) = (&k.x, &k.y) else {
                    continue;
                };
                if b64url(x).map(|v| v.len()) != Some(32) || b64url(y).map(|v| v.len()) != Some(32)
                {
                    continue;
                }
                match DecodingKey::from_ec_components(x, y) {
                    Ok(d) => (Algorithm::ES256, d),
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        // A key published for another algorithm is not used for this one.
        if k.alg.as_deref().is_some_and(|a| a != alg_name(alg)) {
            continue;
        }
        keys.push(Key {
            kid: k.kid,
            alg,
            key,
        });
        if keys.len() > MAX_KEYS {
            return Err(format!("JWKS holds more than {MAX_KEYS} usable keys"));
        }
    }
    if keys.is_empty() {
        return Err("JWKS holds no RS256 (RSA >= 2048 bits) or ES256 (P-256) signing key".into());
    }
    Ok(keys)
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::ES256 => "ES256",
        _ => "RS256",
    }
}

impl PsatCluster {
    /// A cluster named `name` whose service-account issuer is `issuer`, accepting tokens for
    /// `audience` from the service accounts in `allow_list` (`namespace:name`), signed by a
    /// key of `jwks` (a JWKS document's bytes).
    pub fn new(
        name: &str,
        issuer: &str,
        audience: &str,
        allow_list: &[String],
        jwks: &[u8],
    ) -> Result<Self, NodeAttestError> {
        if name.is_empty() || name.contains(':') || name.len() > 253 {
            return Err(config(format!(
                "cluster name {name:?}: 1 to 253 characters, no ':'"
            )));
        }
        if issuer.is_empty() || audience.is_empty() {
            return Err(config(format!(
                "cluster {name}: an issuer and an audience are needed"
            )));
        }
        let mut allowed = BTreeSet::new();
        for sa in allow_list {
            match sa.split_once(':') {
                Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains(':') => {
                    allowed.insert(sa.clone());
                }
                _ => {
                    return Err(config(format!(
                        "cluster {name}: service account {sa:?} is not namespace:name"
                    )));
                }
            }
        }
        let keys = parse_jwks(jwks).map_err(|e| config(format!("cluster {name}: {e}")))?;
        Ok(Self {
            name: name.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            allowed,
            keys,
        })
    }

    /// The cluster as configured, its JWKS read from its file (at most [`MAX_JWKS`] bytes).
    pub fn from_config(c: &PsatClusterConfig) -> Result<Self, NodeAttestError> {
        let jwks = read_bounded(&c.jwks)
            .map_err(|e| config(format!("cluster {}: {}: {e}", c.name, c.jwks.display())))?;
        Self::new(
            &c.name,
            &c.issuer,
            &c.audience,
            &c.service_account_allow_list,
            &jwks,
        )
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn read_bounded(p: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    std::fs::File::open(p)?
        .take(MAX_JWKS as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_JWKS {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_JWKS} bytes"
        )));
    }
    Ok(out)
}

/// The `k8s_psat` attestor: the clusters whose agents' tokens are accepted.
#[derive(Debug, Clone)]
pub struct K8sPsat {
    clusters: Vec<PsatCluster>,
    skew: u64,
}

impl K8sPsat {
    /// An attestor accepting tokens from `clusters` (at least one; names and issuers unique),
    /// with [`DEFAULT_SKEW`].
    pub fn new(clusters: Vec<PsatCluster>) -> Result<Self, NodeAttestError> {
        if clusters.is_empty() {
            return Err(config("no cluster configured"));
        }
        let mut names = BTreeSet::new();
        let mut issuers = BTreeSet::new();
        for c in &clusters {
            if !names.insert(c.name.as_str()) {
                return Err(config(format!("cluster {} configured twice", c.name)));
            }
            if !issuers.insert(c.issuer.as_str()) {
                return Err(config(format!(
                    "issuer {} configured for two clusters",
                    c.issuer
                )));
            }
        }
        Ok(Self {
            clusters,
            skew: DEFAULT_SKEW,
        })
    }

    /// The attestor as configured, each cluster's JWKS read from its file.
    pub fn from_config(cfg: &K8sPsatConfig) -> Result<Self, NodeAttestError> {
        Self::new(
            cfg.clusters
                .iter()
                .map(PsatCluster::from_config)
                .collect::<Result<_, _>>()?,
        )?
        .with_skew(cfg.max_clock_skew_secs)
    }

    /// The attestor from the method's settings as the verifier's configuration holds them
    /// (a JSON value of [`K8sPsatConfig`]'s shape).
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, NodeAttestError> {
        let cfg = K8sPsatConfig::deserialize(settings).map_err(|e| config(e.to_string()))?;
        Self::from_config(&cfg)
    }

    /// Allow `secs` of clock skew on `exp`, `nbf` and `iat` (at most 600).
    pub fn with_skew(mut self, secs: u64) -> Result<Self, NodeAttestError> {
        if secs > MAX_SKEW {
            return Err(config(format!("skew of {secs} s (at most {MAX_SKEW})")));
        }
        self.skew = secs;
        Ok(self)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Named {
    name: String,
    uid: Option<String>,
}

#[derive(Deserialize)]
struct KubeClaims {
    namespace: String,
    serviceaccount: Named,
    pod: Option<Named>,
    node: Option<Named>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Audience,
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
    #[serde(rename = "kubernetes.io")]
    kube: Option<KubeClaims>,
}

#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

fn decode_part<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &str,
) -> Result<T, NodeAttestError> {
    let bytes = b64url(part).ok_or_else(|| malformed(format!("{what}: not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

/// A Kubernetes name or uid as selectors carry it: non-empty, bounded, printable, no spaces.
fn field<'a>(v: &'a str, what: &str) -> Result<&'a str, NodeAttestError> {
    if v.is_empty() || v.len() > 253 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refused(format!("{what} {v:?} is not a Kubernetes name")));
    }
    Ok(v)
}

impl NodeAttestor for K8sPsat {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn attest(&self, att: &NodeAttestation<'_>, now: u64) -> Result<NodeIdentity, NodeAttestError> {
        if att.data.len() > MAX_DATA {
            return Err(malformed(format!(
                "token of {} bytes (at most {MAX_DATA})",
                att.data.len()
            )));
        }
        let token = std::str::from_utf8(att.data)
            .map_err(|_| malformed("token is not UTF-8"))?
            .trim_ascii();
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "not a JWS compact token (three dot-separated parts)",
            ));
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(malformed(
                "a part of the token is empty (unsigned tokens are refused)",
            ));
        }
        let header: Header = decode_part(h, "header")?;
        // The algorithm is the key's, never the token's choice: RS256 for RSA keys, ES256 for
        // P-256 keys. `none` and HMAC (a public key used as a shared secret) never verify.
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(signature(format!(
                    "algorithm {other:?} is not accepted (RS256, ES256)"
                )));
            }
        };
        if header.crit.is_some() {
            return Err(signature("critical header parameters are not understood"));
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(malformed(format!("token type {:?}", header.typ)));
        }
        // Which cluster: the one whose issuer the (not yet verified) token names; its keys
        // then decide.
        let iss: Issuer = decode_part(p, "claims")?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.issuer == iss.iss)
            .ok_or_else(|| {
                refused(format!(
                    "issuer {:?} is not a configured cluster's",
                    iss.iss
                ))
            })?;
        let candidates: Vec<&Key> = cluster
            .keys
            .iter()
            .filter(|k| k.alg == alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(signature(format!(
                "cluster {}: no {} key with key id {:?}",
                cluster.name,
                alg_name(alg),
                header.kid
            )));
        }
        let mut v = Validation::new(alg);
        // Times, audience and issuer are checked below, against the caller's clock.
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let verified = candidates
            .iter()
            .any(|k| jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &v).is_ok());
        if !verified {
            return Err(signature(format!(
                "cluster {}: the signature does not verify with the issuer's key {:?}",
                cluster.name, header.kid
            )));
        }
        let claims: Claims = decode_part(p, "claims")?;
        if claims.iss != cluster.issuer {
            return Err(refused(format!("issuer {:?}", claims.iss)));
        }
        let aud_ok = match &claims.aud {
            Audience::One(a) => *a == cluster.audience,
            Audience::Many(v) => v.contains(&cluster.audience),
        };
        if !aud_ok {
            return Err(refused(format!(
                "the token is not for audience {:?}",
                cluster.audience
            )));
        }
        let skew = self.skew;
        if now >= claims.exp.saturating_add(skew) {
            return Err(refused(format!(
                "the token expired at {} (now {now})",
                claims.exp
            )));
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(skew) < nbf
        {
            return Err(refused(format!(
                "the token is not valid before {nbf} (now {now})"
            )));
        }
        if let Some(iat) = claims.iat
            && now.saturating_add(skew) < iat
        {
            return Err(refused(format!(
                "the token was issued in the future ({iat}, now {now})"
            )));
        }
        let kube = claims
            .kube
            .ok_or_else(|| refused("no kubernetes.io claims: not a service-account token"))?;
        let ns = field(&kube.namespace, "namespace")?;
        let sa = field(&kube.serviceaccount.name, "service account")?;
        if let Some(sub) = &claims.sub
            && *sub != format!("system:serviceaccount:{ns}:{sa}")
        {
            return Err(refused(format!(
                "subject {sub:?} is not service account {ns}:{sa}"
            )));
        }
        if !cluster.allowed.contains(&format!("{ns}:{sa}")) {
            return Err(refused(format!(
                "service account {ns}:{sa} is not allowed to attest nodes of cluster {}",
                cluster.name
            )));
        }
        let pod = kube
            .pod
            .ok_or_else(|| refused("the token is not bound to a pod (a projected token is)"))?;
        let pod_name = field(&pod.name, "pod name")?;
        let pod_uid = pod
            .uid
            .as_deref()
            .ok_or_else(|| refused("the token's pod has no uid"))
            .and_then(|u| field(u, "pod uid"))?;
        let node = kube.node.ok_or_else(|| {
            refused("the token names no node (projected tokens carry one from Kubernetes 1.30)")
        })?;
        let node_name = field(&node.name, "node name")?;
        let node_uid = node
            .uid
            .as_deref()
            .map(|u| field(u, "node uid"))
            .transpose()?;
        let c = &cluster.name;
        let mut selectors = vec![
            format!("{METHOD}:cluster:{c}"),
            format!("{METHOD}:agent_ns:{ns}"),
            format!("{METHOD}:agent_sa:{sa}"),
            format!("{METHOD}:agent_pod_name:{pod_name}"),
            format!("{METHOD}:agent_pod_uid:{pod_uid}"),
            format!("{METHOD}:agent_node_name:{node_name}"),
        ];
        if let Some(u) = node_uid {
            selectors.push(format!("{METHOD}:agent_node_uid:{u}"));
        }
        Ok(NodeIdentity {
            key: format!("{METHOD}:{c}:{}", node_uid.unwrap_or(node_name)),
            selectors,
            hostname: Some(node_name.to_string()),
            reattestable: true,
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

async fn get_bounded(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, NodeAttestError> {
    let mut res = http
        .get(url)
        .send()
        .await
        .map_err(|e| config(format!("GET {url}: {e}")))?;
    if !res.status().is_success() {
        return Err(config(format!("GET {url}: HTTP {}", res.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| config(format!("GET {url}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_JWKS {
            return Err(config(format!("GET {url}: more than {MAX_JWKS} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fetch the JWKS of the service-account issuer `issuer` (an `https://` URL) by OIDC
/// discovery: `<issuer>/.well-known/openid-configuration`, whose `issuer` must be `issuer`
/// exactly, then its `jwks_uri` (also `https://`). Trusts `ca_pem` (PEM certificates) alone
/// when given, the system roots otherwise. Answers the JWKS bytes, checked to hold a usable
/// key, for the cluster's `jwks` file: verification reads that file, never the network.
pub async fn fetch_jwks(issuer: &str, ca_pem: Option<&[u8]>) -> Result<Vec<u8>, NodeAttestError> {
    if !issuer.starts_with("https://") {
        return Err(config(format!("issuer {issuer}: not an https:// URL")));
    }
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| config(format!("CA certificates: {e}")))?;
        b = b.tls_certs_only(certs);
    }
    let http = b.build().map_err(|e| config(format!("HTTP client: {e}")))?;
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = serde_json::from_slice(&get_bounded(&http, &url).await?)
        .map_err(|e| config(format!("{url}: {e}")))?;
    if doc.issuer != issuer {
        return Err(config(format!(
            "{url} names issuer {:?}, not {issuer:?}",
            doc.issuer
        )));
    }
    if !doc.jwks_uri.starts_with("https://") {
        return Err(config(format!(
            "jwks_uri {}: not an https:// URL",
            doc.jwks_uri
        )));
    }
    let jwks = get_bounded(&http, &doc.jwks_uri).await?;
    parse_jwks(&jwks).map_err(|e| config(format!("{}: {e}", doc.jwks_uri)))?;
    Ok(jwks)
}

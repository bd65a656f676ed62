//! SPIFFE federation, `https_web` profile: the trust bundles of foreign trust domains, fetched
//! from their bundle endpoints over HTTPS (authenticated by Web PKI, or by a configured CA),
//! refreshed at the interval each bundle asks for, kept on disk so a restart serves the last
//! good copy, and handed to workloads with their SVIDs.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vouch_identity::TrustDomain;

/// A foreign trust domain to federate with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedDomain {
    /// Its trust domain name (`partner.example`).
    pub trust_domain: String,
    /// Its SPIFFE bundle endpoint (`https://…/v1/bundle` for a Vouch verifier).
    pub bundle_endpoint: String,
    /// A CA certificate (PEM) to authenticate the endpoint with instead of the system roots.
    #[serde(default)]
    pub endpoint_ca: Option<PathBuf>,
}

/// A foreign trust domain's bundle as last fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedBundle {
    /// X.509 authorities, DER.
    pub x509: Vec<Vec<u8>>,
    /// The `jwt-svid` keys, as a JWKS.
    pub jwks: serde_json::Value,
    /// `spiffe_sequence`.
    pub sequence: u64,
    /// `spiffe_refresh_hint`, seconds.
    pub refresh_hint: u64,
    /// When it was fetched.
    pub fetched_at: u64,
}

/// Largest bundle document accepted.
const MAX_BUNDLE: usize = 1024 * 1024;

/// Parse a SPIFFE bundle (JWKS): `x509-svid` keys with exactly one certificate each, which
/// must parse; `jwt-svid` keys with a `kid`. Anything else is a clear error.
pub fn parse_bundle(doc: &[u8], now: u64) -> Result<FederatedBundle, String> {
    if doc.len() > MAX_BUNDLE {
        return Err(format!("bundle of {} bytes is too large", doc.len()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("bundle is not JSON: {e}"))?;
    let keys = v["keys"].as_array().ok_or("bundle has no \"keys\" array")?;
    let mut x509 = Vec::new();
    let mut jwt = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match k["use"].as_str() {
            Some("x509-svid") => {
                let x5c = k["x5c"].as_array().filter(|a| a.len() == 1).ok_or(format!(
                    "key {i}: an x509-svid key has exactly one x5c entry"
                ))?;
                let der = x5c[0]
                    .as_str()
                    .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                    .ok_or(format!("key {i}: x5c is not base64"))?;
                x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| format!("key {i}: x5c is not a certificate: {e}"))?;
                x509.push(der);
            }
            Some("jwt-svid") => {
                if k["kid"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("key {i}: a jwt-svid key needs a kid"));
                }
                jwt.push(k.clone());
            }
            other => return Err(format!("key {i}: unknown use {other:?}")),
        }
    }
    if x509.is_empty() {
        return Err("bundle has no x509-svid authority".into());
    }
    Ok(FederatedBundle {
        x509,
        jwks: serde_json::json!({ "keys": jwt }),
        sequence: v["spiffe_sequence"].as_u64().unwrap_or(0),
        refresh_hint: v["spiffe_refresh_hint"].as_u64().unwrap_or(300),
        fetched_at: now,
    })
}

fn saved(dir: &Path, td: &TrustDomain) -> PathBuf {
    dir.join(format!("{}.json", td.as_str()))
}

/// Bundles saved by an earlier run.
pub(crate) fn load_saved(
    dir: &Path,
    domains: &[FederatedDomain],
) -> BTreeMap<String, FederatedBundle> {
    let mut out = BTreeMap::new();
    for d in domains {
        let Ok(td) = TrustDomain::parse(&d.trust_domain) else {
            continue;
        };
        if let Some(b) = std::fs::read(saved(dir, &td))
            .ok()
            .and_then(|b| serde_json::from_slice::<FederatedBundle>(&b).ok())
        {
            out.insert(td.id_string(), b);
        }
    }
    out
}

fn client(d: &FederatedDomain) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = &d.endpoint_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_only([cert]);
    }
    b.build().map_err(|e| e.to_string())
}

/// Fetch one bundle.
async fn fetch(
    c: &reqwest::Client,
    d: &FederatedDomain,
    now: u64,
) -> Result<FederatedBundle, String> {
    if !d.bundle_endpoint.starts_with("https://") {
        return Err("the https_web profile needs an https:// bundle endpoint".into());
    }
    let r = c
        .get(&d.bundle_endpoint)
        .send()
        .await
        .map_err(|e| format!("fetching {}: {e}", d.bundle_endpoint))?;
    if !r.status().is_success() {
        return Err(format!("{} answered {}", d.bundle_endpoint, r.status()));
    }
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    parse_bundle(&body, now)
}

/// Keep one foreign bundle fresh for as long as the verifier runs.
pub(crate) async fn maintain(
    state: std::sync::Arc<crate::state::State>,
    d: FederatedDomain,
    dir: PathBuf,
) {
    let td = match TrustDomain::parse(&d.trust_domain) {
        Ok(td) => td,
        Err(e) => {
            tracing::error!("federation with {:?}: {e}", d.trust_domain);
            return;
        }
    };
    let c = match client(&d) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("federation with {td}: {e}");
            return;
        }
    };
    loop {
        let wait = match fetch(&c, &d, crate::state::unix_now()).await {
            Ok(b) => {
                let hint = b.refresh_hint;
                let changed = state
                    .federated
                    .read()
                    .map(|m| {
                        m.get(&td.id_string()).map(|o| (&o.x509, &o.jwks))
                            != Some((&b.x509, &b.jwks))
                    })
                    .unwrap_or(true);
                if changed {
                    tracing::info!(trust_domain = %td, authorities = b.x509.len(), sequence = b.sequence, "federated bundle updated");
                    let _ = std::fs::create_dir_all(&dir);
                    if let Ok(json) = serde_json::to_vec(&b) {
                        let _ = std::fs::write(saved(&dir, &td), json);
                    }
                }
                if let Ok(mut m) = state.federated.write() {
                    m.insert(td.id_string(), b);
                }
                Duration::from_secs(hint.clamp(5, 3600))
            }
            Err(e) => {
                // Keep serving the last good bundle; try again soon.
                tracing::warn!(trust_domain = %td, "federated bundle not refreshed: {e}");
                Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

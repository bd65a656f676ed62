//! An example relying party: a tiny "database" service that answers a query only for callers
//! that present an affirming Vouch attestation result (`Authorization: Bearer <EAR>`).
//!
//! It checks results offline with `vouch-rp` against the verifier's JWKS, fetched at start and
//! refreshed when a result names a key it has not seen (the verifier rotated keys).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};

use vouch_rp::{Requirements, ResultVerifier, RpError};

/// A boxed future returning the JWKS text.
pub type JwksFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send>>;

/// Fetches the verifier's JWKS.
pub type JwksSource = Arc<dyn Fn() -> JwksFuture + Send + Sync>;

/// The service's state.
pub struct Db {
    verifier: RwLock<ResultVerifier>,
    fetch: JwksSource,
    requirements: Requirements,
}

impl Db {
    /// Build the service, fetching the key set once.
    pub async fn new(fetch: JwksSource, requirements: Requirements) -> anyhow::Result<Arc<Self>> {
        let jwks = fetch().await?;
        Ok(Arc::new(Self {
            verifier: RwLock::new(ResultVerifier::from_jwks_json(&jwks)?),
            fetch,
            requirements,
        }))
    }

    fn check(&self, token: &str) -> Result<vouch_rp::VerifiedResult, RpError> {
        let v = self
            .verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.verify(token, &self.requirements)
    }

    async fn verify(&self, token: &str) -> Result<vouch_rp::VerifiedResult, RpError> {
        match self.check(token) {
            Err(RpError::UnknownKey(_)) => {
                // Key rotation: refresh the set once, then decide.
                if let Ok(jwks) = (self.fetch)().await
                    && let Ok(v) = ResultVerifier::from_jwks_json(&jwks)
                {
                    *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = v;
                }
                self.check(token)
            }
            other => other,
        }
    }
}

/// A query.
#[derive(Debug, Deserialize)]
pub struct Query {
    /// Table to read.
    pub table: String,
}

async fn query(
    State(db): State<Arc<Db>>,
    headers: HeaderMap,
    Json(q): Json<Query>,
) -> (StatusCode, Json<Value>) {
    let Some(token) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "present your attestation result: Authorization: Bearer <EAR>"})),
        );
    };
    match db.verify(token.trim()).await {
        Ok(r) => {
            let rows = match q.table.as_str() {
                "customers" => json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]),
                _ => {
                    return (
                        StatusCode::NOT_FOUND,
                        Json(json!({"error": format!("no table {}", q.table)})),
                    );
                }
            };
            tracing::info!(caller = ?r.subject, "query allowed");
            (
                StatusCode::OK,
                Json(json!({"caller": r.subject, "rows": rows})),
            )
        }
        Err(e) => {
            tracing::warn!("query refused: {e}");
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": format!("attestation result refused: {e}")})),
            )
        }
    }
}

/// The service's routes.
pub fn router(db: Arc<Db>) -> Router {
    Router::new().route("/query", post(query)).with_state(db)
}

/// Serve the database over mTLS: only peers presenting an X.509-SVID of `trust_domain` that
/// chains to `bundle` and names one of `allowed` complete the handshake, so every request that
/// reaches a handler comes from an accepted workload. (Requests still present their attestation
/// result as before: identity at the transport, current state in the EAR.)
pub async fn serve_mtls(
    listener: std::net::TcpListener,
    db: Arc<Db>,
    trust_domain: &vouch_identity::TrustDomain,
    bundle: &[Vec<u8>],
    allowed: Vec<vouch_identity::SpiffeId>,
    server_svid: Vec<u8>,
    server_key_pkcs8: Vec<u8>,
) -> anyhow::Result<()> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let verifier =
        vouch_rp::SpiffeVerifier::new(trust_domain, bundle, vouch_rp::AllowedIds::Only(allowed))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_client_cert_verifier(verifier)
    .with_single_cert(
        vec![CertificateDer::from(server_svid)],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key_pkcs8)),
    )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
    axum_server::tls_rustls::from_tcp_rustls(listener, tls)?
        .serve(router(db).into_make_service())
        .await?;
    Ok(())
}

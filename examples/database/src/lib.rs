//! An example relying party: a tiny "database" service that answers a query only for callers
//! that present an affirming Vouch attestation result (`Authorization: Bearer <EAR>`), over
//! mTLS with the service's own X.509-SVID, only to peers with an accepted SPIFFE ID.
//!
//! Everything a relying party needs comes from `vouch-rp`: the verifier's keys from a
//! [`JwksSource`] (fetched over HTTPS, refreshed on rotation), the result checked by
//! [`RequireResultLayer`], the service's SVID and trust bundle from the agent's Workload API
//! through an [`X509Source`] (rotating: the certificate never expires under the service).

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use vouch_rp::{
    AllowedIds, Attested, JwksSource, RequireResultLayer, Requirements, SpiffeId,
    SpiffeTlsListener, TlsPeer, X509Source,
};

/// A query.
#[derive(Debug, Deserialize)]
pub struct Query {
    /// Table to read.
    pub table: String,
}

async fn query(
    Attested(r): Attested,
    Json(q): Json<Query>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if q.table != "customers" {
        let e = json!({"error": format!("no table {}", q.table)});
        return Err((StatusCode::NOT_FOUND, Json(e)));
    }
    tracing::info!(caller = ?r.subject, "query allowed");
    let rows = json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]);
    Ok(Json(json!({"caller": r.subject, "rows": rows})))
}

/// The service's routes: `POST /query`, for callers whose result `keys` and `requirements`
/// accept (401 without one, 403 when it is refused).
pub fn router(keys: JwksSource, requirements: Requirements) -> Router {
    Router::new()
        .route("/query", post(query))
        .layer(RequireResultLayer::new(keys, requirements))
}

/// Serve `app` over mTLS on `listener`, presenting the current SVID of `source` and
/// accepting only peers whose SVID chains to its current bundle and names one of `allowed`.
pub async fn serve_mtls(
    listener: tokio::net::TcpListener,
    app: Router,
    source: &X509Source,
    allowed: Vec<SpiffeId>,
) -> anyhow::Result<()> {
    let mut tls = source.server_config(AllowedIds::Only(allowed))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = SpiffeTlsListener::new(listener, tls.into())?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<TlsPeer>(),
    )
    .await?;
    Ok(())
}

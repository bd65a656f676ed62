//! HTTP routes.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use vouch_core::ErrorKind;
use vouch_core::wire::{
    AttestRequest, EnrollRequest, EntriesRequest, SvidRequest, TpmActivateRequest,
    TpmEnrollRequest, WorkloadSummary,
};

use crate::ApiError;
use crate::auth::{Role, bearer, require};
use crate::state::{State, unix_now};

type S = Arc<State>;

/// JSON body extractor whose rejections are [`ApiError`]s with stable kinds.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::BodyTooLarge,
            "request body exceeds the verifier's body_limit",
        )
    } else {
        ApiError::new(ErrorKind::MalformedRequest, rej.body_text())
    }
}

/// Count refusals by kind on the way out.
async fn count_refusals(
    AxState(st): AxState<S>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let res = next.run(req).await;
    if let Some(kind) = res.extensions().get::<ErrorKind>() {
        st.metrics.refused(*kind);
    }
    res
}

async fn no_route(req: Request) -> Response {
    with_kind(ApiError::new(
        ErrorKind::RouteNotFound,
        format!(
            "no route {}; see /openapi.json",
            vouch_core::clip(req.uri().path(), 200)
        ),
    ))
}

async fn wrong_method(req: Request) -> Response {
    with_kind(ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} does not take {}; see /openapi.json",
            vouch_core::clip(req.uri().path(), 200),
            vouch_core::clip(req.method().as_str(), 20)
        ),
    ))
}

/// The safety net under "every error is the documented JSON error": an error answer that is
/// not JSON (an extractor's plain-text rejection) becomes one, with a kind for its status and
/// its text, clipped, as the message.
async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::BodyTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorKind::RequestTimeout,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthenticated,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Overloaded,
        s if s.is_client_error() => ErrorKind::MalformedRequest,
        _ => ErrorKind::Internal,
    };
    let text = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let mut r = with_kind(ApiError::new(kind, message));
    // Keep the status the route chose.
    *r.status_mut() = status;
    r
}

pub(crate) fn with_kind(e: ApiError) -> Response {
    let kind = e.kind;
    let mut r = e.into_response();
    r.extensions_mut().insert(kind);
    r
}

pub(crate) fn router(state: S) -> Router {
    let limit = state.cfg.body_limit;
    Router::new()
        .route("/v1/challenge", post(challenge))
        .route("/v1/enroll", post(enroll))
        .route("/v1/attest", post(attest))
        .route("/v1/node/attest", post(node_attest))
        .route("/v1/tpm/enroll", post(tpm_enroll))
        .route("/v1/tpm/activate", post(tpm_activate))
        .route("/v1/tpm/join", post(tpm_join))
        .route("/v1/tpm/join/activate", post(tpm_join_activate))
        .route("/v1/svid", post(svid))
        .route("/v1/jwt-svid", post(jwt_svid))
        .route("/v1/admission/validate", post(crate::admission::validate))
        .route("/v1/bundle", get(bundle))
        .route("/v1/federation", get(federation))
        .route("/v1/entries", get(list_entries).post(create_entry))
        .route("/v1/entries/{id}", get(show_entry).delete(delete_entry))
        .route(
            "/v1/entries/sync",
            post(sync_entries).layer(axum::extract::DefaultBodyLimit::max(ENTRIES_BODY_LIMIT)),
        )
        .route("/v1/nodes/{id}/tpm/reenroll", post(reenroll_tpm))
        .route("/v1/revocations", get(revocations).post(create_revocation))
        .route("/v1/quorum/commit", post(quorum_commit))
        .route("/v1/quorum/sign", post(quorum_sign))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .merge(
            // The read-only views: a Bearer token (the dashboard's pages have their own
            // sign-in and sessions, crate::dashboard).
            Router::new()
                .route("/v1/results/{id}", get(result))
                .route("/v1/workloads", get(workloads))
                .route("/v1/workloads/{node}/{name}", get(workload))
                .route("/v1/anomalies", get(crate::anomaly::list))
                .route("/v1/audit/head", get(crate::audit::head))
                .route("/v1/audit/entries", get(crate::audit::entries))
                .route("/v1/audit/proof/inclusion", get(crate::audit::inclusion))
                .route(
                    "/v1/audit/proof/consistency",
                    get(crate::audit::consistency),
                )
                .route("/metrics", get(metrics))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    require_reader,
                )),
        )
        .merge(crate::admin::routes())
        .merge(crate::auth::routes())
        .merge(crate::secrets::routes())
        .merge(crate::timestamp::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_refusals,
        ))
        .layer(axum::middleware::from_fn_with_state(
            std::time::Duration::from_secs(state.cfg.request_timeout.max(1)),
            crate::listener::request_timeout,
        ))
        // The entry watch is a long poll: added after the layers above so that it has its own
        // request timeout (the watch's wait and the usual timeout for the rest) and a small
        // body limit, with the same error bodies and refusal counts.
        .route(
            "/v1/entries/watch",
            post(watch_entries)
                .layer(axum::extract::DefaultBodyLimit::max(ENTRIES_BODY_LIMIT))
                .layer(axum::middleware::from_fn(json_errors))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    count_refusals,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    std::time::Duration::from_secs(
                        state.cfg.request_timeout.max(1) + state.cfg.entries_watch_timeout,
                    ),
                    crate::listener::request_timeout,
                )),
        )
        // Outermost: every answer, the watch's too, has a request id and an access-log line.
        .layer(axum::middleware::from_fn(crate::telemetry::access))
        // The dashboard: HTML pages with their own sign-in, after the JSON error layer.
        .merge(crate::dashboard::router(state.clone()))
        .with_state(state)
}

/// Largest body of an entries request (a key id, two numbers and a signature).
const ENTRIES_BODY_LIMIT: usize = 4096;

async fn watch_entries(
    AxState(st): AxState<S>,
    body: Result<ApiJson<EntriesRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.watch_entries(r).await }).await
}

async fn sync_entries(
    AxState(st): AxState<S>,
    body: Result<ApiJson<EntriesRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.sync_entries(r).await }).await
}

async fn challenge(AxState(st): AxState<S>) -> Response {
    Json(st.challenge()).into_response()
}

pub(crate) fn reply<T: serde::Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => with_kind(e),
    }
}

/// A JSON request handled by `f`: body rejections and `f`'s errors both become error bodies.
async fn handle<T, R, Fut>(body: Result<ApiJson<T>, ApiError>, f: impl FnOnce(T) -> Fut) -> Response
where
    R: serde::Serialize,
    Fut: std::future::Future<Output = Result<R, ApiError>>,
{
    match body {
        Ok(ApiJson(req)) => reply(f(req).await),
        Err(e) => with_kind(e),
    }
}

async fn enroll(
    AxState(st): AxState<S>,
    body: Result<ApiJson<EnrollRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.enroll(r).await }).await
}

async fn node_attest(
    AxState(st): AxState<S>,
    body: Result<ApiJson<vouch_core::wire::NodeAttestRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.attest_node(r).await }).await
}

async fn attest(
    AxState(st): AxState<S>,
    body: Result<ApiJson<AttestRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.attest(r).await }).await
}

async fn tpm_enroll(
    AxState(st): AxState<S>,
    body: Result<ApiJson<TpmEnrollRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.enroll_tpm(r).await }).await
}

async fn tpm_join(
    AxState(st): AxState<S>,
    body: Result<ApiJson<vouch_core::wire::TpmJoinRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.tpm_join(r).await }).await
}

async fn tpm_join_activate(
    AxState(st): AxState<S>,
    body: Result<ApiJson<vouch_core::wire::TpmJoinActivateRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.tpm_join_activate(r).await }).await
}

async fn tpm_activate(
    AxState(st): AxState<S>,
    body: Result<ApiJson<TpmActivateRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.activate_tpm(r).await }).await
}

async fn svid(AxState(st): AxState<S>, body: Result<ApiJson<SvidRequest>, ApiError>) -> Response {
    handle(body, |r| async move { st.issue_svids(r).await }).await
}

async fn jwt_svid(
    AxState(st): AxState<S>,
    body: Result<ApiJson<vouch_core::wire::JwtSvidRequest>, ApiError>,
) -> Response {
    handle(body, |r| async move { st.issue_jwt_svids(r).await }).await
}

async fn federation(AxState(st): AxState<S>) -> Response {
    Json(st.federation()).into_response()
}

async fn bundle(AxState(st): AxState<S>) -> Response {
    reply(st.spiffe_bundle())
}

/// The read-only views need the read token as a Bearer credential (the dashboard's pages sign
/// in with a form and keep a session instead: [`crate::dashboard`]).
async fn require_reader(
    AxState(st): AxState<S>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let bearer = bearer(headers);
    if let Some(t) = bearer {
        match crate::auth::identify(&st, t) {
            Ok(Some(_)) => return next.run(req).await,
            // Another tenant's token: say so.
            Err(e) => return with_kind(e),
            Ok(None) => {}
        }
    }
    with_kind(ApiError::new(
        ErrorKind::Unauthenticated,
        "this view needs the read token (data_dir/keys/read.token) as a Bearer credential \
         (the dashboard signs in at /dashboard/login)",
    ))
}

/// `POST /v1/entries` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    spiffe_id: String,
    selectors: Vec<String>,
    #[serde(default)]
    ttl: Option<u64>,
}

async fn list_entries(AxState(st): AxState<S>, headers: axum::http::HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            Ok(st.store.entries().await?)
        }
        .await,
    )
}

async fn create_entry(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    body: Result<ApiJson<NewEntry>, ApiError>,
) -> Response {
    let r = async {
        let caller = require(&st, &headers, Role::Operator)?;
        let ApiJson(n) = body?;
        let bad = |e: vouch_identity::IdentityError| {
            ApiError::new(ErrorKind::MalformedRequest, e.to_string())
        };
        let id = vouch_identity::SpiffeId::parse(&n.spiffe_id).map_err(bad)?;
        if n.selectors.len() > 64 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "at most 64 selectors",
            ));
        }
        let selectors = n
            .selectors
            .iter()
            .map(|s| vouch_identity::Selector::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let e = vouch_identity::Entry::new(
            uuid::Uuid::new_v4().to_string(),
            &id,
            selectors,
            n.ttl.unwrap_or(st.cfg.svid_ttl),
            unix_now(),
        )
        .map_err(bad)?;
        st.store.add_entry(&e).await?;
        st.audit(
            "entry.add",
            &caller.name,
            &e.id,
            serde_json::to_value(&e).unwrap_or_default(),
        )
        .await;
        tracing::info!(entry = %e.id, spiffe_id = %e.spiffe_id, "registration entry created");
        // Watchers hear of it now, not at the next poll.
        if let Err(err) = st.refresh_entries().await {
            tracing::warn!("entries refresh failed: {}", err.message);
        }
        Ok(e)
    }
    .await;
    match r {
        Ok(e) => (StatusCode::CREATED, Json(e)).into_response(),
        Err(e) => with_kind(e),
    }
}

/// This verifier's quorum side, and a request body one of its peers signed
/// ([`crate::quorum::Quorum::admit`]: `401` before the body is read as JSON otherwise).
fn from_peer<'a, T: DeserializeOwned>(
    st: &'a S,
    step: &str,
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(&'a crate::quorum::Quorum, T), ApiError> {
    let q = st.quorum.as_ref().ok_or_else(|| {
        ApiError::new(ErrorKind::NotFound, "this verifier is not a quorum member")
    })?;
    let body = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::BodyTooLarge,
                "request body exceeds the verifier's body_limit",
            )
        } else {
            ApiError::new(ErrorKind::MalformedRequest, rej.body_text())
        }
    })?;
    let header = headers.get(crate::quorum::PEER_SIGNATURE_HEADER);
    let req = q.admit(step, header, &body, unix_now(), st.cfg.clock_skew)?;
    Ok((q, req))
}

/// Round one of a quorum result: this verifier appraises the evidence itself, for a peer
/// only, a few at a time.
async fn quorum_commit(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    reply(
        async {
            let (q, c) = from_peer(&st, "commit", &headers, body)?;
            let _slot = q.appraisal_slot().await?;
            st.quorum_commit(c).await
        }
        .await,
    )
}

/// Round two: a signature share over the message agreed in round one, for a peer only.
async fn quorum_sign(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    reply(
        from_peer::<crate::quorum::SignRequest>(&st, "sign", &headers, body)
            .and_then(|(q, r)| q.sign(&r)),
    )
}

/// `?after=E&limit=N`: the incremental revocation feed.
#[derive(Debug, serde::Deserialize)]
struct FeedQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// The signed records above `after` (at most `limit`, 1000 by default) and a fresh signed head.
/// Public, like a CRL: every record is a proof anyone with the trust bundle can check. Each is
/// signed again with this replica's current certificate (relying parties check a record's
/// signer when it reaches them), once per certificate: the signed forms are kept
/// ([`State::feed_records`]).
async fn revocations(
    AxState(st): AxState<S>,
    q: Result<axum::extract::Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(
        async {
            let q = q.map_err(|e| ApiError::new(ErrorKind::MalformedRequest, e.body_text()))?;
            let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
            let epoch = st.store.revocation_epoch().await?;
            let rows = st.store.revocations_since(q.after, limit).await?;
            let head = st.sign_head(epoch)?;
            let signed = st.feed_records(&rows)?;
            let records: Vec<&str> = signed.iter().map(|s| s.compact.as_str()).collect();
            let mut body = serde_json::json!({ "records": records, "head": head });
            // With `pq_signatures`: each record and the head again as JWS JSON, the same
            // classical signature first and this replica's ML-DSA-65 signature beside it.
            if st.pq_key.is_some() {
                let records_pq: Vec<Option<&str>> =
                    signed.iter().map(|s| s.pq.as_deref()).collect();
                body["records_pq"] = serde_json::json!(records_pq);
                body["head_pq"] = serde_json::json!(st.cosign_pq(&head)?);
            }
            Ok(body)
        }
        .await,
    )
}

/// A revocation asked for over the API.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRevocation {
    kind: String,
    target: String,
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

async fn create_revocation(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    body: Result<ApiJson<NewRevocation>, ApiError>,
) -> Response {
    let r = async {
        let caller = require(&st, &headers, Role::Operator)?;
        let ApiJson(n) = body?;
        let kind = vouch_core::revocation::RevocationKind::parse(&n.kind).ok_or_else(|| {
            ApiError::new(
                ErrorKind::MalformedRequest,
                format!(
                    "kind {:?} is not one of workload, node, svid, agent-key, result",
                    n.kind
                ),
            )
        })?;
        let by = crate::auth::attributed(&caller, n.by);
        st.revoke(kind, &n.target, &n.reason, &by).await
    }
    .await;
    match r {
        Ok(rec) => (StatusCode::CREATED, Json(rec)).into_response(),
        Err(e) => with_kind(e),
    }
}

/// `POST /v1/nodes/{id}/tpm/reenroll` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReenrollment {
    reason: String,
    #[serde(default)]
    by: Option<String>,
    /// Seconds the re-enrolment stays open (default one hour).
    #[serde(default)]
    ttl: Option<u64>,
}

/// Let a TPM-bound node enroll another EK or AK (issue 12): the admin re-enrolment, recorded.
async fn reenroll_tpm(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    body: Result<ApiJson<NewReenrollment>, ApiError>,
) -> Response {
    let r = async {
        let caller = require(&st, &headers, Role::Operator)?;
        let ApiJson(n) = body?;
        let by = crate::auth::attributed(&caller, n.by);
        let ttl = n.ttl.unwrap_or(3600).clamp(1, 7 * 86_400);
        let now = unix_now();
        crate::tpm::allow_tpm_reenrollment(st.store.as_ref(), &id, &n.reason, &by, ttl, now).await
    }
    .await;
    match r {
        Ok(rec) => (StatusCode::CREATED, Json(rec)).into_response(),
        Err(e) => with_kind(e),
    }
}

async fn show_entry(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            st.store
                .entries()
                .await?
                .into_iter()
                .find(|e| e.id == id)
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no entry {id}")))
        }
        .await,
    )
}

async fn delete_entry(
    AxState(st): AxState<S>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let caller = require(&st, &headers, Role::Operator)?;
        if st.store.delete_entry(&id).await? {
            st.audit("entry.delete", &caller.name, &id, serde_json::json!({}))
                .await;
            tracing::info!(entry = %id, "registration entry deleted");
            if let Err(err) = st.refresh_entries().await {
                tracing::warn!("entries refresh failed: {}", err.message);
            }
            Ok(())
        } else {
            Err(ApiError::new(ErrorKind::NotFound, format!("no entry {id}")))
        }
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => with_kind(e),
    }
}

async fn result(AxState(st): AxState<S>, Path(id): Path<String>) -> Response {
    reply(st.result(&id).await)
}

pub(crate) fn summary(w: vouch_store::WorkloadRecord) -> WorkloadSummary {
    WorkloadSummary {
        status: vouch_core::ArStatus::parse(&w.status).unwrap_or(vouch_core::ArStatus::None),
        id: w.id,
        node_id: w.node_id,
        name: w.name,
        reason: w.reason,
        last_attested_at: w.last_attested_at,
        last_attestation_id: w.last_attestation_id,
        deadline: w.deadline,
    }
}

async fn workloads(AxState(st): AxState<S>) -> Response {
    match st.store.workloads().await {
        Ok(ws) => Json(ws.into_iter().map(summary).collect::<Vec<_>>()).into_response(),
        Err(e) => with_kind(e.into()),
    }
}

async fn workload(AxState(st): AxState<S>, Path((node, name)): Path<(String, String)>) -> Response {
    let id = format!("{node}/{name}");
    match st.store.workload(&id).await {
        Ok(Some(w)) => Json(summary(w)).into_response(),
        Ok(None) => with_kind(ApiError::new(
            ErrorKind::NotFound,
            format!("no workload {id}"),
        )),
        Err(e) => with_kind(e.into()),
    }
}

async fn jwks(AxState(st): AxState<S>) -> Response {
    let mut body = st.keyring().jwks(unix_now(), st.cfg.retired_key_grace);
    // Quorum results verify against the group's key, published with the replica's own.
    if let (Some(q), Some(keys)) = (&st.quorum, body["keys"].as_array_mut()) {
        keys.push(q.keys.jwk());
    }
    // The ML-DSA-65 key of `result_pq` (an AKP JWK, RFC 9964): JWT libraries that do not know
    // the key type skip it and still find the classical keys.
    if let (Some(k), Some(keys)) = (&st.pq_key, body["keys"].as_array_mut()) {
        keys.push(k.jwk());
    }
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(AxState(st): AxState<S>) -> Response {
    match st.store.ping().await {
        Ok(()) if st.keyring().active().is_some() => (StatusCode::OK, "ready\n").into_response(),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "no active signing key\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(AxState(st): AxState<S>) -> Response {
    let text = crate::telemetry::render(&st).await;
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

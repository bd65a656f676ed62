//! The remote admin API (issue 16 item 1): every admin verb of the `vouch` CLI (`policy`,
//! `refvalue`, `token`, `node`, `workload`, `ca`, `key`, `revoke`; `entry` is in `routes`) is a
//! call here, authenticated, authorised by role and appended to the audit log with the caller's
//! name as its actor. The CLI never opens the verifier's store or key files.
//!
//! Roles: `auditor` reads (lists and shows), `operator` also makes join tokens, registration
//! entries, revocations and TPM re-enrolments, `admin` also changes policies, reference values,
//! result-signing keys and the trust domain's CA ([`crate::auth`]: the tenant's admin and read
//! tokens, scoped API tokens). Client certificates are not accepted yet: a bearer token over the
//! verifier's TLS.

use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use vouch_core::ErrorKind;
use vouch_policy::{CompiledPolicy, PolicySource, ReferenceValue, ReferenceValues};
use vouch_store::AuditEvent;

use crate::auth::{Role, require};
use crate::routes::{ApiJson, reply, with_kind};
use crate::state::{State, unix_now};
use crate::{ApiError, SigningAlg};

type S = Arc<State>;

/// Most reference values one import carries (and one transaction writes).
pub const MAX_IMPORT: usize = 100_000;

/// The admin routes, merged into the verifier's router.
pub(crate) fn routes() -> Router<S> {
    Router::new()
        .route("/v1/policies", get(list_policies).post(add_policy))
        .route("/v1/policies/{id}", get(show_policy))
        .route("/v1/policies/{id}/versions", get(policy_versions))
        .route("/v1/policies/{id}/activate", post(activate_policy))
        .route("/v1/refvalues", get(list_refvalues).post(add_refvalue))
        .route("/v1/refvalues/import", post(import_refvalues))
        .route("/v1/refvalues/learn/{node}", get(learn_refvalues))
        .route("/v1/refvalues/{id}", axum::routing::delete(remove_refvalue))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", get(show_node))
        .route("/v1/workloads/{node}/{name}/latest", get(workload_latest))
        .route("/v1/revocations/log", get(revocation_log))
        .route("/v1/ca", get(show_ca))
        .route("/v1/ca/prepare", post(prepare_ca))
        .route("/v1/ca/activate", post(activate_ca))
        .route("/v1/keys", get(show_keys))
        .route("/v1/keys/rotate", post(rotate_key))
}

fn created(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => with_kind(e),
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::MalformedRequest, msg)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

// --- policies ----------------------------------------------------------------------------------

async fn list_policies(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let active = st.store.active_policy_id().await?;
            let list = st.store.policies().await?;
            Ok(list
                .into_iter()
                .map(|p| {
                    let on = active.as_deref() == Some(p.id.as_str());
                    json!({
                        "id": p.id, "version": p.version, "sha256": p.sha256,
                        "created_at": p.created_at, "active": on,
                    })
                })
                .collect::<Vec<_>>())
        }
        .await,
    )
}

/// `POST /v1/policies` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPolicy {
    id: String,
    rego: String,
    #[serde(default = "yes")]
    activate: bool,
}

fn yes() -> bool {
    true
}

async fn add_policy(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    body: Result<ApiJson<NewPolicy>, ApiError>,
) -> Response {
    created(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            let ApiJson(n) = body?;
            if n.id.is_empty() || n.id.len() > 128 {
                return Err(bad("a policy id is 1-128 bytes"));
            }
            // A policy that does not compile never becomes a version, let alone the active one.
            let source = PolicySource {
                id: n.id.clone(),
                version: 0,
                rego: n.rego.clone(),
            };
            CompiledPolicy::compile(&source, &ReferenceValues::default())
                .map_err(|e| bad(format!("policy {} does not compile: {e}", n.id)))?;
            let v = st
                .store
                .add_policy(&n.id, &n.rego, n.activate, unix_now())
                .await?;
            let body = json!({
                "version": v, "sha256": sha256_hex(n.rego.as_bytes()), "active": n.activate,
            });
            st.audit("policy.add", &who.name, &n.id, body).await;
            Ok(json!({ "id": n.id, "version": v, "active": n.activate }))
        }
        .await,
    )
}

/// `?version=N`.
#[derive(Debug, Deserialize)]
struct VersionQuery {
    #[serde(default)]
    version: Option<u32>,
}

async fn show_policy(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let Query(q) = q.map_err(|e| bad(e.body_text()))?;
            st.store.policy(&id, q.version).await?.ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("no policy {id} (see `vouch policy list`)"),
                )
            })
        }
        .await,
    )
}

async fn policy_versions(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let latest = st
                .store
                .policy(&id, None)
                .await?
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no policy {id}")))?;
            let mut out = Vec::new();
            for v in 1..=latest.version {
                if let Some(p) = st.store.policy(&id, Some(v)).await? {
                    out.push(json!({
                        "version": p.version, "sha256": p.sha256, "created_at": p.created_at,
                    }));
                }
            }
            Ok(out)
        }
        .await,
    )
}

async fn activate_policy(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            if st.store.policy(&id, None).await?.is_none() {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("no policy {id} (see `vouch policy list`)"),
                ));
            }
            st.store.activate_policy(&id).await?;
            st.audit("policy.activate", &who.name, &id, json!({})).await;
            Ok(json!({ "id": id, "active": true }))
        }
        .await,
    )
}

// --- reference values ---------------------------------------------------------------------------

/// A reference value as the API takes it, checked before anything is written.
fn checked(v: ReferenceValue, row: usize) -> Result<ReferenceValue, ApiError> {
    let what = |m: &str| bad(format!("reference value {row}: {m}"));
    if v.kind.is_empty() || v.key.is_empty() {
        return Err(what("kind and key must not be empty"));
    }
    if v.kind.len() > 64 || v.key.len() > 4096 || v.value.len() > 4096 {
        return Err(what("kind is at most 64 bytes, key and value at most 4096"));
    }
    if !v
        .kind
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(what("kind is lowercase letters, digits and _"));
    }
    if v.key.chars().chain(v.value.chars()).any(char::is_control) {
        return Err(what("key and value hold no control characters"));
    }
    Ok(v)
}

async fn list_refvalues(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let rows = st.store.reference_value_rows().await?;
            Ok(rows
                .into_iter()
                .map(|(id, r)| json!({ "id": id, "kind": r.kind, "key": r.key, "value": r.value }))
                .collect::<Vec<_>>())
        }
        .await,
    )
}

async fn add_refvalue(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    body: Result<ApiJson<ReferenceValue>, ApiError>,
) -> Response {
    created(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            let ApiJson(v) = body?;
            let v = checked(v, 1)?;
            let id = st.store.add_reference_value(&v, unix_now()).await?;
            let body = json!({ "kind": v.kind, "key": v.key, "value": v.value });
            st.audit("refvalue.add", &who.name, &id.to_string(), body)
                .await;
            Ok(json!({ "id": id }))
        }
        .await,
    )
}

async fn remove_refvalue(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    reply(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            let old = st
                .store
                .reference_value_rows()
                .await?
                .into_iter()
                .find(|r| r.0 == id);
            if !st.store.remove_reference_value(id).await? {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("no reference value {id} (see `vouch refvalue list`)"),
                ));
            }
            let body = match old {
                Some((_, r)) => json!({ "kind": r.kind, "key": r.key, "value": r.value }),
                None => json!({}),
            };
            st.audit("refvalue.remove", &who.name, &id.to_string(), body)
                .await;
            Ok(json!({ "id": id, "removed": true }))
        }
        .await,
    )
}

/// `POST /v1/refvalues/import` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Import {
    values: Vec<Value>,
}

/// Many reference values in one transaction: each is checked first, and one bad value refuses
/// the whole import, naming its position (from 1); then all are written with one audit entry
/// (their count and the SHA-256 of the request's values), or none.
async fn import_refvalues(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    body: Result<ApiJson<Import>, ApiError>,
) -> Response {
    created(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            let ApiJson(n) = body?;
            if n.values.is_empty() || n.values.len() > MAX_IMPORT {
                return Err(bad(format!(
                    "an import holds 1 to {MAX_IMPORT} reference values, not {}",
                    n.values.len()
                )));
            }
            let mut values = Vec::with_capacity(n.values.len());
            for (i, raw) in n.values.into_iter().enumerate() {
                let v: ReferenceValue = serde_json::from_value(raw).map_err(|e| {
                    bad(format!(
                        "reference value {}: {e}; each is {{\"kind\", \"key\", \"value\"}}",
                        i + 1
                    ))
                })?;
                values.push(checked(v, i + 1)?);
            }
            let digest = sha256_hex(&serde_json::to_vec(&values).unwrap_or_default());
            let event = AuditEvent {
                time: unix_now(),
                kind: "refvalue.import".into(),
                actor: who.name.clone(),
                subject: format!("{} values", values.len()),
                body: json!({ "count": values.len(), "sha256": digest }),
            };
            let added = st
                .store
                .import_reference_values(&values, &event, unix_now())
                .await?;
            tracing::info!(count = values.len(), added, "reference values imported");
            Ok(json!({ "count": values.len(), "added": added, "sha256": digest }))
        }
        .await,
    )
}

/// The reference values that would make a node's latest measurements pass: for each workload
/// of the node, its executable's digest and each measured file's, from its latest attestation.
/// For review (`vouch refvalue learn`), never applied here.
async fn learn_refvalues(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let workloads: Vec<_> = st
                .store
                .workloads()
                .await?
                .into_iter()
                .filter(|w| w.node_id == node)
                .collect();
            if workloads.is_empty() {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("node {node} has no attested workload (see `vouch node list`)"),
                ));
            }
            let mut out: Vec<ReferenceValue> = Vec::new();
            let mut from = Vec::new();
            for w in workloads {
                let Some(a) = &w.last_attestation_id else {
                    continue;
                };
                let Some(rec) = st.store.attestation(a).await? else {
                    continue;
                };
                from.push(json!({ "workload": w.id, "attestation": rec.id, "status": rec.status }));
                for v in candidates(&rec.claims) {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
            Ok(json!({ "node": node, "from": from, "values": out }))
        }
        .await,
    )
}

/// Reference-value candidates from a workload's claims (the policy input).
pub(crate) fn candidates(claims: &Value) -> Vec<ReferenceValue> {
    let mut out = Vec::new();
    let w = &claims["workload"];
    if let (Some(name), Some(sha)) = (w["name"].as_str(), w["exe_sha256"].as_str()) {
        out.push(ReferenceValue {
            kind: "executable".into(),
            key: name.into(),
            value: sha.into(),
        });
    }
    let mut file = |path: &str, m: &Value| {
        if let Some(sha) = m["sha256"].as_str() {
            out.push(ReferenceValue {
                kind: "file".into(),
                key: path.into(),
                value: sha.into(),
            });
        }
    };
    match &claims["files"] {
        Value::Object(files) => files.iter().for_each(|(p, m)| file(p, m)),
        Value::Array(files) => files
            .iter()
            .filter_map(|m| Some((m["path"].as_str()?, m)))
            .for_each(|(p, m)| file(p, m)),
        _ => {}
    }
    out
}

// --- join tokens, nodes, workloads, revocations -------------------------------------------------

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Seconds (default one hour, at most 30 days).
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(default)]
    node_name: Option<String>,
}

async fn create_token(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    body: Result<ApiJson<NewToken>, ApiError>,
) -> Response {
    created(
        async {
            let who = require(&st, &headers, Role::Operator)?;
            let ApiJson(n) = body?;
            let ttl = n.ttl.unwrap_or(3600);
            if ttl == 0 || ttl > 30 * 86_400 {
                return Err(bad("a join token lives 1 s to 30 days"));
            }
            if n.node_name.as_ref().is_some_and(|s| s.len() > 255) {
                return Err(bad("node_name is at most 255 bytes"));
            }
            let t = crate::create_join_token(st.store.as_ref(), ttl, n.node_name.as_deref())
                .await
                .map_err(|e| match e {
                    crate::ServerError::Store(s) => ApiError::from(s),
                    other => internal(other),
                })?;
            let body = json!({ "ttl": ttl, "token_sha256": sha256_hex(t.as_bytes()) });
            let subject = n.node_name.as_deref().unwrap_or("");
            st.audit("token.create", &who.name, subject, body).await;
            Ok(json!({ "token": t, "expires_at": unix_now() + ttl }))
        }
        .await,
    )
}

/// The newest 1000 join tokens: their SHA-256 (never the token), node name, times and use.
async fn list_tokens(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let now = unix_now();
            let list = st.store.join_tokens(1000).await?;
            Ok(list
                .into_iter()
                .map(|t| {
                    let state = match (t.used_at, now >= t.expires_at) {
                        (Some(_), _) => "used",
                        (None, true) => "expired",
                        (None, false) => "unused",
                    };
                    let mut v = serde_json::to_value(&t).unwrap_or_default();
                    v["state"] = json!(state);
                    v
                })
                .collect::<Vec<_>>())
        }
        .await,
    )
}

async fn list_nodes(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            Ok(st.store.nodes().await?)
        }
        .await,
    )
}

async fn show_node(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let node = st
                .store
                .nodes()
                .await?
                .into_iter()
                .find(|n| n.id == id)
                .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no node {id}")))?;
            let tpm = st.store.tpm_key(&id).await?.map(|t| {
                json!({
                    "ek_key": t.ek_key, "activated_at": t.activated_at, "bound_at": t.bound_at,
                })
            });
            let workloads: Vec<_> = st
                .store
                .workloads()
                .await?
                .into_iter()
                .filter(|w| w.node_id == id)
                .map(crate::routes::summary)
                .collect();
            let revoked = st.store.revocation("node", &id).await?;
            Ok(json!({
                "node": node,
                "attestation": st.store.node_attestation(&id).await?,
                "tpm": tpm,
                "reenrollments": st.store.tpm_reenrollments(&id).await?,
                "workloads": workloads,
                "revoked": revoked,
            }))
        }
        .await,
    )
}

/// A workload with its latest attestation (claims, reasons, trust vector).
async fn workload_latest(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path((node, name)): Path<(String, String)>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let id = format!("{node}/{name}");
            let w =
                st.store.workload(&id).await?.ok_or_else(|| {
                    ApiError::new(ErrorKind::NotFound, format!("no workload {id}"))
                })?;
            let latest = match &w.last_attestation_id {
                Some(a) => st.store.attestation(a).await?,
                None => None,
            };
            Ok(json!({ "workload": w, "latest": latest }))
        }
        .await,
    )
}

/// `?after=E`.
#[derive(Debug, Deserialize)]
struct AfterQuery {
    #[serde(default)]
    after: u64,
}

/// The revocation log as stored (who, why, when), at most 1000 records a page.
async fn revocation_log(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    q: Result<Query<AfterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let Query(q) = q.map_err(|e| bad(e.body_text()))?;
            Ok(st.store.revocations_since(q.after, 1000).await?)
        }
        .await,
    )
}

// --- keys and the CA -----------------------------------------------------------------------------

/// The CA set as `vouch ca` prints it.
fn describe_ca(set: &vouch_identity::CaSet, now: u64) -> Value {
    let describe = |der: &[u8]| -> Value {
        let (from, until) = x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            })
            .unwrap_or((0, 0));
        let role = if der == set.active().cert_der() {
            "active"
        } else if set.next().is_some_and(|n| n.cert_der() == der) {
            "next"
        } else {
            "retired"
        };
        json!({ "sha256": sha256_hex(der), "not_before": from, "not_after": until, "role": role })
    };
    json!({
        "trust_domain": set.active().trust_domain().as_str(),
        "sequence": set.sequence(),
        "authorities": set.authorities(now).into_iter().map(describe).collect::<Vec<_>>(),
    })
}

async fn show_ca(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            st.with_ca(|set| Ok(describe_ca(set, unix_now())))
        }
        .await,
    )
}

/// Change the CA set (`prepare` or `activate`) under its write lock, then log it.
async fn change_ca(st: &S, headers: &HeaderMap, what: &str) -> Result<Value, ApiError> {
    let who = require(st, headers, Role::Admin)?;
    // Pick up a change made on disk first, as every reader does.
    st.with_ca(|_| Ok(()))?;
    let lock = st
        .svid_ca
        .as_ref()
        .ok_or_else(|| internal("no SPIFFE CA configured"))?;
    let now = unix_now();
    let v = {
        let mut set = lock.write().map_err(|_| internal("CA lock poisoned"))?;
        let r = if what == "prepare" {
            set.prepare(st.cfg.svid_ca_ttl, now)
        } else {
            set.activate(st.cfg.svid_ttl, now)
        };
        r.map_err(|e| ApiError::new(ErrorKind::MalformedRequest, format!("SPIFFE CA: {e}")))?;
        describe_ca(&set, now)
    };
    let body = json!({ "sequence": v["sequence"], "authorities": v["authorities"] });
    st.audit(&format!("ca.{what}"), &who.name, &st.cfg.trust_domain, body)
        .await;
    Ok(v)
}

async fn prepare_ca(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(change_ca(&st, &headers, "prepare").await)
}

async fn activate_ca(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(change_ca(&st, &headers, "activate").await)
}

async fn show_keys(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let ring = st.keyring();
            Ok(json!({
                "active": ring.active().map(|k| k.kid().to_string()),
                "jwks": ring.jwks(unix_now(), st.cfg.retired_key_grace),
            }))
        }
        .await,
    )
}

/// `POST /v1/keys/rotate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    alg: Option<String>,
}

async fn rotate_key(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    body: Result<ApiJson<Rotate>, ApiError>,
) -> Response {
    created(
        async {
            let who = require(&st, &headers, Role::Admin)?;
            let ApiJson(r) = body?;
            let alg = match r.alg.as_deref() {
                None | Some("EdDSA") => SigningAlg::EdDSA,
                Some("ES256") => SigningAlg::ES256,
                Some(other) => return Err(bad(format!("alg {other:?} is not EdDSA or ES256"))),
            };
            let kid = crate::Keyring::rotate(&st.keys_dir, alg, unix_now()).map_err(internal)?;
            st.reload_keys();
            if st.keyring().active().map(|k| k.kid()) != Some(kid.as_str()) {
                return Err(internal("the new key was written but did not load"));
            }
            let alg = if alg == SigningAlg::ES256 {
                "ES256"
            } else {
                "EdDSA"
            };
            st.audit("key.rotate", &who.name, &kid, json!({ "alg": alg }))
                .await;
            Ok(json!({ "kid": kid, "alg": alg, "grace": st.cfg.retired_key_grace }))
        }
        .await,
    )
}

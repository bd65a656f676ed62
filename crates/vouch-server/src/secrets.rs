//! Secret release (issue 17 item 4): secrets given only to attested workloads, sealed to a
//! key their evidence bound. Like Trustee's KBS resources and Keylime's payloads.
//!
//! - `PUT /v1/secrets/{name}` (admin), `GET /v1/secrets` (auditor), `DELETE
//!   /v1/secrets/{name}` (admin): the secret is stored encrypted under this tenant's at-rest
//!   key (`keys/secrets.key`, AES-256-GCM, the name as associated data), with its release
//!   policy (Rego, `package vouch.secret`, compiled before it is accepted). Never listed, logged
//!   or audited in the clear.
//! - `POST /v1/secrets/release` (an enrolled agent, signed by its key): fresh evidence about
//!   the workload, whose measurements bind a one-time X25519 key (`release_key`). The evidence
//!   is appraised and recorded like any attestation (its nonce is spent: a replay is refused),
//!   and the secret is released only when that result is affirming, the node and workload are
//!   not revoked, and the secret's policy allows it for the workload's selectors and claims.
//!   The answer is the secret sealed with HPKE (RFC 9180) to the key the evidence bound, for
//!   `info` = name, version, node and nonce: an intercepted answer opens nowhere else.
//!
//! Every release and every refusal of a request the agent's key signed is appended to the
//! audit log (`secret.release`, `secret.refuse`: never the secret's bytes). Requests that are
//! not signed by an enrolled key are refused without an entry, so unauthenticated callers cannot
//! fill the log.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use vouch_core::wire::{
    AttestRequest, SecretPutRequest, SecretReleaseRequest, SecretReleaseResponse, SecretSummary,
    secret_release_info, secret_release_signing_input,
};
use vouch_core::{ArStatus, ErrorKind};
use vouch_evidence::{MAX_SECRET_BYTES, seal_secret, valid_release_key, verify_ed25519};
use vouch_identity::Selector;
use vouch_policy::SecretPolicy;

use crate::ApiError;
use crate::auth::{Role, require};
use crate::keys::{random_bytes, write_secret};
use crate::routes::{ApiJson, reply};
use crate::state::{State, unix_now};

type S = Arc<State>;

/// The secret routes, merged into the verifier's router.
pub(crate) fn routes() -> Router<S> {
    Router::new()
        .route("/v1/secrets", get(list))
        .route("/v1/secrets/{name}", put(put_secret).delete(delete_secret))
        .route("/v1/secrets/release", post(release))
}

/// Names: 1-128 characters of `A-Z a-z 0-9 - _ .`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && n != "release"
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::MalformedRequest, msg)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

// --- at rest -----------------------------------------------------------------------------------

/// The at-rest keys, one per key directory (tenant), read once.
fn at_rest_key(st: &State) -> Result<Arc<LessSafeKey>, ApiError> {
    static KEYS: OnceLock<Mutex<HashMap<PathBuf, Arc<LessSafeKey>>>> = OnceLock::new();
    let mut keys = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(k) = keys.get(&st.keys_dir) {
        return Ok(k.clone());
    }
    let path = st.keys_dir.join("secrets.key");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = random_bytes::<32>().to_vec();
            write_secret(&path, &b).map_err(internal)?;
            b
        }
        Err(e) => return Err(internal(format!("reading {}: {e}", path.display()))),
    };
    let key = UnboundKey::new(&AES_256_GCM, &bytes)
        .map_err(|_| internal(format!("{} is not a 32-byte key", path.display())))?;
    let key = Arc::new(LessSafeKey::new(key));
    keys.insert(st.keys_dir.clone(), key.clone());
    Ok(key)
}

/// The associated data of a stored secret: its name and its policy's SHA-256, so that a row
/// moved to another name, or given another policy by someone who can write the database but
/// not read `keys/secrets.key`, no longer opens (and so is never released).
fn at_rest_aad(name: &str, policy: &str) -> Vec<u8> {
    let mut v = b"vouch-secret-at-rest-v1\0".to_vec();
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.extend_from_slice(&Sha256::digest(policy.as_bytes()));
    v
}

/// `nonce ‖ AES-256-GCM(secret)` under the at-rest key, bound to `name` and `policy`.
fn seal_at_rest(st: &State, name: &str, policy: &str, secret: &[u8]) -> Result<Vec<u8>, ApiError> {
    let key = at_rest_key(st)?;
    let nonce = random_bytes::<NONCE_LEN>();
    let mut buf = secret.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(at_rest_aad(name, policy)),
        &mut buf,
    )
    .map_err(|_| internal("sealing the secret at rest failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open_at_rest(st: &State, rec: &vouch_store::SecretRecord) -> Result<Vec<u8>, ApiError> {
    let name = &rec.name;
    let key = at_rest_key(st)?;
    let (nonce, ct) = rec
        .sealed
        .split_at_checked(NONCE_LEN)
        .ok_or_else(|| internal(format!("stored secret {name} is truncated")))?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| internal("nonce"))?;
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(at_rest_aad(name, &rec.policy)), &mut buf)
        .map_err(|_| {
            internal(format!(
                "stored secret {name} does not open with this verifier's keys/secrets.key \
                 (another key, or its row was changed: bytes, name or policy)"
            ))
        })?;
    Ok(plain.to_vec())
}

/// Release policies, compiled once per secret version and text.
fn compiled(name: &str, version: u32, rego: &str) -> Result<Arc<SecretPolicy>, ApiError> {
    type Cache = Mutex<HashMap<(String, u32, [u8; 32]), Arc<SecretPolicy>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        name.to_string(),
        version,
        Sha256::digest(rego.as_bytes()).into(),
    );
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cache.get(&key) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        SecretPolicy::compile(name, rego)
            .map_err(|e| ApiError::new(ErrorKind::PolicyError, e.to_string()))?,
    );
    if cache.len() > 1024 {
        cache.clear();
    }
    cache.insert(key, p.clone());
    Ok(p)
}

// --- admin -------------------------------------------------------------------------------------

fn summary(r: &vouch_store::SecretRecord) -> SecretSummary {
    SecretSummary {
        name: r.name.clone(),
        version: r.version,
        size: r.size,
        policy_sha256: hex::encode(Sha256::digest(r.policy.as_bytes())),
        updated_at: r.updated_at,
    }
}

async fn list(AxState(st): AxState<S>, headers: HeaderMap) -> Response {
    reply(
        async {
            require(&st, &headers, Role::Auditor)?;
            let all = st.store.secrets().await?;
            Ok(all.iter().map(summary).collect::<Vec<_>>())
        }
        .await,
    )
}

async fn put_secret(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<SecretPutRequest>, ApiError>,
) -> Response {
    reply(
        async {
            let caller = require(&st, &headers, Role::Admin)?;
            let ApiJson(req) = body?;
            if !valid_name(&name) {
                return Err(bad(
                    "a secret's name is 1-128 characters of A-Z a-z 0-9 - _ . (not \"release\")",
                ));
            }
            let value = URL_SAFE_NO_PAD
                .decode(&req.value)
                .map_err(|_| bad("value must be base64url (no padding)"))?;
            if value.is_empty() || value.len() > MAX_SECRET_BYTES {
                return Err(bad(format!(
                    "a secret is 1 to {MAX_SECRET_BYTES} bytes, not {}",
                    value.len()
                )));
            }
            // Refused before it is stored: a policy that does not compile would refuse every
            // release.
            SecretPolicy::compile(&name, &req.policy).map_err(|e| bad(e.to_string()))?;
            let sealed = seal_at_rest(&st, &name, &req.policy, &value)?;
            let now = unix_now();
            let version = st
                .store
                .put_secret(&name, &sealed, &req.policy, value.len() as u64, now)
                .await?;
            let policy_sha256 = hex::encode(Sha256::digest(req.policy.as_bytes()));
            st.audit(
                "secret.put",
                &caller.name,
                &name,
                serde_json::json!({
                    "version": version, "size": value.len(), "policy_sha256": policy_sha256,
                }),
            )
            .await;
            tracing::info!(secret = %name, version, "secret stored");
            Ok(SecretSummary {
                name,
                version,
                size: value.len() as u64,
                policy_sha256,
                updated_at: now,
            })
        }
        .await,
    )
}

async fn delete_secret(
    AxState(st): AxState<S>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    reply(
        async {
            let caller = require(&st, &headers, Role::Admin)?;
            if !st.store.delete_secret(&name).await? {
                return Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("no secret {:?}", vouch_core::clip(&name, 128)),
                ));
            }
            st.audit("secret.delete", &caller.name, &name, serde_json::json!({}))
                .await;
            Ok(serde_json::json!({ "deleted": name }))
        }
        .await,
    )
}

// --- release -----------------------------------------------------------------------------------

async fn release(
    AxState(st): AxState<S>,
    body: Result<ApiJson<SecretReleaseRequest>, ApiError>,
) -> Response {
    reply(
        async {
            let ApiJson(req) = body?;
            st.release_secret(req).await
        }
        .await,
    )
}

/// What a release is, once the request's signature checked: for the audit log.
struct Asked {
    key_id: String,
    node_id: String,
}

impl State {
    /// `POST /v1/secrets/release`.
    pub(crate) async fn release_secret(
        &self,
        req: SecretReleaseRequest,
    ) -> Result<SecretReleaseResponse, ApiError> {
        let asked = self.release_signed_by(&req).await?;
        let name = req.name.clone();
        let r = self.release_checked(req, &asked).await;
        match &r {
            Ok(out) => {
                tracing::info!(secret = %name, node = %out.node_id, "secret released");
                self.audit(
                    "secret.release",
                    &asked.key_id,
                    &name,
                    serde_json::json!({
                        "version": out.version, "node_id": out.node_id,
                        "attestation_id": out.attestation_id,
                        "enc_sha256": hex::encode(Sha256::digest(out.enc.as_bytes())),
                    }),
                )
                .await;
            }
            Err(e) => {
                tracing::info!(secret = %name, node = %asked.node_id, kind = e.kind.as_str(), "secret refused");
                self.audit(
                    "secret.refuse",
                    &asked.key_id,
                    &name,
                    serde_json::json!({
                        "node_id": asked.node_id, "kind": e.kind.as_str(), "reason": e.message,
                    }),
                )
                .await;
            }
        }
        r
    }

    /// The request's shape, and its signature by the enrolled key it names.
    async fn release_signed_by(&self, req: &SecretReleaseRequest) -> Result<Asked, ApiError> {
        if !valid_name(&req.name) || req.selectors.len() > 64 {
            return Err(bad(
                "name must be a secret's name, with at most 64 selectors",
            ));
        }
        if req.evidence.kind == vouch_core::EvidenceKind::Sample {
            return Err(bad(
                "sample evidence carries no signature and gets no secret",
            ));
        }
        if req.evidence.key_id != req.key_id {
            return Err(bad(
                "the evidence must be signed by the key that makes the request",
            ));
        }
        let key = self.store.agent_key(&req.key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!(
                    "key {:?} is not enrolled here (or was revoked)",
                    vouch_core::clip(&req.key_id, 64)
                ),
            )
        })?;
        let msg = secret_release_signing_input(
            &req.key_id,
            &req.name,
            &req.evidence.payload,
            &req.selectors,
        );
        if !verify_ed25519(&key.public_key, &msg, &req.signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "the release request is not signed by the agent key it names",
            ));
        }
        Ok(Asked {
            key_id: key.id,
            node_id: key.node_id,
        })
    }

    async fn release_checked(
        &self,
        req: SecretReleaseRequest,
        asked: &Asked,
    ) -> Result<SecretReleaseResponse, ApiError> {
        let secret = self.store.secret(&req.name).await?.ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no secret {:?}", req.name))
        })?;
        let mut selectors = Vec::with_capacity(req.selectors.len() + 8);
        for s in &req.selectors {
            let sel = Selector::parse(s).map_err(|e| bad(e.to_string()))?;
            if !crate::svid::AGENT_SELECTOR_KINDS.contains(&sel.kind.as_str()) {
                return Err(bad(format!(
                    "an agent may report {} selectors only, not {sel}",
                    crate::svid::AGENT_SELECTOR_KINDS.join(", ")
                )));
            }
            selectors.push(sel.to_string());
        }
        let attest = AttestRequest {
            evidence: req.evidence,
            result_audience: None,
        };
        // What the evidence bound: read from the verified evidence, never from the request
        // beside it. The attestation below appraises the same bytes again (its appraisal is
        // then a cache hit) and is what records the result and spends the nonce.
        let appraised = self.verifier.appraise(&attest, unix_now()).await?;
        let release_key = appraised
            .release_key()
            .filter(|k| valid_release_key(k))
            .ok_or_else(|| {
                bad("the evidence binds no release_key (a base64url 32-byte X25519 key)")
            })?
            .to_string();
        let workload = appraised.workload_name().to_string();
        let nonce = appraised.nonce().to_string();
        let claims = appraised.claims().clone();
        let node_id = appraised.node_id().to_string();
        drop(appraised);
        if node_id != asked.node_id {
            return Err(bad("the evidence is not about the requesting key's node"));
        }
        let result = self.attest(attest).await?;
        let workload_id = format!("{node_id}/{workload}");
        if result.workload_id != workload_id {
            return Err(internal(
                "the recorded attestation is about another workload",
            ));
        }
        if result.status != ArStatus::Affirming {
            return Err(ApiError::new(
                ErrorKind::NotAttested,
                format!(
                    "workload {workload_id} is {} ({}); it gets no secret",
                    result.status.as_str(),
                    result.reasons.join("; ")
                ),
            ));
        }
        let w = self.store.workload(&workload_id).await?.ok_or_else(|| {
            internal(format!(
                "workload {workload_id} was recorded but is not found"
            ))
        })?;
        if w.status != ArStatus::Affirming.as_str()
            || w.last_attestation_id.as_deref() != Some(result.attestation_id.as_str())
        {
            return Err(ApiError::new(
                ErrorKind::NotAttested,
                format!("workload {workload_id} is no longer affirming"),
            ));
        }
        selectors.extend(self.node_selectors(&node_id, &workload, &w).await?);
        let input = serde_json::json!({
            "secret": {"name": secret.name, "version": secret.version},
            "node_id": node_id,
            "workload": {"id": workload_id, "name": workload},
            "selectors": selectors,
            "claims": claims,
        });
        let policy = compiled(&secret.name, secret.version, &secret.policy)?;
        if !policy
            .allows(&input)
            .map_err(|e| ApiError::new(ErrorKind::PolicyError, e.to_string()))?
        {
            return Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "secret {}'s policy does not release it to workload {workload_id} \
                     (selectors {selectors:?})",
                    secret.name
                ),
            ));
        }
        let plain = open_at_rest(self, &secret)?;
        let info = secret_release_info(&secret.name, secret.version, &node_id, &nonce);
        let sealed = seal_secret(&release_key, &info, &plain).map_err(|e| bad(e.to_string()))?;
        Ok(SecretReleaseResponse {
            name: secret.name,
            version: secret.version,
            node_id,
            enc: sealed.enc,
            ciphertext: sealed.ciphertext,
            attestation_id: result.attestation_id,
            ima_position: result.ima_position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("db-password.v2"));
        assert!(!valid_name(""));
        assert!(!valid_name("release"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(129)));
    }
}

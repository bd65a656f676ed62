//! The audit log's API (issue 16 item 3): signed tree heads, entries, inclusion and consistency
//! proofs over the store's append-only log (`vouch_store::AuditLog`), and the one call every
//! decision, enrollment, change and revocation makes to append to it ([`State::audit`]).
//!
//! The tree is the RFC 9162 one of `vouch_core::audit`, rebuilt from the stored leaf hashes on
//! each request (32 bytes an entry: a million entries is 32 MB read and about a second of
//! hashing; a cache of complete subtrees is the next step when logs grow that large). Heads are
//! signed like revocation heads: compact JWS under the replica's result-signing key, its
//! certificate (`x5c`) issued by the trust domain's authority, so `vouch audit verify` checks
//! them offline against the trust bundle.

use axum::Json;
use axum::extract::{Query, State as AxState};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use vouch_core::ErrorKind;
use vouch_core::audit::{
    AUDIT_HEAD_TYP, AuditHead, Hash, consistency_proof, inclusion_proof, root,
};
use vouch_store::AuditEvent;

use crate::ApiError;
use crate::state::{State, unix_now};

type S = Arc<State>;

/// Most entries one `GET /v1/audit/entries` returns.
pub const ENTRIES_PAGE: u64 = 1000;

impl State {
    /// Append an entry to the audit log. A failure is logged, not returned: the change it
    /// records has already been made (the log then misses it, which `vouch audit verify` cannot
    /// see; the error log says so).
    pub(crate) async fn audit(&self, kind: &str, actor: &str, subject: &str, body: Value) {
        let event = AuditEvent {
            time: unix_now(),
            kind: kind.into(),
            actor: actor.into(),
            subject: subject.into(),
            body,
        };
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(kind, subject, "appending to the audit log failed: {e}");
        }
    }

    /// A signed head for the tree of `size` entries with root `root`.
    pub(crate) fn sign_audit_head(&self, size: u64, root: &Hash) -> Result<String, ApiError> {
        let keyring = self.keyring();
        let key = keyring
            .active()
            .ok_or_else(|| internal("no active signing key"))?;
        let cert = self.replica_cert(key)?;
        let head = AuditHead {
            iss: cert.id.to_string(),
            size,
            root: hex::encode(root),
            iat: unix_now(),
        };
        key.sign_jws(AUDIT_HEAD_TYP, &cert.chain, &head)
            .map_err(internal)
    }

    /// The leaf hashes of the first `size` entries (the current size when `None`), checked to
    /// exist.
    async fn audit_leaves(&self, size: Option<u64>) -> Result<Vec<Hash>, ApiError> {
        let current = self.store.audit_size().await?;
        let size = size.unwrap_or(current);
        if size > current {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("the audit log has {current} entries, not {size}"),
            ));
        }
        Ok(self.store.audit_leaf_hashes(size).await?)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::MalformedRequest, msg)
}

fn reply(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let kind = e.kind;
            let mut r = e.into_response();
            r.extensions_mut().insert(kind);
            r
        }
    }
}

type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: Q<T>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad(e.body_text()))
}

/// `GET /v1/audit/head`: the current size, root and a signed head (and `head_pq`, the same
/// with an ML-DSA-65 signature beside, or `null` without `pq_signatures`).
pub(crate) async fn head(AxState(st): AxState<S>) -> Response {
    reply(
        async {
            let leaves = st.audit_leaves(None).await?;
            let r = root(&leaves);
            let size = leaves.len() as u64;
            let head = st.sign_audit_head(size, &r)?;
            // With `pq_signatures`, the head again with this replica's ML-DSA-65 signature
            // beside the classical one (JWS JSON).
            let head_pq = st.cosign_pq(&head)?;
            Ok(json!({ "size": size, "root": hex::encode(r), "head": head, "head_pq": head_pq }))
        }
        .await,
    )
}

/// `GET /v1/audit/entries` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Range {
    #[serde(default)]
    start: u64,
    end: Option<u64>,
}

/// `GET /v1/audit/entries?start=&end=`: entries `start..end` (at most [`ENTRIES_PAGE`]), each
/// as the exact string that is hashed.
pub(crate) async fn entries(AxState(st): AxState<S>, q: Q<Range>) -> Response {
    reply(
        async {
            let q = query(q)?;
            let end = q.end.unwrap_or(u64::MAX);
            if end < q.start {
                return Err(bad(format!("end {end} is before start {}", q.start)));
            }
            let end = end.min(q.start.saturating_add(ENTRIES_PAGE));
            let rows = st.store.audit_entries(q.start, end).await?;
            let entries: Vec<String> = rows.into_iter().map(|r| r.entry).collect();
            Ok(json!({ "start": q.start, "entries": entries }))
        }
        .await,
    )
}

/// `GET /v1/audit/proof/inclusion` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    seq: u64,
    size: Option<u64>,
}

/// `GET /v1/audit/proof/inclusion?seq=&size=`: entry `seq`, its proof in the tree of `size`
/// entries (the current size by default) and that tree's signed head.
pub(crate) async fn inclusion(AxState(st): AxState<S>, q: Q<InclusionQuery>) -> Response {
    reply(
        async {
            let q = query(q)?;
            let leaves = st.audit_leaves(q.size).await?;
            let size = leaves.len() as u64;
            let at = usize::try_from(q.seq).unwrap_or(usize::MAX);
            let proof = inclusion_proof(&leaves, at).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("entry {} is not in a tree of {size} entries", q.seq),
                )
            })?;
            let entry = st
                .store
                .audit_entries(q.seq, q.seq + 1)
                .await?
                .pop()
                .ok_or_else(|| internal("audit entry vanished"))?;
            let r = root(&leaves);
            Ok(json!({
                "seq": q.seq,
                "size": size,
                "entry": entry.entry,
                "leaf_hash": hex::encode(entry.leaf_hash),
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "root": hex::encode(r),
                "head": st.sign_audit_head(size, &r)?,
            }))
        }
        .await,
    )
}

/// `GET /v1/audit/proof/consistency` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    first: u64,
    second: Option<u64>,
}

/// `GET /v1/audit/proof/consistency?first=&second=`: the proof that the tree of `second`
/// entries (the current size by default) extends the tree of `first`, both roots, and the
/// second tree's signed head.
pub(crate) async fn consistency(AxState(st): AxState<S>, q: Q<ConsistencyQuery>) -> Response {
    reply(
        async {
            let q = query(q)?;
            let leaves = st.audit_leaves(q.second).await?;
            let second = leaves.len() as u64;
            if q.first == 0 || q.first > second {
                return Err(bad(format!(
                    "first must be 1..={second} (the size of an earlier head)"
                )));
            }
            let first = usize::try_from(q.first).unwrap_or(usize::MAX);
            let proof = consistency_proof(&leaves, first).ok_or_else(|| internal("no proof"))?;
            let r2 = root(&leaves);
            Ok(json!({
                "first": q.first,
                "second": second,
                "first_root": hex::encode(root(&leaves[..first])),
                "second_root": hex::encode(r2),
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "head": st.sign_audit_head(second, &r2)?,
            }))
        }
        .await,
    )
}

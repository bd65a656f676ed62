//! Who may call the management and read APIs: tenants' roles and their bearer tokens.
//!
//! Every protected route calls [`require`] with the least [`Role`] it needs. A request's
//! `Authorization: Bearer <token>` is one of:
//!
//! - the tenant's admin token (`<tenant keys>/admin.token`): [`Role::Admin`], named `admin-api`;
//! - the tenant's read token (`<tenant keys>/read.token`): [`Role::Auditor`], named `read-token`;
//! - a scoped API token (`vouch token create-api`): the tenant, role and name it was minted
//!   for. Only its SHA-256 is kept, in `data_dir/keys/api-tokens.json` (re-read when it
//!   changes).
//!
//! Every comparison is in constant time and every candidate is compared (no early exit), so
//! the time taken does not say which token, or how much of one, matched. A token of another
//! tenant is refused `403 forbidden` naming both tenants; a valid token whose role is too low
//! `403 forbidden` naming the role needed; anything else `401 unauthenticated`.
//!
//! Each tenant is served by its own [`State`] (its own store, keys, trust domain), so a
//! handler can only ever reach the data of the tenant whose routes it serves; this module only
//! decides whether the caller may use that tenant's routes at all.

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;
use subtle::ConstantTimeEq as _;

use vouch_core::ErrorKind;

use crate::ApiError;
use crate::state::State;

/// The name of the tenant that the verifier's own data directory holds (routes at `/`).
pub const DEFAULT_TENANT: &str = "default";

/// What a caller may do within its tenant. Ordered: `Admin` ⊇ `Operator` ⊇ `Auditor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: workloads, results, the audit log, metrics, the dashboard.
    Auditor,
    /// An auditor that also manages registration entries, join tokens, revocations and node
    /// re-enrolments.
    Operator,
    /// Everything in the tenant: policies, reference values, keys, the CA.
    Admin,
}

impl Role {
    /// The role's name as tokens and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parse `auditor`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auditor" => Some(Self::Auditor),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The tenant whose routes it called (always the serving state's tenant).
    pub tenant: String,
    /// Its role in that tenant.
    pub role: Role,
    /// The token's name: the actor of audit log entries.
    pub name: String,
}

/// One scoped API token, as `api-tokens.json` keeps it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRecord {
    /// Who holds it (the audit log's actor).
    pub name: String,
    /// The tenant it is valid for.
    pub tenant: String,
    /// Its role there.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Unix seconds it was minted.
    #[serde(default)]
    pub created_at: u64,
}

/// The contents of `api-tokens.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenFile {
    /// The tokens.
    #[serde(default)]
    pub tokens: Vec<ApiTokenRecord>,
}

/// The audit actor of a tenant's own admin token.
pub(crate) const ADMIN_TOKEN_NAME: &str = "admin-api";

/// The audit actor of a tenant's own read token.
pub(crate) const READ_TOKEN_NAME: &str = "read-token";

/// The scoped tokens' file name under `data_dir/keys`.
pub const API_TOKENS_FILE: &str = "api-tokens.json";

/// The largest `api-tokens.json` read, bytes.
const MAX_TOKENS_FILE: u64 = 4 * 1024 * 1024;

/// The tokens held: the file's modification time when read, and each token's SHA-256 with
/// its record.
type Held = (Option<SystemTime>, Vec<([u8; 32], ApiTokenRecord)>);

/// The scoped API tokens of every tenant, re-read from their file when it changes.
#[derive(Debug, Default)]
pub(crate) struct ApiTokens {
    path: Option<PathBuf>,
    held: RwLock<Held>,
    /// Each tenant's admin and read tokens (from its keys directory), so that one used on
    /// another tenant's routes is refused naming its tenant.
    builtin: RwLock<Vec<([u8; 32], ApiTokenRecord)>>,
    /// Held while the file is rewritten by the API, so two changes do not lose one another.
    writing: std::sync::Mutex<()>,
}

impl ApiTokens {
    /// The tokens of `path` (none while it does not exist).
    pub(crate) fn open(path: PathBuf) -> Result<Self, ApiError> {
        let t = Self {
            path: Some(path),
            ..Self::default()
        };
        t.reload()?;
        Ok(t)
    }

    /// Read the file again when its modification time moved. A file that cannot be read or
    /// parsed keeps the tokens held before (and says so in the log).
    pub(crate) fn reload(&self) -> Result<(), ApiError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if self.held.read().map(|h| h.0 == stamp).unwrap_or(false) {
            return Ok(());
        }
        let file = match stamp {
            Some(_) => read_token_file(path)?,
            None => ApiTokenFile::default(),
        };
        let mut held = Vec::with_capacity(file.tokens.len());
        for r in file.tokens {
            let mut h = [0u8; 32];
            hex::decode_to_slice(&r.sha256, &mut h).map_err(|_| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!(
                        "{}: token {:?} has no 64-hex-digit sha256",
                        path.display(),
                        r.name
                    ),
                )
            })?;
            held.push((h, r));
        }
        let n = held.len();
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = (stamp, held);
        if stamp.is_some() {
            tracing::info!(tokens = n, "scoped API tokens loaded");
        }
        Ok(())
    }

    /// Change the tokens file with `f` (under a lock), then hold what it now says.
    fn rewrite<R>(
        &self,
        f: impl FnOnce(&mut ApiTokenFile) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let path = self.path.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "this verifier keeps no API tokens file",
            )
        })?;
        let _guard = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = if path.exists() {
            read_token_file(path)?
        } else {
            ApiTokenFile::default()
        };
        let r = f(&mut file)?;
        write_token_file(path, &file)?;
        // Forget the stamp: the next reload reads it even within the same second.
        self.held.write().unwrap_or_else(|p| p.into_inner()).0 = None;
        self.reload()?;
        Ok(r)
    }

    /// Know `tenant`'s own admin or read `token` (named `name`), so that it is refused on
    /// other tenants' routes naming its tenant.
    pub(crate) fn register(&self, tenant: &str, role: Role, name: &str, token: &str) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let record = ApiTokenRecord {
            name: name.to_string(),
            tenant: tenant.to_string(),
            role,
            sha256: hex::encode(digest),
            created_at: 0,
        };
        self.builtin
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((digest, record));
    }

    /// The record of `token`: every held hash is compared, in constant time.
    fn find(&self, token: &str) -> Option<ApiTokenRecord> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        let builtin = self.builtin.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for (h, r) in held.1.iter().chain(builtin.iter()) {
            if bool::from(h.ct_eq(&digest)) {
                found = Some(r.clone());
            }
        }
        found
    }
}

/// Read and parse a tokens file, bounded.
pub fn read_token_file(path: &Path) -> Result<ApiTokenFile, ApiError> {
    use std::io::Read as _;
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::new(ErrorKind::Internal, format!("{}: {e}", path.display()))
    };
    let f = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let mut buf = Vec::new();
    f.take(MAX_TOKENS_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad(&e))?;
    if buf.len() as u64 > MAX_TOKENS_FILE {
        return Err(bad(&"larger than 4 MiB"));
    }
    serde_json::from_slice(&buf).map_err(|e| bad(&e))
}

/// Add `record` to the tokens file at `path` (created mode 0600 when missing), refusing a
/// second token of the same name in the same tenant. The verifier picks it up within seconds.
pub fn add_api_token(path: &Path, record: ApiTokenRecord) -> Result<(), ApiError> {
    if !valid_token_name(&record.name) || !valid_tenant_name(&record.tenant) {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            format!(
                "token name {:?} or tenant {:?} refused: a name is 1-64 of A-Z a-z 0-9 . _ @ - \
                 (not admin-api or read-token), a tenant 1-63 of a-z 0-9 -",
                record.name, record.tenant
            ),
        ));
    }
    let mut file = if path.exists() {
        read_token_file(path)?
    } else {
        ApiTokenFile::default()
    };
    if file
        .tokens
        .iter()
        .any(|t| t.name == record.name && t.tenant == record.tenant)
    {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            format!(
                "tenant {:?} already has a token named {:?}",
                record.tenant, record.name
            ),
        ));
    }
    file.tokens.push(record);
    write_token_file(path, &file)
}

/// Write a tokens file (mode 0600, replaced atomically).
fn write_token_file(path: &Path, file: &ApiTokenFile) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec_pretty(file)
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    crate::keys::write_secret(path, &bytes)
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

/// A tenant name: 1-63 lowercase letters, digits and `-`, starting with a letter (it is a
/// path segment, a directory name and a claim).
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Mint a scoped API token for `tenant` and `role`: the token (shown once) and its record.
pub fn mint_api_token(name: &str, tenant: &str, role: Role, now: u64) -> (String, ApiTokenRecord) {
    use base64::Engine as _;
    let token = format!(
        "vat_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::keys::random_bytes::<32>())
    );
    let record = ApiTokenRecord {
        name: name.to_string(),
        tenant: tenant.to_string(),
        role,
        sha256: hex::encode(Sha256::digest(token.as_bytes())),
        created_at: now,
    };
    (token, record)
}

/// The `Authorization: Bearer` credential of a request.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether `given` is `token`, compared in constant time (an empty token matches nothing).
pub(crate) fn same_token(given: &str, token: &str) -> bool {
    !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// Who `token` is on `st`'s routes, or why it is refused; `None` when it is nobody's token.
pub(crate) fn identify(st: &State, token: &str) -> Result<Option<Caller>, ApiError> {
    let tenant = st.tenant.clone();
    // Every comparison is made whatever matched first.
    let is_admin = same_token(token, &st.admin_token);
    let is_reader = same_token(token, &st.read_token);
    let scoped = st.api_tokens.find(token);
    if is_admin {
        return Ok(Some(Caller {
            tenant,
            role: Role::Admin,
            name: ADMIN_TOKEN_NAME.into(),
        }));
    }
    if is_reader {
        return Ok(Some(Caller {
            tenant,
            role: Role::Auditor,
            name: READ_TOKEN_NAME.into(),
        }));
    }
    match scoped {
        Some(r) if r.tenant == tenant => Ok(Some(Caller {
            tenant,
            role: r.role,
            name: r.name,
        })),
        Some(r) => Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "token {:?} belongs to tenant {:?}, not to tenant {:?} whose routes these are",
                r.name, r.tenant, tenant
            ),
        )),
        None => Ok(None),
    }
}

/// The caller of a request, if it holds at least `role` in the tenant `st` serves:
/// `401 unauthenticated` without a known token, `403 forbidden` with another tenant's token or
/// a lower role.
pub(crate) fn require(st: &State, headers: &HeaderMap, role: Role) -> Result<Caller, ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorKind::Unauthenticated,
            format!(
                "this call needs a Bearer token with the {role} role in tenant {:?} (the admin \
                 token keys/admin.token, or a token from `vouch token create-api`)",
                st.tenant
            ),
        )
    };
    let token = bearer(headers).ok_or_else(unknown)?;
    let caller = identify(st, token)?.ok_or_else(unknown)?;
    allow(caller, role)
}

/// Who a change is recorded as made by, when the request names someone (`by` of a revocation
/// or re-enrolment): the tenant's admin token is shared, so the person it names is taken as
/// given; a scoped token names its holder, who stays on the record (`alice (bob)` when alice's
/// token says bob), so no token can put a change on someone else.
pub(crate) fn attributed(caller: &Caller, claimed: Option<String>) -> String {
    match claimed {
        None => caller.name.clone(),
        Some(b) if caller.name == ADMIN_TOKEN_NAME || b == caller.name => b,
        Some(b) => format!("{} ({b})", caller.name),
    }
}

/// `caller` if its role is at least `role`.
pub(crate) fn allow(caller: Caller, role: Role) -> Result<Caller, ApiError> {
    if caller.role >= role {
        Ok(caller)
    } else {
        Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "token {:?} has the {} role in tenant {:?}; this call needs {role}",
                caller.name, caller.role, caller.tenant
            ),
        ))
    }
}

/// The management of a tenant's scoped API tokens, for its admins:
/// `GET /v1/api-tokens` (names, roles, creation times), `POST /v1/api-tokens`
/// `{name, role}` (the token, shown once), `DELETE /v1/api-tokens/{name}`.
pub(crate) fn routes() -> axum::Router<std::sync::Arc<State>> {
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/v1/api-tokens", get(list_tokens).post(create_token))
        .route("/v1/api-tokens/{name}", delete(delete_token))
}

type S = axum::extract::State<std::sync::Arc<State>>;

async fn list_tokens(st: S, headers: HeaderMap) -> axum::response::Response {
    crate::routes::reply((|| {
        require(&st, &headers, Role::Admin)?;
        let held = st.api_tokens.held.read().unwrap_or_else(|p| p.into_inner());
        Ok(held
            .1
            .iter()
            .filter(|(_, r)| r.tenant == st.tenant)
            .map(|(_, r)| serde_json::json!({"name": r.name, "role": r.role, "created_at": r.created_at}))
            .collect::<Vec<_>>())
    })())
}

/// `POST /v1/api-tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiToken {
    name: String,
    role: Role,
}

/// A token holder's name: 1-64 of `A-Z a-z 0-9 . _ @ -` (it is the audit log's actor), and
/// not the names of the tenant's own tokens (`admin-api`, `read-token`), which a scoped token
/// must not pass for.
pub fn valid_token_name(name: &str) -> bool {
    name != ADMIN_TOKEN_NAME
        && name != READ_TOKEN_NAME
        && (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

async fn create_token(
    st: S,
    headers: HeaderMap,
    body: Result<crate::routes::ApiJson<NewApiToken>, ApiError>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let r = async {
        let caller = require(&st, &headers, Role::Admin)?;
        let crate::routes::ApiJson(n) = body?;
        if !valid_token_name(&n.name) {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "a token name is 1-64 of A-Z a-z 0-9 . _ @ -, and not admin-api or read-token",
            ));
        }
        let (token, record) = mint_api_token(&n.name, &st.tenant, n.role, crate::unix_now());
        let sha256 = record.sha256.clone();
        st.api_tokens.rewrite(|file| {
            if file
                .tokens
                .iter()
                .any(|t| t.name == n.name && t.tenant == st.tenant)
            {
                return Err(ApiError::new(
                    ErrorKind::MalformedRequest,
                    format!(
                        "tenant {:?} already has a token named {:?}",
                        st.tenant, n.name
                    ),
                ));
            }
            file.tokens.push(record);
            Ok(())
        })?;
        let body = serde_json::json!({"role": n.role, "sha256": sha256});
        st.audit("api-token.create", &caller.name, &n.name, body)
            .await;
        Ok(serde_json::json!({"name": n.name, "tenant": st.tenant, "role": n.role, "token": token}))
    }
    .await;
    match r {
        Ok(v) => (axum::http::StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => crate::routes::with_kind(e),
    }
}

async fn delete_token(
    st: S,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let r = async {
        let caller = require(&st, &headers, Role::Admin)?;
        let removed = st.api_tokens.rewrite(|file| {
            let before = file.tokens.len();
            file.tokens
                .retain(|t| !(t.name == name && t.tenant == st.tenant));
            Ok(file.tokens.len() < before)
        })?;
        if !removed {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "tenant {:?} has no token named {:?}",
                    st.tenant,
                    vouch_core::clip(&name, 64)
                ),
            ));
        }
        st.audit(
            "api-token.delete",
            &caller.name,
            &name,
            serde_json::json!({}),
        )
        .await;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => axum::http::StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::routes::with_kind(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Auditor);
        for r in [Role::Auditor, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn tenant_names() {
        assert!(valid_tenant_name("acme"));
        assert!(valid_tenant_name("team-2"));
        for bad in ["", "Acme", "2team", "a/b", "..", "a b", &"a".repeat(64)] {
            assert!(!valid_tenant_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn scoped_tokens_are_found_by_hash_and_a_flipped_character_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(API_TOKENS_FILE);
        let (token, rec) = mint_api_token("alice", "acme", Role::Operator, 1);
        let file = ApiTokenFile { tokens: vec![rec] };
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let t = ApiTokens::open(path).unwrap();
        assert_eq!(t.find(&token).unwrap().name, "alice");
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(t.find(std::str::from_utf8(&flipped).unwrap()).is_none());
        assert!(t.find("").is_none());
    }
}

//! JWT-SVIDs from the SPIFFE Workload API: a [`JwtSource`] holds the `FetchJWTBundles` stream
//! of the local agent open, so JWT-SVIDs that other workloads present are validated offline
//! against the current `jwt-svid` keys of their trust domain, and fetches this workload's own
//! JWT-SVIDs for an audience (like go-spiffe's `JwtSource`).
//!
//! ```no_run
//! # async fn f() -> Result<(), vouch_rp::RpError> {
//! let jwt = vouch_rp::JwtSource::connect("/run/vouch/agent.sock".as_ref()).await?;
//! let mine = jwt.fetch_svid(&["database"]).await?; // send as `Authorization: Bearer …`
//! let (caller, claims) = jwt.validate(&mine, "database")?; // on the receiving side
//! println!("{caller} until {}", claims.exp);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::sync::watch;
use vouch_spiffe::workload_api::{self, proto};
use vouch_spiffe::{JwtSvidClaims, JwtSvidValidator, SpiffeId, TrustDomain};

use crate::RpError;

/// How long [`JwtSource::connect`] waits for the first bundles.
const FIRST_UPDATE: Duration = Duration::from_secs(30);
/// Longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest JWT bundle document read, bytes.
const MAX_JWKS: usize = 1024 * 1024;

fn wapi(m: impl std::fmt::Display) -> RpError {
    RpError::WorkloadApi(m.to_string())
}

#[derive(Debug)]
struct Inner {
    socket: PathBuf,
    /// Validators by trust domain name.
    bundles: RwLock<HashMap<String, JwtSvidValidator>>,
    updates: watch::Sender<u64>,
    last_error: Mutex<Option<String>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
    }
}

/// The current JWT bundles from the SPIFFE Workload API, kept current by its stream, and this
/// workload's JWT-SVIDs on request. Cheap to clone; clones share one stream.
#[derive(Debug, Clone)]
pub struct JwtSource {
    inner: Arc<Inner>,
}

impl JwtSource {
    /// Connect to the Workload API at `socket` and wait (up to 30 s) for the first bundles.
    pub async fn connect(socket: &Path) -> Result<Self, RpError> {
        let (updates, mut rx) = watch::channel(0);
        let inner = Arc::new(Inner {
            socket: socket.to_path_buf(),
            bundles: RwLock::new(HashMap::new()),
            updates,
            last_error: Mutex::new(None),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&inner), socket.to_path_buf()));
        if let Ok(mut t) = inner.task.lock() {
            *t = Some(task.abort_handle());
        }
        let source = Self { inner };
        let waited = tokio::time::timeout(FIRST_UPDATE, async {
            while source.bundle_count() == 0 {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if waited.is_err() || source.bundle_count() == 0 {
            let last = source
                .inner
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(wapi(format!(
                "no JWT bundle from {} within {} s{last}",
                socket.display(),
                FIRST_UPDATE.as_secs()
            )));
        }
        Ok(source)
    }

    fn bundle_count(&self) -> usize {
        self.inner
            .bundles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// A receiver whose value moves on every bundle update.
    pub fn updates(&self) -> watch::Receiver<u64> {
        self.inner.updates.subscribe()
    }

    /// Validate `token`, a JWT-SVID presented to this workload, for `audience`, against the
    /// current `jwt-svid` keys of the trust domain its `sub` names: signature (ES256, by
    /// `kid`), `aud`, `exp`. Returns the caller's SPIFFE ID and the claims.
    pub fn validate(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<(SpiffeId, JwtSvidClaims), RpError> {
        let sub = unverified_sub(token)?;
        let id = SpiffeId::parse(&sub).map_err(|e| RpError::Malformed(e.to_string()))?;
        let bundles = self
            .inner
            .bundles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let validator = bundles
            .get(id.trust_domain().as_str())
            .ok_or_else(|| RpError::Keys(format!("no JWT bundle for {}", id.trust_domain())))?;
        validator
            .validate(token, audience, unix_now())
            .map_err(|e| RpError::Malformed(e.to_string()))
    }

    /// Fetch a JWT-SVID of this workload for `audience` (a new unary call each time: the agent
    /// signs it afresh, so cache it yourself until shortly before its `exp`).
    pub async fn fetch_svid(&self, audience: &[&str]) -> Result<String, RpError> {
        let mut client = workload_api::client(&self.inner.socket);
        let resp = client
            .fetch_jwtsvid(workload_api::request(proto::JwtsvidRequest {
                audience: audience.iter().map(|a| a.to_string()).collect(),
                spiffe_id: String::new(),
            }))
            .await
            .map_err(|s| wapi(format!("{:?}: {}", s.code(), s.message())))?
            .into_inner();
        resp.svids
            .into_iter()
            .next()
            .map(|s| s.svid)
            .ok_or_else(|| wapi("the response holds no JWT-SVID"))
    }
}

/// The `sub` of a JWT, unverified (to choose the bundle that verifies it).
fn unverified_sub(token: &str) -> Result<String, RpError> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| RpError::Malformed("not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| RpError::Malformed("payload is not base64url".into()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| RpError::Malformed("payload is not JSON".into()))?;
    v.get("sub")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| RpError::Malformed("no sub".into()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The validators of a `FetchJWTBundles` message (trust domain SPIFFE ID → JWKS).
fn parse(msg: &proto::JwtBundlesResponse) -> Result<HashMap<String, JwtSvidValidator>, RpError> {
    let mut out = HashMap::new();
    for (td, jwks) in &msg.bundles {
        if jwks.len() > MAX_JWKS {
            return Err(wapi(format!(
                "the JWT bundle of {td} is over {MAX_JWKS} bytes"
            )));
        }
        let td = TrustDomain::parse(td).map_err(wapi)?;
        let doc: serde_json::Value = serde_json::from_slice(jwks)
            .map_err(|e| wapi(format!("the JWT bundle of {td} is not JSON: {e}")))?;
        let v = JwtSvidValidator::from_bundle(&td, &doc).map_err(wapi)?;
        out.insert(td.as_str().to_string(), v);
    }
    Ok(out)
}

async fn run(weak: Weak<Inner>, socket: PathBuf) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut client = workload_api::client(&socket);
        let res = client
            .fetch_jwt_bundles(workload_api::request(proto::JwtBundlesRequest {}))
            .await;
        let failure = match res {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(msg)) => {
                            let Some(inner) = weak.upgrade() else {
                                return;
                            };
                            match parse(&msg) {
                                Ok(b) => {
                                    *inner
                                        .bundles
                                        .write()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner) = b;
                                    inner.updates.send_modify(|n| *n += 1);
                                    backoff = Duration::from_millis(200);
                                }
                                Err(e) => tracing::warn!("unusable JWT bundle update: {e}"),
                            }
                        }
                        Ok(None) => break "stream ended".to_string(),
                        Err(s) => break format!("{:?}: {}", s.code(), s.message()),
                    }
                }
            }
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        let Some(inner) = weak.upgrade() else {
            return;
        };
        tracing::warn!("Workload API JWT bundles: {failure}; keeping the bundles held");
        if let Ok(mut e) = inner.last_error.lock() {
            *e = Some(failure);
        }
        inner.updates.send_modify(|n| *n += 1);
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

//! `POST /v1/timestamp` (issue 15 part 7): the verifier countersigns the digest of a signature
//! (a builder's DSSE signature over SLSA provenance) with the time it saw it, so that the time
//! a provenance signature is checked at is not one its signer chose.
//!
//! The caller presents the digest (`sha256:<hex>`, of the signature bytes) and an attestation
//! result this verifier issued (`result`, the compact JWS `vouch attest --ci` wrote). The
//! result must be the exact one recorded in the store, affirming, unexpired, its workload
//! still held affirming now, and neither the result nor its workload nor its node revoked.
//! The caller also presents the signer's leaf certificate (`certificate`, base64 DER): it must
//! be an X.509-SVID this verifier issued (its DER's SHA-256 recorded at issuance, table
//! `issued_svids`) to that very workload on that node, unexpired now, its serial not revoked. So
//! a leaked SVID key cannot borrow another workload's result, and the timestamp binds the
//! signer: the gate (`vouch provenance verify`, `vouch custody verify`) requires its `x5t#S256`
//! to be the SHA-256 of the certificate the countersigned signature was made with.
//! The answer is a compact JWS of type [`TIMESTAMP_TYP`] signed by the active result-signing
//! key (its `kid` in the JWKS relying parties already trust, its replica certificate in
//! `x5c`), with claims `{iss, sub, att, digest, x5t#S256, spiffe_id, iat}`: `sub` the workload
//! the result is about, `att` its attestation id, `x5t#S256` the base64url SHA-256 of the
//! certificate, `spiffe_id` its SPIFFE ID, `iat` this verifier's clock.
//!
//! Bounded: the body is at most [`MAX_BODY`] bytes, and one workload gets at most
//! [`PER_MINUTE`] timestamps a minute (a caller needs a current affirming result at all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State as AxState;
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use vouch_core::{ArStatus, ErrorKind};

use crate::ApiError;
use crate::routes::{ApiJson, reply};
use crate::state::{State, unix_now};

type S = Arc<State>;

/// The JWS `typ` of a timestamp: a result (`JWT`) or revocation record is never one.
pub const TIMESTAMP_TYP: &str = "vouch-timestamp+jwt";
/// Largest request body, bytes (a digest and one result).
pub const MAX_BODY: usize = 32 * 1024;
/// Most timestamps one workload gets in a minute.
pub const PER_MINUTE: u32 = 60;
/// Most workloads whose counts are kept (the map is cleared beyond it).
const MAX_TRACKED: usize = 10_000;

/// `POST /v1/timestamp` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimestampRequest {
    /// `sha256:<64 lower-case hex>`: the digest of the signature to countersign.
    digest: String,
    /// An attestation result this verifier issued (compact JWS).
    result: String,
    /// The signer's leaf X.509-SVID, base64 (standard alphabet, as in `x5c`) DER.
    certificate: String,
}

/// `POST /v1/timestamp` answer.
#[derive(Debug, Serialize)]
struct TimestampResponse {
    /// The compact JWS.
    timestamp: String,
    /// Its `iat`, for the caller's information.
    time: u64,
    /// The signing key's id in the JWKS.
    kid: String,
}

/// The claims of a timestamp.
#[derive(Debug, Serialize)]
struct TimestampClaims<'a> {
    iss: String,
    sub: &'a str,
    att: &'a str,
    digest: &'a str,
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
    spiffe_id: &'a str,
    iat: u64,
}

/// The timestamp route, merged into the verifier's router.
pub(crate) fn routes() -> Router<S> {
    Router::new().route(
        "/v1/timestamp",
        post(timestamp).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
    )
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::MalformedRequest, msg)
}

fn refused(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::NotAttested, msg)
}

/// Count one timestamp for `workload` in the current minute; false past [`PER_MINUTE`].
fn within_rate(workload: &str, now: u64) -> bool {
    static COUNTS: OnceLock<Mutex<HashMap<String, (u64, u32)>>> = OnceLock::new();
    let mut m = COUNTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let minute = now / 60;
    if m.len() >= MAX_TRACKED && !m.contains_key(workload) {
        m.retain(|_, (w, _)| *w == minute);
        if m.len() >= MAX_TRACKED {
            m.clear();
        }
    }
    let e = m.entry(workload.to_string()).or_insert((minute, 0));
    if e.0 != minute {
        *e = (minute, 0);
    }
    e.1 += 1;
    e.1 <= PER_MINUTE
}

/// The `jti` of a compact JWS's payload, read before anything is trusted: it only names the
/// record the whole token is then compared with.
fn peek_jti(token: &str) -> Result<String, ApiError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("result is not a compact JWS"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad("result payload is not base64url"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("result payload is not JSON"))?;
    v["jti"]
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 128)
        .map(str::to_string)
        .ok_or_else(|| bad("result has no jti"))
}

impl State {
    /// `POST /v1/timestamp`: see the [module](self) documentation.
    async fn timestamp(&self, req: TimestampRequest) -> Result<TimestampResponse, ApiError> {
        let hex = req
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| bad("digest must be sha256: and 64 lower-case hex digits"))?;
        let der = STANDARD
            .decode(req.certificate.trim())
            .map_err(|_| bad("certificate must be base64 DER"))?;
        if der.is_empty() {
            return Err(bad("certificate is empty"));
        }
        let cert_sha = sha2::Sha256::digest(&der);
        let id = peek_jti(&req.result)?;
        let rec = self
            .store
            .attestation(&id)
            .await?
            .filter(|r| r.result == req.result)
            .ok_or_else(|| refused("the result is not one this verifier issued"))?;
        let now = unix_now();
        if rec.status != ArStatus::Affirming.as_str() {
            return Err(refused(format!("the result is {}", rec.status)));
        }
        if rec.expires_at <= now {
            return Err(refused("the result has expired"));
        }
        let w = self.store.workload(&rec.workload_id).await?;
        if let Some(w) = w.filter(|w| w.status != ArStatus::Affirming.as_str()) {
            return Err(refused(format!(
                "workload {} is now {} ({})",
                w.id, w.status, w.reason
            )));
        }
        for (kind, target) in [
            ("result", rec.id.as_str()),
            ("workload", rec.workload_id.as_str()),
            ("node", rec.node_id.as_str()),
        ] {
            if self.store.revocation(kind, target).await?.is_some() {
                return Err(ApiError::new(
                    ErrorKind::Revoked,
                    format!("{kind} {target} is revoked"),
                ));
            }
        }
        // The signer's certificate: issued by this verifier to this very workload.
        let svid = self
            .store
            .issued_svid(&hex::encode(cert_sha))
            .await?
            .ok_or_else(|| refused("the certificate is not an X.509-SVID this verifier issued"))?;
        if svid.workload != rec.workload_id || svid.node_id != rec.node_id {
            return Err(refused(format!(
                "the certificate was issued to workload {}, not to {} whose result was presented",
                svid.workload, rec.workload_id
            )));
        }
        if svid.not_after <= now {
            return Err(refused(format!(
                "the certificate expired at {}",
                svid.not_after
            )));
        }
        if self.store.revocation("svid", &svid.serial).await?.is_some() {
            return Err(ApiError::new(
                ErrorKind::Revoked,
                format!("svid {} is revoked", svid.serial),
            ));
        }
        if !within_rate(&rec.workload_id, now) {
            return Err(ApiError::new(
                ErrorKind::Overloaded,
                format!(
                    "workload {} had {PER_MINUTE} timestamps this minute",
                    rec.workload_id
                ),
            ));
        }
        let keyring = self.keyring();
        let key = keyring
            .active()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no active result-signing key"))?;
        let cert = self.replica_cert(key)?;
        let digest = format!("sha256:{hex}");
        let claims = TimestampClaims {
            iss: cert.id.to_string(),
            sub: &rec.workload_id,
            att: &rec.id,
            digest: &digest,
            x5t_s256: URL_SAFE_NO_PAD.encode(cert_sha),
            spiffe_id: &svid.spiffe_id,
            iat: now,
        };
        let timestamp = key
            .sign_jws(TIMESTAMP_TYP, &cert.chain, &claims)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        tracing::info!(workload = %rec.workload_id, %digest, "timestamp signed");
        Ok(TimestampResponse {
            timestamp,
            time: now,
            kid: key.kid().to_string(),
        })
    }
}

async fn timestamp(
    AxState(st): AxState<S>,
    body: Result<ApiJson<TimestampRequest>, ApiError>,
) -> Response {
    match body {
        Ok(ApiJson(r)) => reply(st.timestamp(r).await),
        Err(e) => crate::routes::with_kind(e),
    }
}

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

use vouch_core::ErrorKind;
use vouch_core::wire::{
    AttestRequest, AttestationResult, ChallengeResponse, EnrollRequest, EnrollResponse, ErrorBody,
};

use crate::AgentError;

/// An HTTPS client for the verifier API.
#[derive(Clone)]
pub struct VerifierClient {
    http: reqwest::Client,
    base: String,
    read_token: Option<String>,
}

impl std::fmt::Debug for VerifierClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The read token is a credential: never printed.
        f.debug_struct("VerifierClient")
            .field("base", &self.base)
            .field("read_token", &self.read_token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl VerifierClient {
    /// A client for the verifier at `base` (`https://host:port`), trusting `ca_cert` (PEM) in
    /// addition to nothing else when given, or the system roots when not.
    pub fn new(base: &str, ca_cert: Option<&Path>) -> Result<Self, AgentError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("vouch-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = ca_cert {
            let pem = std::fs::read(p).map_err(|source| AgentError::Io {
                what: format!("reading CA certificate {}", p.display()),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| AgentError::Config(format!("CA certificate {}: {e}", p.display())))?;
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| AgentError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            read_token: None,
        })
    }

    /// Send `token` (the verifier's read or admin token) with reads of the read-only views
    /// ([`VerifierClient::result`]).
    pub fn with_read_token(mut self, token: impl Into<String>) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// The verifier's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, AgentError> {
        let url = format!("{}{path}", self.base);
        let res = Self::send(self.http.post(&url).json(body), "POST", path)
            .await
            .map_err(|source| AgentError::Unreachable {
                url: url.clone(),
                source,
            })?;
        Self::decode(res).await
    }

    /// Send `req` with a new request id (`x-request-id`), which the verifier logs with the
    /// request and echoes; the call is logged (debug, or warn on a server error) with it.
    async fn send(
        req: reqwest::RequestBuilder,
        method: &'static str,
        path: &str,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let id = new_request_id();
        let started = std::time::Instant::now();
        let r = req.header(vouch_core::request_id::HEADER, &id).send().await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &r {
            Ok(res) if res.status().is_server_error() => tracing::warn!(
                request_id = %id, method, path, status = res.status().as_u16(), ms,
                "verifier call failed"
            ),
            Ok(res) => tracing::debug!(
                request_id = %id, method, path, status = res.status().as_u16(), ms,
                "verifier call"
            ),
            Err(e) => tracing::debug!(request_id = %id, method, path, ms, "verifier call: {e}"),
        }
        r
    }

    async fn decode<R: DeserializeOwned>(res: reqwest::Response) -> Result<R, AgentError> {
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| AgentError::Protocol(format!("reading body: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::Protocol(format!("{status}: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(AgentError::Refused {
                status: status.as_u16(),
                kind: ErrorKind::parse(&b.error.kind).unwrap_or(ErrorKind::Internal),
                message: b.error.message,
            }),
            Err(_) => Err(AgentError::Protocol(format!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
    }

    /// `POST /v1/secrets/release`
    pub async fn secret_release(
        &self,
        req: &vouch_core::wire::SecretReleaseRequest,
    ) -> Result<vouch_core::wire::SecretReleaseResponse, AgentError> {
        self.post("/v1/secrets/release", req).await
    }

    /// `POST /v1/challenge`
    pub async fn challenge(&self) -> Result<ChallengeResponse, AgentError> {
        self.post("/v1/challenge", &serde_json::json!({})).await
    }

    /// `POST /v1/enroll`
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, AgentError> {
        self.post("/v1/enroll", req).await
    }

    /// `POST /v1/node/attest`
    pub async fn node_attest(
        &self,
        req: &vouch_core::wire::NodeAttestRequest,
    ) -> Result<EnrollResponse, AgentError> {
        self.post("/v1/node/attest", req).await
    }

    /// `POST /v1/tpm/enroll`
    pub async fn tpm_enroll(
        &self,
        req: &vouch_core::wire::TpmEnrollRequest,
    ) -> Result<vouch_core::wire::TpmEnrollResponse, AgentError> {
        self.post("/v1/tpm/enroll", req).await
    }

    /// `POST /v1/tpm/activate`
    pub async fn tpm_activate(
        &self,
        req: &vouch_core::wire::TpmActivateRequest,
    ) -> Result<vouch_core::wire::TpmActivateResponse, AgentError> {
        self.post("/v1/tpm/activate", req).await
    }

    /// `POST /v1/tpm/join`: a TPM join without a join token (its credential challenge).
    pub async fn tpm_join(
        &self,
        req: &vouch_core::wire::TpmJoinRequest,
    ) -> Result<vouch_core::wire::TpmJoinResponse, AgentError> {
        self.post("/v1/tpm/join", req).await
    }

    /// `POST /v1/tpm/join/activate`: complete a TPM join with the activated secret.
    pub async fn tpm_join_activate(
        &self,
        req: &vouch_core::wire::TpmJoinActivateRequest,
    ) -> Result<vouch_core::wire::TpmJoinActivateResponse, AgentError> {
        self.post("/v1/tpm/join/activate", req).await
    }

    /// `POST /v1/svid`
    pub async fn svid(
        &self,
        req: &vouch_core::wire::SvidRequest,
    ) -> Result<vouch_core::wire::SvidResponse, AgentError> {
        self.post("/v1/svid", req).await
    }

    /// `POST /v1/jwt-svid`
    pub async fn jwt_svid(
        &self,
        req: &vouch_core::wire::JwtSvidRequest,
    ) -> Result<Vec<vouch_core::wire::IssuedJwtSvid>, AgentError> {
        self.post("/v1/jwt-svid", req).await
    }

    /// `GET /v1/federation`: federated trust domains' bundles.
    pub async fn federation(&self) -> Result<serde_json::Value, AgentError> {
        Self::decode(self.get("/v1/federation").await?).await
    }

    /// `GET /v1/bundle`: the SPIFFE trust bundle.
    pub async fn bundle(&self) -> Result<serde_json::Value, AgentError> {
        Self::decode(self.get("/v1/bundle").await?).await
    }

    /// `POST /v1/entries/watch`: wait (up to the verifier's watch timeout, `wait` at most
    /// here) until the registration entries move past `req.since`.
    pub async fn entries_watch(
        &self,
        req: &vouch_core::wire::EntriesRequest,
        wait: Duration,
    ) -> Result<vouch_core::wire::EntriesWatchResponse, AgentError> {
        let url = format!("{}/v1/entries/watch", self.base);
        let res = Self::send(
            self.http.post(&url).json(req).timeout(wait),
            "POST",
            "/v1/entries/watch",
        )
        .await
        .map_err(|source| AgentError::Unreachable {
            url: url.clone(),
            source,
        })?;
        Self::decode(res).await
    }

    /// `POST /v1/entries/sync`: the registration entries of this node changed after
    /// `req.since` (or all of them).
    pub async fn entries_sync(
        &self,
        req: &vouch_core::wire::EntriesRequest,
    ) -> Result<vouch_core::wire::EntriesSyncResponse, AgentError> {
        self.post("/v1/entries/sync", req).await
    }

    /// `POST /v1/attest`
    pub async fn attest(&self, req: &AttestRequest) -> Result<AttestationResult, AgentError> {
        self.post("/v1/attest", req).await
    }

    /// `POST /v1/attest` with an arbitrary body (for tests of the verifier's input handling).
    pub async fn attest_raw(&self, body: Vec<u8>) -> Result<AttestationResult, AgentError> {
        let url = format!("{}/v1/attest", self.base);
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        let res = Self::send(req, "POST", "/v1/attest")
            .await
            .map_err(|source| AgentError::Unreachable { url, source })?;
        Self::decode(res).await
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, AgentError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.read_token {
            req = req.bearer_auth(t);
        }
        Self::send(req, "GET", path)
            .await
            .map_err(|source| AgentError::Unreachable { url, source })
    }

    /// The verifier's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /readyz`: whether the verifier can take attestations (its store answers and it
    /// has a signing key).
    pub async fn ready(&self) -> bool {
        self.get("/readyz")
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /v1/results/{id}`
    pub async fn result(&self, id: &str) -> Result<AttestationResult, AgentError> {
        Self::decode(self.get(&format!("/v1/results/{id}")).await?).await
    }

    /// `POST /v1/timestamp`: the verifier's signed timestamp (`{timestamp, time, kid}`) of
    /// `digest` (`sha256:<hex>` of a signature), on presentation of `result`, an attestation
    /// result it issued, and `certificate` (DER), the X.509-SVID the signature was made with,
    /// which it must have issued to that result's workload.
    pub async fn timestamp(
        &self,
        digest: &str,
        result: &str,
        certificate: &[u8],
    ) -> Result<serde_json::Value, AgentError> {
        use base64::Engine as _;
        let certificate = base64::engine::general_purpose::STANDARD.encode(certificate);
        self.post(
            "/v1/timestamp",
            &serde_json::json!({ "digest": digest, "result": result, "certificate": certificate }),
        )
        .await
    }

    /// `GET /v1/revocations`, every page: the public revocation feed (signed records, with
    /// their ML-DSA-65 forms when the verifier makes them, and the last page's fresh signed
    /// head) as one JSON text in the feed's own shape. Pages are asked for `after` the last
    /// record received until one comes back short; each page is read up to
    /// [`MAX_FEED_PAGE`] bytes and at most [`MAX_FEED_PAGES`] pages are read, so a verifier
    /// (or whoever answers in its name) cannot make the caller read without end. Nothing is
    /// trusted here: the records and head are checked by whoever loads them
    /// (`vouch_rp::RevocationSet`), and a feed missing records it announces is incomplete
    /// there.
    pub async fn revocations(&self) -> Result<String, AgentError> {
        let (mut records, mut records_pq) = (Vec::new(), Vec::new());
        let mut after = 0u64;
        for _ in 0..MAX_FEED_PAGES {
            let path = format!("/v1/revocations?after={after}&limit={FEED_PAGE_RECORDS}");
            let res = self.get(&path).await?;
            let url = res.url().to_string();
            if !res.status().is_success() {
                return Err(AgentError::Protocol(format!("{url}: {}", res.status())));
            }
            let body = read_bounded(res, MAX_FEED_PAGE)
                .await
                .map_err(|e| AgentError::Protocol(format!("reading the revocation feed: {e}")))?;
            let mut page: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| AgentError::Protocol(format!("the revocation feed: {e}")))?;
            let got = match page["records"].take() {
                serde_json::Value::Array(r) => r,
                _ => {
                    return Err(AgentError::Protocol(
                        "the revocation feed has no records array".into(),
                    ));
                }
            };
            let n = got.len();
            records.extend(got);
            if let serde_json::Value::Array(pq) = page["records_pq"].take() {
                records_pq.extend(pq);
            }
            let head = page["head"].take();
            let head_pq = page["head_pq"].take();
            after += n as u64;
            if n < FEED_PAGE_RECORDS {
                let mut feed = serde_json::json!({ "records": records, "head": head });
                // The post-quantum forms only when every page carried them, one per record.
                if !head_pq.is_null() && records_pq.len() == records.len() {
                    feed["records_pq"] = serde_json::Value::Array(records_pq);
                    feed["head_pq"] = head_pq;
                }
                return Ok(feed.to_string());
            }
        }
        Err(AgentError::Protocol(format!(
            "the revocation feed goes on past {MAX_FEED_PAGES} pages of {FEED_PAGE_RECORDS} records"
        )))
    }

    /// `GET /.well-known/jwks.json`, as text.
    pub async fn jwks(&self) -> Result<String, AgentError> {
        let res = self.get("/.well-known/jwks.json").await?;
        let url = res.url().to_string();
        if !res.status().is_success() {
            return Err(AgentError::Protocol(format!("{url}: {}", res.status())));
        }
        res.text()
            .await
            .map_err(|e| AgentError::Protocol(format!("reading JWKS: {e}")))
    }
}

/// Records asked for per page of the revocation feed (the verifier's largest page).
const FEED_PAGE_RECORDS: usize = 1000;
/// Most bytes read of one page of the revocation feed: 1,000 records, each co-signed with
/// ML-DSA-65 and carrying its certificate, are ~9 MB.
pub const MAX_FEED_PAGE: usize = 32 << 20;
/// Most pages of the revocation feed read in one [`VerifierClient::revocations`].
pub const MAX_FEED_PAGES: usize = 1000;

/// The body of `res`, refused once it passes `max` bytes (announced or received).
async fn read_bounded(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if res.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("longer than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("longer than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A new request id: 16 random bytes as hex.
fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // An id only correlates log lines: a failed RNG gives a fixed one, not an error.
    let _ = aws_lc_rs::rand::fill(&mut b);
    vouch_core::request_id::from_random(b)
}

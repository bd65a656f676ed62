//! Key sets that refresh themselves: the verifier's JWKS (or a SPIFFE trust bundle) fetched
//! over HTTPS and kept current, so a relying party never fetches keys by hand.
//!
//! A [`JwksSource`] fetches the document once when built (and fails if it cannot), then in
//! the background every refresh interval (the server's `Cache-Control: max-age`, or the
//! bundle's `spiffe_refresh_hint`, clamped to [`JwksConfig::min_refresh`]..
//! [`JwksConfig::max_refresh`]), and at once when a result names a `kid` it does not hold
//! (the verifier rotated keys), at most once per [`JwksConfig::min_refresh`] so a stream of
//! tokens with made-up `kid`s cannot make it hammer the verifier. A failed fetch is retried
//! with exponential backoff; the last good keys are kept meanwhile, until they are older
//! than [`JwksConfig::max_stale`], after which every result is refused
//! ([`RpError::KeysStale`]): a relying party cut off from its verifier for that long no
//! longer learns of removed keys.
//!
//! ```no_run
//! # async fn f() -> Result<(), vouch_rp::RpError> {
//! use vouch_rp::{JwksSource, Requirements};
//! let ca = std::fs::read("verifier-ca.pem").unwrap_or_default();
//! let keys = JwksSource::builder("https://verifier.example:8443/.well-known/jwks.json")
//!     .ca_pem(&ca)
//!     .build()
//!     .await?;
//! let token = "eyJ...";
//! let result = keys.verify(token, &Requirements::for_audience("database")).await?;
//! println!("{:?} is {}", result.subject, result.status);
//! # Ok(()) }
//! ```

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use crate::{Requirements, ResultVerifier, RpError, VerifiedResult};

/// Longest key set document read, bytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// How a [`JwksSource`] refreshes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksConfig {
    /// Refresh no more often than this (also the least time between two fetches caused by
    /// unknown `kid`s). Default 5 s.
    pub min_refresh: Duration,
    /// Refresh at least this often, whatever the server's hint. Default 5 min.
    pub max_refresh: Duration,
    /// Refresh interval when the server gives no hint. Default 60 s.
    pub default_refresh: Duration,
    /// Refuse every result once the last good fetch is older than this. Default 24 h.
    pub max_stale: Duration,
    /// Time allowed for one fetch. Default 10 s.
    pub timeout: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(5),
            max_refresh: Duration::from_secs(300),
            default_refresh: Duration::from_secs(60),
            max_stale: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a [`JwksSource`].
#[derive(Debug)]
pub struct JwksSourceBuilder {
    url: String,
    ca_pem: Option<Vec<u8>>,
    http: Option<reqwest::Client>,
    config: JwksConfig,
    bundle: Option<crate::TrustDomain>,
}

impl JwksSourceBuilder {
    /// Trust only this CA (PEM, one or more certificates) for the HTTPS connection, instead
    /// of the platform's roots (the verifier's own CA, `ca.pem`).
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        self.ca_pem = Some(pem.to_vec());
        self
    }

    /// Fetch with this client (its TLS roots, proxy and timeouts) instead of building one.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Refresh settings.
    pub fn config(mut self, config: JwksConfig) -> Self {
        self.config = config;
        self
    }

    /// The document is the SPIFFE trust bundle of `trust_domain` (`GET /v1/bundle`), not a
    /// result JWKS: results are then accepted when their `x5c` chains to its X.509
    /// authorities ([`ResultVerifier::from_trust_bundle`]), and its `spiffe_refresh_hint`
    /// sets the refresh interval. [`JwksSource::bundle`] gives the bundle itself.
    pub fn trust_bundle(mut self, trust_domain: crate::TrustDomain) -> Self {
        self.bundle = Some(trust_domain);
        self
    }

    /// Fetch the document once (an error if that fails or it holds no usable key) and start
    /// refreshing it in the background (on the current tokio runtime). The background task
    /// ends when the last clone of the source is dropped.
    pub async fn build(self) -> Result<JwksSource, RpError> {
        let http = match self.http {
            Some(h) => h,
            None => {
                let mut b = reqwest::Client::builder()
                    .timeout(self.config.timeout)
                    .https_only(!self.url.starts_with("http://"));
                if let Some(pem) = &self.ca_pem {
                    let certs = reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| RpError::Keys(format!("CA certificate: {e}")))?;
                    b = b.tls_certs_only(certs);
                }
                b.build()
                    .map_err(|e| RpError::Keys(format!("HTTP client: {e}")))?
            }
        };
        let inner = Arc::new(Inner {
            url: self.url,
            http,
            config: self.config,
            bundle_td: self.bundle,
            current: RwLock::new(None),
            fetching: AsyncMutex::new(None),
        });
        let first = inner.fetch().await?;
        let next = first.refresh;
        inner.install(first);
        let weak = Arc::downgrade(&inner);
        tokio::spawn(refresh_loop(weak, next));
        Ok(JwksSource { inner })
    }
}

/// A verifier's key set (or trust bundle), fetched over HTTPS and kept current in the
/// background. Cheap to clone; clones share one key set and one refresh task.
#[derive(Debug, Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    http: reqwest::Client,
    config: JwksConfig,
    bundle_td: Option<crate::TrustDomain>,
    current: RwLock<Option<Current>>,
    /// Held while fetching; holds when the last fetch forced by an unknown `kid` began.
    fetching: AsyncMutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Current {
    verifier: Arc<ResultVerifier>,
    bundle: Option<Arc<crate::TrustBundle>>,
    fetched: Instant,
    /// The interval the server asked for (clamped).
    refresh: Duration,
    /// How many good fetches so far.
    generation: u64,
}

impl Inner {
    /// Fetch and parse the document (not installed).
    async fn fetch(&self) -> Result<Current, RpError> {
        let keys = |m: String| RpError::Keys(format!("{}: {m}", self.url));
        let mut res = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| keys(e.to_string()))?;
        if !res.status().is_success() {
            return Err(keys(format!("HTTP {}", res.status())));
        }
        let max_age = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| keys(e.to_string()))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(keys(format!("longer than {MAX_DOCUMENT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let (verifier, bundle, hint) = match &self.bundle_td {
            None => {
                let text = std::str::from_utf8(&body).map_err(|_| keys("not UTF-8".into()))?;
                (ResultVerifier::from_jwks_json(text)?, None, max_age)
            }
            Some(td) => {
                let bundle = crate::TrustBundle::from_jwks(td.clone(), &body)
                    .map_err(|e| keys(e.to_string()))?;
                let spiffe = crate::SpiffeVerifier::new(
                    td,
                    bundle.x509_authorities(),
                    crate::AllowedIds::AnyInTrustDomain,
                )
                .map_err(|e| keys(e.to_string()))?;
                let hint = bundle.refresh_hint().or(max_age);
                (
                    ResultVerifier::from_trust_bundle(spiffe),
                    Some(Arc::new(bundle)),
                    hint,
                )
            }
        };
        let c = &self.config;
        let refresh = hint
            .unwrap_or(c.default_refresh)
            .clamp(c.min_refresh, c.max_refresh.max(c.min_refresh));
        Ok(Current {
            verifier: Arc::new(verifier),
            bundle,
            fetched: Instant::now(),
            refresh,
            generation: 0,
        })
    }

    fn install(&self, mut new: Current) {
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        new.generation = cur.as_ref().map_or(1, |c| c.generation + 1);
        *cur = Some(new);
    }

    fn current(&self) -> Result<Current, RpError> {
        let cur = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| RpError::Keys("no key set fetched yet".into()))?;
        let age = cur.fetched.elapsed();
        if age > self.config.max_stale {
            return Err(RpError::KeysStale {
                age: age.as_secs(),
                max_age: self.config.max_stale.as_secs(),
            });
        }
        Ok(cur)
    }
}

/// `max-age` of a `Cache-Control` value.
fn max_age(v: &str) -> Option<Duration> {
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

async fn refresh_loop(weak: std::sync::Weak<Inner>, mut wait: Duration) {
    let mut backoff = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let result = {
            let _guard = inner.fetching.lock().await;
            inner.fetch().await
        };
        match result {
            Ok(c) => {
                wait = c.refresh;
                backoff = Duration::from_secs(1);
                inner.install(c);
            }
            Err(e) => {
                tracing::warn!("key set refresh failed, keeping the last good keys: {e}");
                wait = backoff.min(inner.config.max_refresh);
                backoff = (backoff * 2).min(inner.config.max_refresh);
            }
        }
    }
}

impl JwksSource {
    /// A source for the document at `url` (`https://<verifier>/.well-known/jwks.json`, or
    /// `…/v1/bundle` with [`JwksSourceBuilder::trust_bundle`]).
    pub fn builder(url: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder {
            url: url.into(),
            ca_pem: None,
            http: None,
            config: JwksConfig::default(),
            bundle: None,
        }
    }

    /// The current verifier (the last good key set). Refused once the last good fetch is
    /// older than [`JwksConfig::max_stale`].
    pub fn verifier(&self) -> Result<Arc<ResultVerifier>, RpError> {
        Ok(self.inner.current()?.verifier)
    }

    /// The current trust bundle, for a source built with [`JwksSourceBuilder::trust_bundle`].
    pub fn bundle(&self) -> Result<Option<Arc<crate::TrustBundle>>, RpError> {
        Ok(self.inner.current()?.bundle)
    }

    /// How many good fetches this source has made (1 after it is built); moves when the key
    /// set was fetched again.
    pub fn generation(&self) -> u64 {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map_or(0, |c| c.generation)
    }

    /// Fetch the document now (waiting for a fetch under way), keeping the last good keys if
    /// it fails.
    pub async fn refresh(&self) -> Result<(), RpError> {
        let _guard = self.inner.fetching.lock().await;
        let c = self.inner.fetch().await?;
        self.inner.install(c);
        Ok(())
    }

    /// Verify `token` against the current keys and `req` ([`ResultVerifier::verify`]). A
    /// token signed under a `kid` the set lacks makes the source fetch the document again
    /// once, if no such fetch began within [`JwksConfig::min_refresh`], then decide.
    pub async fn verify(&self, token: &str, req: &Requirements) -> Result<VerifiedResult, RpError> {
        let generation = self.generation();
        match self.inner.current()?.verifier.verify(token, req) {
            Err(RpError::UnknownKey(kid)) => {
                {
                    let mut last = self.inner.fetching.lock().await;
                    // Another caller may have fetched while this one waited for the lock.
                    if self.generation() == generation {
                        if last.is_some_and(|t| t.elapsed() < self.inner.config.min_refresh) {
                            return Err(RpError::UnknownKey(kid));
                        }
                        *last = Some(Instant::now());
                        match self.inner.fetch().await {
                            Ok(c) => self.inner.install(c),
                            Err(e) => {
                                tracing::warn!("key set refresh for kid {kid:?} failed: {e}");
                                return Err(RpError::UnknownKey(kid));
                            }
                        }
                    }
                }
                self.inner.current()?.verifier.verify(token, req)
            }
            other => other,
        }
    }
}

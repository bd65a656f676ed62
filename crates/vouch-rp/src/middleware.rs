//! Tower/axum middleware for relying parties: [`RequireResultLayer`] lets a request through
//! only with an attestation result that passes the relying party's [`Requirements`]
//! (verified against a [`JwksSource`]), and [`RequireSpiffeIdLayer`] only from an mTLS peer
//! whose SPIFFE ID is on an allow list ([`SpiffeTlsListener`] records it per connection).
//!
//! ```no_run
//! # async fn f(keys: vouch_rp::JwksSource, source: vouch_rp::X509Source) -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use vouch_rp::{AllowedIds, Attested, Requirements, RequireResultLayer, RequireSpiffeIdLayer, SpiffeId, SpiffeTlsListener, TlsPeer};
//! let app = Router::new()
//!     .route("/", get(|Attested(r): Attested| async move { format!("hello {:?}", r.subject) }))
//!     .layer(RequireResultLayer::new(keys, Requirements::for_audience("database")))
//!     .layer(RequireSpiffeIdLayer::new(AllowedIds::Only(vec![SpiffeId::parse("spiffe://example.org/app")?])));
//! let mut tls = source.server_config(AllowedIds::AnyInTrustDomain)?;
//! tls.alpn_protocols = vec![b"http/1.1".to_vec()];
//! let listener = SpiffeTlsListener::new(tokio::net::TcpListener::bind("0.0.0.0:8443").await?, tls.into())?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<TlsPeer>()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::{AllowedIds, JwksSource, Requirements, RpError, SpiffeId, VerifiedResult};

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// A refusal: `status`, with a JSON body naming the reason and a stable `kind`.
fn refuse(status: StatusCode, kind: &str, message: String) -> Response {
    let body = serde_json::json!({ "error": message, "kind": kind }).to_string();
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// The result a request presented, verified ([`RequireResultLayer`] puts it in the request's
/// extensions). As an extractor it refuses with 401 when no result was verified.
#[derive(Debug, Clone)]
pub struct Attested(pub Arc<VerifiedResult>);

impl<S: Send + Sync> FromRequestParts<S> for Attested {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Attested>().cloned().ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "no_result",
                "no verified attestation result (is RequireResultLayer installed?)".into(),
            )
        })
    }
}

/// Requires every request to carry an attestation result (`Authorization: Bearer <EAR>`, or
/// a header of its own) that [`JwksSource::verify`] accepts under `requirements`: missing →
/// 401, refused → 403 (the reason in the body), key set stale → 503.
#[derive(Debug, Clone)]
pub struct RequireResultLayer {
    keys: JwksSource,
    requirements: Arc<Requirements>,
    header: Option<HeaderName>,
}

impl RequireResultLayer {
    /// Verify against `keys` and `requirements` (name this relying party's audience:
    /// [`Requirements::for_audience`]).
    pub fn new(keys: JwksSource, requirements: Requirements) -> Self {
        Self {
            keys,
            requirements: Arc::new(requirements),
            header: None,
        }
    }

    /// Read the result from header `name` (its whole value) instead of `Authorization:
    /// Bearer`.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    fn token<'a, B>(&self, req: &'a Request<B>) -> Option<&'a str> {
        let v = match &self.header {
            Some(h) => req.headers().get(h)?.to_str().ok()?,
            None => {
                let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
                let (scheme, rest) = v.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                rest
            }
        };
        Some(v.trim()).filter(|t| !t.is_empty())
    }
}

impl<S> tower::Layer<S> for RequireResultLayer {
    type Service = RequireResult<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireResult {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireResultLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct RequireResult<S> {
    inner: S,
    layer: RequireResultLayer,
}

/// The future of a middleware service.
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for RequireResult<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let Some(token) = layer.token(&req).map(str::to_string) else {
                return Ok(refuse(
                    StatusCode::UNAUTHORIZED,
                    "no_result",
                    "present an attestation result: Authorization: Bearer <EAR>".into(),
                ));
            };
            match layer.keys.verify(&token, &layer.requirements).await {
                Ok(r) => {
                    req.extensions_mut().insert(Attested(Arc::new(r)));
                    inner.call(req).await
                }
                Err(e @ RpError::KeysStale { .. }) => Ok(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "keys_stale",
                    e.to_string(),
                )),
                Err(e) => Ok(refuse(
                    StatusCode::FORBIDDEN,
                    "result_refused",
                    format!("attestation result refused: {e}"),
                )),
            }
        })
    }
}

/// The peer of a connection accepted by [`SpiffeTlsListener`]: its address and the SPIFFE ID
/// of the X.509-SVID it presented. Serve with
/// `into_make_service_with_connect_info::<TlsPeer>()` so handlers and
/// [`RequireSpiffeIdLayer`] can read it (`ConnectInfo<TlsPeer>`).
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The SPIFFE ID of its certificate; `None` if it presented none (or one that names no
    /// SPIFFE ID), which a configuration requiring client certificates never lets through.
    pub spiffe_id: Option<SpiffeId>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SpiffeTlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, SpiffeTlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// An mTLS listener for `axum::serve`: accepts TCP connections, completes each TLS handshake
/// under `config` (concurrently, at most 10 s each, so a slow peer holds up no one), and
/// yields the connections with their peer's SPIFFE ID ([`TlsPeer`]). Handshakes that fail
/// (a refused certificate) are dropped.
#[derive(Debug)]
pub struct SpiffeTlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for SpiffeTlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SpiffeTlsListener {
    /// Accept on `tcp` with `config` (for example [`crate::X509Source::server_config`]).
    /// Must be called inside a tokio runtime.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(16);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp_stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp_stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::info!(peer = %addr, "TLS handshake refused: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let spiffe_id = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|leaf| vouch_spiffe::svid_spiffe_id(leaf).ok());
                    let _ = tx.send((tls, TlsPeer { addr, spiffe_id })).await;
                });
            }
        })
        .abort_handle();
        Ok(Self { rx, local, task })
    }
}

impl axum::serve::Listener for SpiffeTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (its listener failed for good): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer {
            addr: self.local,
            spiffe_id: None,
        })
    }
}

/// The SPIFFE ID of the request's mTLS peer, from [`TlsPeer`]; as an extractor it refuses
/// with 401 when there is none.
#[derive(Debug, Clone)]
pub struct PeerSpiffeId(pub SpiffeId);

fn peer_id(ext: &axum::http::Extensions) -> Option<SpiffeId> {
    ext.get::<ConnectInfo<TlsPeer>>()
        .and_then(|c| c.0.spiffe_id.clone())
}

impl<S: Send + Sync> FromRequestParts<S> for PeerSpiffeId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        peer_id(&parts.extensions).map(PeerSpiffeId).ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "no_peer_id",
                "no mTLS peer SPIFFE ID (serve with SpiffeTlsListener and ConnectInfo<TlsPeer>)"
                    .into(),
            )
        })
    }
}

/// Requires the request's mTLS peer ([`TlsPeer`]) to have a SPIFFE ID that `allowed`
/// accepts: none → 401, another → 403.
#[derive(Debug, Clone)]
pub struct RequireSpiffeIdLayer {
    allowed: Arc<AllowedIds>,
}

impl RequireSpiffeIdLayer {
    /// Accept peers whose ID `allowed` accepts (with [`AllowedIds::AnyInTrustDomain`], any
    /// peer the TLS configuration let through).
    pub fn new(allowed: AllowedIds) -> Self {
        Self {
            allowed: Arc::new(allowed),
        }
    }
}

impl<S> tower::Layer<S> for RequireSpiffeIdLayer {
    type Service = RequireSpiffeId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireSpiffeId {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

/// The service [`RequireSpiffeIdLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct RequireSpiffeId<S> {
    inner: S,
    allowed: Arc<AllowedIds>,
}

impl<S, B> tower::Service<Request<B>> for RequireSpiffeId<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verdict = match peer_id(req.extensions()) {
            None => Err(refuse(
                StatusCode::UNAUTHORIZED,
                "no_peer_id",
                "no mTLS peer SPIFFE ID".into(),
            )),
            Some(id) => match &*self.allowed {
                AllowedIds::AnyInTrustDomain => Ok(()),
                AllowedIds::Only(ids) if ids.contains(&id) => Ok(()),
                AllowedIds::Only(_) => Err(refuse(
                    StatusCode::FORBIDDEN,
                    "peer_refused",
                    format!("{id} is not an accepted peer"),
                )),
            },
        };
        Box::pin(async move {
            match verdict {
                Ok(()) => inner.call(req).await,
                Err(r) => Ok(r),
            }
        })
    }
}

//! The verifier's accept loop: HTTP/1.1 over TLS (or plain HTTP on loopback), with a limit on
//! every resource a client can hold.
//!
//! Per connection, in order: a slot from the [`ConnLimiter`] (in all and per source IP, else
//! the connection is closed at once), the TLS handshake within `handshake_timeout`, then hyper
//! with `header_read_timeout` for every request head (the first, and the wait for the next on a
//! kept-alive connection, so an idle connection is closed after it), the router under
//! `request_timeout` (a slow body or a slow handler is answered `408`), and below it all a
//! [`Guarded`] stream that fails when the peer makes no progress for `idle_timeout` (a client
//! that stops reading its answer) and closes by lingering, so a client still uploading reads a
//! `413` instead of a reset. hyper's own answers to unparsable requests (`400`, `414`, `431`,
//! empty bodies) are rewritten on the way out as the API's JSON errors ([`JsonParseErrors`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use vouch_core::ErrorKind;
use vouch_core::wire::{ErrorBody, ErrorDetail};
use vouch_net::{ConnLimiter, Guarded};

use crate::state::State;

/// The limits of one listener (from [`crate::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// How long a closing connection keeps reading what the client still sends, and how much.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 32 << 20;
/// How long in-flight connections get to finish after shutdown is asked.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serve `app` on `listener` until `stop` turns true, then let open connections finish (at
/// most [`DRAIN_TIME`]).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let limiter: ConnLimiter<IpAddr> =
        ConnLimiter::new(limits.max_connections, limits.max_connections_per_client);
    let mut refused_logged = tokio::time::Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stopped(&mut stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if vouch_net::is_resource_exhaustion(&e) => {
                // Out of file descriptors or memory: wait for connections to close rather
                // than spin on accept.
                tracing::warn!("accepting a connection: {e}; pausing 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!("accepting a connection: {e}");
                continue;
            }
        };
        let permit = match limiter.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                state
                    .metrics
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                // One line a second at most: a flood must not become a flood of log.
                if refused_logged.elapsed() >= Duration::from_secs(1) {
                    refused_logged = tokio::time::Instant::now();
                    tracing::warn!(client = %peer.ip(), "connection refused: {why}");
                }
                drop(tcp);
                continue;
            }
        };
        state.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let io = Guarded::new(tcp, Some(limits.idle_timeout))
            .with_linger(LINGER_TIME, LINGER_BYTES)
            .holding(permit);
        tokio::spawn(connection(
            io,
            peer,
            tls.clone(),
            app.clone(),
            limits,
            stop.clone(),
        ));
    }
    // Stop accepting; give open connections their drain time.
    drop(listener);
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    while limiter.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

type Tcp = Guarded<tokio::net::TcpStream>;

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn connection(
    io: Tcp,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => http(io, peer, None, app, limits, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    // The client's certificate, when it presented one: verified against
                    // `[admission] client_ca` by the handshake (the only client verifier).
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(c.as_ref().to_vec()));
                    http(tls, peer, cert, app, limits, stop).await
                }
                Ok(Err(e)) => tracing::debug!(client = %peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<IO>(
    io: IO,
    peer: SocketAddr,
    cert: Option<Arc<Vec<u8>>>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = app
        .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
        .layer(axum::Extension(crate::admission::ClientCertificate(cert)));
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes.max(1024))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(JsonParseErrors::new(io)), svc);
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_TIME, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = r {
        // A client that hangs up, stalls or sends garbage ends its own connection, nothing
        // more: this is not worth more than a debug line.
        tracing::debug!(client = %peer, "connection ended: {e}");
    }
}

/// Rewrites hyper's own answers to requests it cannot parse — a status line, `content-length:
/// 0` and no body, for a bad request line (`400`), a URI too long (`414`) or a header section
/// too large (`431`) — into the API's JSON error with the same status. Everything the router
/// answers passes through untouched (its error answers always carry a JSON body).
struct JsonParseErrors<T> {
    io: T,
    /// A rewritten answer still to be written, and how much of it was.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> JsonParseErrors<T> {
    fn new(io: T) -> Self {
        Self { io, pending: None }
    }
}

/// The JSON answer that replaces hyper's bodiless `head`, when `head` is one.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    if !head.ends_with(b"\r\n\r\n") || head.len() > 512 {
        return None;
    }
    let (kind, message) = match head.get(..13)? {
        b"HTTP/1.1 400 " => (
            ErrorKind::MalformedRequest,
            "the request is not valid HTTP/1.1",
        ),
        b"HTTP/1.1 414 " => (
            ErrorKind::UriTooLong,
            "the request URI is longer than the verifier accepts",
        ),
        b"HTTP/1.1 431 " => (
            ErrorKind::HeadersTooLarge,
            "the request's header section is larger than the verifier accepts",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    if !text.contains("\r\ncontent-length: 0\r\n") || text.contains("\r\ncontent-type:") {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            kind: kind.as_str().into(),
            message: message.into(),
        },
    })
    .ok()?;
    let status = crate::ApiError::status(kind);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Write what is pending; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(json) = rewrite(buf) {
            this.pending = Some((json, 0));
            // Best effort now; the rest goes out on the next write, flush or shutdown.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Answers every request that takes longer than `timeout` (reading its body included) with a
/// `408 request_timeout` JSON error.
pub(crate) async fn request_timeout(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => crate::ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request was not received and answered within {} s",
                timeout.as_secs_f32()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn hyper_parse_error_answers_become_json_and_nothing_else_does() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 25 Nov 2026 13:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["kind"], "headers_too_large");
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        // The router's own answers are never touched.
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore").is_none());
    }
}

//! Guards for every socket Vouch serves (the verifier's HTTPS API, the agent's Workload API).
//!
//! A client that misbehaves — hangs up mid-request, trickles bytes, opens connections and
//! sends nothing, stops reading its answer — must cost the server a bounded amount and never
//! the process. Three pieces do that, below the protocol layer:
//!
//! - [`ConnLimiter`]: at most `max` connections in all and at most `per_client` from one
//!   client (a source IP, a local uid), so one client cannot take every slot;
//! - [`Guarded`]: an I/O wrapper that fails a read, write or flush that makes no progress for
//!   the idle timeout (a silent or stalled peer), and holds the connection's [`ConnPermit`]
//!   until the connection is gone;
//! - a lingering close ([`Guarded::with_linger`]): on shutdown, the write side is closed first
//!   and what the client still sends is read and discarded for a bounded time, so a client
//!   still uploading reads the answer (a `413`) instead of a reset.
//!
//! Protocol timeouts (TLS handshake, HTTP header read, whole request) live with the protocol,
//! in the server and agent crates, and rely on these.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Why [`ConnLimiter::try_acquire`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The server holds its maximum number of connections.
    Full,
    /// This client holds its maximum share of connections.
    ClientFull,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "the server holds its maximum number of connections",
            Self::ClientFull => "this client holds its maximum number of connections",
        })
    }
}

/// Counts open connections, in all and per client.
///
/// Cloning gives another handle on the same counts. A limit of 0 means no limit.
#[derive(Debug)]
pub struct ConnLimiter<K> {
    inner: Arc<Counts<K>>,
}

impl<K> Clone for ConnLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Counts<K> {
    max: usize,
    per_client: usize,
    open: Mutex<Open<K>>,
}

#[derive(Debug)]
struct Open<K> {
    total: usize,
    by_client: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> ConnLimiter<K> {
    /// A limiter for at most `max` connections, at most `per_client` of them from one client
    /// (0: no limit).
    pub fn new(max: usize, per_client: usize) -> Self {
        Self {
            inner: Arc::new(Counts {
                max,
                per_client,
                open: Mutex::new(Open {
                    total: 0,
                    by_client: HashMap::new(),
                }),
            }),
        }
    }

    /// Count a new connection from `client`, or say why it must be refused. The connection
    /// counts until the permit is dropped.
    pub fn try_acquire(&self, client: K) -> Result<ConnPermit<K>, Refusal> {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.max != 0 && open.total >= self.inner.max {
            return Err(Refusal::Full);
        }
        let mine = open.by_client.get(&client).copied().unwrap_or(0);
        if self.inner.per_client != 0 && mine >= self.inner.per_client {
            return Err(Refusal::ClientFull);
        }
        open.total += 1;
        open.by_client.insert(client.clone(), mine + 1);
        Ok(ConnPermit {
            inner: self.inner.clone(),
            client: Some(client),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Connections open now from `client`.
    pub fn open_from(&self, client: &K) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_client
            .get(client)
            .copied()
            .unwrap_or(0)
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit<K: Hash + Eq> {
    inner: Arc<Counts<K>>,
    client: Option<K>,
}

impl<K: Hash + Eq> Drop for ConnPermit<K> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_client.remove(&client);
            }
        }
    }
}

/// Whether an `accept` error means the process ran out of a resource (file descriptors,
/// memory): the accept loop should pause briefly rather than spin. Other accept errors
/// (a connection reset before it was accepted) concern one client only.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// How long the lingering close reads and discards, at most.
#[derive(Debug, Clone, Copy)]
struct Linger {
    time: Duration,
    bytes: u64,
}

/// An I/O stream that fails when its peer makes no progress for `idle`, holds a connection
/// permit, and (with [`Guarded::with_linger`]) closes by lingering.
///
/// A read, write, flush or shutdown that stays pending while nothing was read or written for
/// `idle` fails with [`io::ErrorKind::TimedOut`]; the protocol above then drops the
/// connection. A protocol that sends keep-alive pings (HTTP/2) keeps a quiet but healthy
/// connection alive, since the peer's answers are reads.
pub struct Guarded<T> {
    io: T,
    idle: Option<Duration>,
    last: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    linger: Option<Linger>,
    closing: Option<Closing>,
    _permit: Option<Box<dyn Send + Sync>>,
}

struct Closing {
    write_closed: bool,
    until: Pin<Box<Sleep>>,
    discarded: u64,
}

impl<T> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("idle", &self.idle)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

impl<T> Guarded<T> {
    /// Wrap `io`; `idle` of `None` never times out.
    pub fn new(io: T, idle: Option<Duration>) -> Self {
        Self {
            io,
            idle,
            last: Instant::now(),
            timer: None,
            linger: None,
            closing: None,
            _permit: None,
        }
    }

    /// Hold `permit` (a [`ConnPermit`], or anything else) until this stream is dropped.
    pub fn holding(mut self, permit: impl Send + Sync + 'static) -> Self {
        self._permit = Some(Box::new(permit));
        self
    }

    /// On shutdown, close the write side, then read and discard what the peer still sends
    /// until it closes, for at most `time` and `bytes`.
    pub fn with_linger(mut self, time: Duration, bytes: u64) -> Self {
        self.linger = Some(Linger { time, bytes });
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn progress(&mut self) {
        self.last = Instant::now();
    }

    /// Whether the idle deadline has passed (registers the waker when it has not).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle else {
            return false;
        };
        let due = self.last + idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    fn timed_out() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer made no progress within the idle timeout",
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending if this.stalled(cx) => Poll::Ready(Err(Self::timed_out())),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(linger) = this.linger else {
            return match Pin::new(&mut this.io).poll_shutdown(cx) {
                Poll::Pending if this.stalled(cx) => Poll::Ready(Err(Self::timed_out())),
                other => other,
            };
        };
        let closing = this.closing.get_or_insert_with(|| Closing {
            write_closed: false,
            until: Box::pin(tokio::time::sleep(linger.time)),
            discarded: 0,
        });
        if closing.until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if !closing.write_closed {
            // The answer is sent and the write side closed (FIN, or TLS close_notify and FIN)
            // before anything is discarded.
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            closing.write_closed = true;
        }
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {
                    closing.discarded += buf.filled().len() as u64;
                    if closing.discarded >= linger.bytes {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The peer reset or the stream failed: nothing more to wait for.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_limiter_counts_in_all_and_per_client() {
        let l = ConnLimiter::new(3, 2);
        let a1 = l.try_acquire("a").unwrap();
        let a2 = l.try_acquire("a").unwrap();
        assert_eq!(l.try_acquire("a").unwrap_err(), Refusal::ClientFull);
        let b1 = l.try_acquire("b").unwrap();
        assert_eq!(l.try_acquire("c").unwrap_err(), Refusal::Full);
        assert_eq!(l.open(), 3);
        drop(a1);
        assert_eq!(l.open_from(&"a"), 1);
        let _c = l.try_acquire("c").unwrap();
        drop((a2, b1));
        assert_eq!(l.open(), 1);
        assert_eq!(l.open_from(&"a"), 0);
        // 0 is no limit.
        let u = ConnLimiter::new(0, 0);
        let all: Vec<_> = (0..1000).map(|_| u.try_acquire(1u8).unwrap()).collect();
        assert_eq!(u.open(), 1000);
        drop(all);
        assert_eq!(u.open(), 0);
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (a, _b) = tokio::io::duplex(64);
        let mut g = Guarded::new(a, Some(Duration::from_millis(200)));
        let t = Instant::now();
        let e = g.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(200));
        // Progress every 100 ms keeps one alive for longer than the idle timeout.
        let (a, mut b) = tokio::io::duplex(64);
        let mut g = Guarded::new(a, Some(Duration::from_millis(200)));
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                b.write_all(b"x").await.unwrap();
            }
            b
        });
        let mut got = 0;
        while got < 5 {
            got += g.read(&mut [0u8; 8]).await.unwrap();
        }
        let _b = writer.await.unwrap();
        // A peer that stops reading stalls our writes: they fail too.
        let e = loop {
            if let Err(e) = g.write_all(&[0u8; 64]).await {
                break e;
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn lingering_close_sends_fin_then_discards_what_is_still_coming() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut g = Guarded::new(s, None).with_linger(Duration::from_secs(5), 64 << 20);
            g.write_all(b"answer").await.unwrap();
            let t = Instant::now();
            g.shutdown().await.unwrap();
            t.elapsed()
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = c.split();
        // Keep uploading while reading the answer; the answer and a clean EOF arrive.
        let upload = async {
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..64 {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        };
        let read = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.map(|_| got)
        };
        let ((), got) = tokio::join!(upload, read);
        assert_eq!(got.unwrap(), b"answer");
        let lingered = server.await.unwrap();
        assert!(lingered < Duration::from_secs(5), "{lingered:?}");
    }
}

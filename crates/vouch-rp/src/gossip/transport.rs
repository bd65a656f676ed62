//! Authenticated gossip datagrams. chitchat applies every `SynAck` and `Ack` that reaches its
//! port, unasked and from anyone: one forged datagram claiming a member's state is at version
//! 2^64 - 1 silences that member for good (what it publishes next carries a lower version, or
//! overflows). So every datagram carries a MAC under the cluster's gossip key, and one that
//! does not verify is dropped before chitchat decodes a byte of it.
//!
//! ```text
//! 0        1        2                                  34
//! | format | key id | HMAC-SHA256 (32 bytes)           | chitchat envelope (its own encoding) |
//! ```
//!
//! The MAC covers a domain-separation label, the cluster id, the format and key id bytes and
//! the envelope. The key id is derived from the key (the first byte of a hash of it), so
//! operators rotate keys by file alone: every member first accepts the new key, then signs
//! with it, then drops the old one. A datagram is at most chitchat's UDP maximum, which leaves
//! room for this header ([`chitchat::TRANSPORT_RESERVED_LEN`], a patch of the vendored crate).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::GossipError;

/// The datagram format this module writes and reads.
const FORMAT: u8 = 1;
/// Bytes of the MAC.
const TAG_LEN: usize = 32;
/// Bytes before the envelope: format, key id, MAC.
pub(crate) const HEADER_LEN: usize = 2 + TAG_LEN;
/// Largest datagram sent or accepted.
pub(crate) const MAX_DATAGRAM: usize = chitchat::MAX_UDP_DATAGRAM_PAYLOAD_SIZE;
/// Shortest key accepted, bytes.
const MIN_KEY: usize = 32;
/// Longest key accepted, bytes (a key file is secret bytes, not a document).
const MAX_KEY: usize = 1024;
/// Label the MAC starts with, so no other HMAC under the same key can pass for a datagram.
const LABEL: &[u8] = b"vouch gossip datagram v1\0";

const _: () = assert!(HEADER_LEN <= chitchat::TRANSPORT_RESERVED_LEN);

/// A cluster's gossip key: 32 or more secret bytes that every member (verifier replicas and
/// relying parties) holds. Its [`Debug`](std::fmt::Debug) shows the key id only.
#[derive(Clone)]
pub struct GossipKey {
    id: u8,
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl GossipKey {
    /// A key from its secret bytes (32 to 1024).
    pub fn new(secret: &[u8]) -> Result<Self, GossipError> {
        if !(MIN_KEY..=MAX_KEY).contains(&secret.len()) {
            return Err(GossipError(format!(
                "a gossip key is {MIN_KEY} to {MAX_KEY} secret bytes, not {}",
                secret.len()
            )));
        }
        let id = Sha256::new()
            .chain_update(b"vouch gossip key id\0")
            .chain_update(secret)
            .finalize()[0];
        Ok(Self {
            id,
            secret: secret.into(),
        })
    }

    /// The key in `path`: the file's bytes, as they are (write it with
    /// `head -c 32 /dev/urandom > gossip.key`, mode 0600).
    pub fn from_file(path: &Path) -> Result<Self, GossipError> {
        let bytes = std::fs::read(path)
            .map_err(|e| GossipError(format!("reading gossip key {}: {e}", path.display())))?;
        Self::new(&bytes).map_err(|e| GossipError(format!("{}: {}", path.display(), e.0)))
    }

    /// The key id datagrams signed with this key carry (derived from the key).
    pub fn id(&self) -> u8 {
        self.id
    }

    fn mac(&self, cluster: &[u8], header: [u8; 2], body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(LABEL);
        m.update(
            &u32::try_from(cluster.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        m.update(cluster);
        m.update(&header);
        m.update(body);
        m
    }
}

/// HMAC accepts every key length, so this is never reached; it exists so that no `expect`
/// sits in the datagram path.
#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    tracing::error!("HMAC-SHA256 refused a key, which it never does");
    std::process::abort()
}

/// The keys of one member: the one it signs with, and others it still accepts during a
/// rotation.
#[derive(Debug, Clone)]
pub struct GossipKeys {
    current: GossipKey,
    accepted: Vec<GossipKey>,
}

impl GossipKeys {
    /// Sign and accept with `current` only.
    pub fn new(current: GossipKey) -> Self {
        Self {
            current,
            accepted: Vec::new(),
        }
    }

    /// The keys in `current` (signs and verifies) and `accepted` (verify only, during a
    /// rotation), read from their files.
    pub fn from_files(
        current: &Path,
        accepted: &[std::path::PathBuf],
    ) -> Result<Self, GossipError> {
        accepted
            .iter()
            .try_fold(Self::new(GossipKey::from_file(current)?), |keys, p| {
                Ok(keys.accept(GossipKey::from_file(p)?))
            })
    }

    /// Also accept datagrams signed with `key` (never used to sign).
    pub fn accept(mut self, key: GossipKey) -> Self {
        self.accepted.push(key);
        self
    }

    fn candidates(&self, id: u8) -> impl Iterator<Item = &GossipKey> {
        std::iter::once(&self.current)
            .chain(&self.accepted)
            .filter(move |k| k.id == id)
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped {
    /// Shorter than the header and an envelope header.
    Short,
    /// Longer than [`MAX_DATAGRAM`].
    Long,
    /// Another format byte.
    Format(u8),
    /// No key with this id is held.
    UnknownKey(u8),
    /// The MAC does not verify under any key with the datagram's key id.
    Mac,
}

/// `body` framed and signed with the current key, into `out` (cleared first).
pub(crate) fn seal(keys: &GossipKeys, cluster: &[u8], body: &[u8], out: &mut Vec<u8>) {
    let header = [FORMAT, keys.current.id];
    let tag = keys
        .current
        .mac(cluster, header, body)
        .finalize()
        .into_bytes();
    out.clear();
    out.extend_from_slice(&header);
    out.extend_from_slice(&tag);
    out.extend_from_slice(body);
}

/// The envelope bytes of `datagram`, once its MAC verified under a held key (what every
/// datagram from the network goes through before chitchat reads a byte of it).
pub fn open<'a>(
    keys: &GossipKeys,
    cluster: &[u8],
    datagram: &'a [u8],
) -> Result<&'a [u8], Dropped> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(Dropped::Long);
    }
    // An envelope is at least chitchat's 4-byte header.
    let (Some(&format), Some(&id), Some(tag), Some(body)) = (
        datagram.first(),
        datagram.get(1),
        datagram.get(2..HEADER_LEN),
        datagram.get(HEADER_LEN..).filter(|b| b.len() >= 4),
    ) else {
        return Err(Dropped::Short);
    };
    if format != FORMAT {
        return Err(Dropped::Format(format));
    }
    let mut known = false;
    for key in keys.candidates(id) {
        known = true;
        if key
            .mac(cluster, [format, id], body)
            .verify_slice(tag)
            .is_ok()
        {
            return Ok(body);
        }
    }
    Err(if known {
        Dropped::Mac
    } else {
        Dropped::UnknownKey(id)
    })
}

/// Counts of what a member's transport refused.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Datagrams dropped before decoding: short, long, unknown format or key, bad MAC.
    pub(crate) dropped: AtomicU64,
    /// Authenticated datagrams that did not decode as a chitchat envelope.
    pub(crate) undecodable: AtomicU64,
}

/// chitchat over UDP, every datagram signed and checked with the cluster's gossip key.
pub(crate) struct AuthenticatedUdp {
    keys: GossipKeys,
    cluster: Arc<[u8]>,
    stats: Arc<Stats>,
}

impl AuthenticatedUdp {
    pub(crate) fn new(keys: GossipKeys, cluster: &str, stats: Arc<Stats>) -> Self {
        Self {
            keys,
            cluster: cluster.as_bytes().into(),
            stats,
        }
    }
}

#[async_trait::async_trait]
impl Transport for AuthenticatedUdp {
    async fn open(&self, listen: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}/UDP for gossip: {e}"))?;
        Ok(Box::new(AuthenticatedSocket {
            socket,
            keys: self.keys.clone(),
            cluster: self.cluster.clone(),
            stats: self.stats.clone(),
            body: Vec::with_capacity(MAX_DATAGRAM),
            out: Vec::with_capacity(MAX_DATAGRAM),
            // One byte more than accepted, so that a longer datagram is seen as one.
            recv: vec![0u8; MAX_DATAGRAM + 1].into_boxed_slice(),
            last_warning: None,
        }))
    }
}

struct AuthenticatedSocket {
    socket: tokio::net::UdpSocket,
    keys: GossipKeys,
    cluster: Arc<[u8]>,
    stats: Arc<Stats>,
    body: Vec<u8>,
    out: Vec<u8>,
    recv: Box<[u8]>,
    last_warning: Option<Instant>,
}

impl AuthenticatedSocket {
    /// Log a dropped datagram at most once every ten seconds (a flood must not flood the log).
    fn note_drop(&mut self, from: SocketAddr, why: impl std::fmt::Display) {
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(
                %from,
                dropped = self.stats.dropped.load(Ordering::Relaxed),
                undecodable = self.stats.undecodable.load(Ordering::Relaxed),
                "gossip: dropped a datagram ({why}); is every member given the same key_file?"
            );
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    )
}

#[async_trait::async_trait]
impl Socket for AuthenticatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .map_err(|e| anyhow::anyhow!("gossip socket address: {e}"))
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.body.clear();
        envelope.serialize(&mut self.body);
        seal(&self.keys, &self.cluster, &self.body, &mut self.out);
        if self.out.len() > MAX_DATAGRAM {
            // chitchat keeps deltas within its UDP maximum less the transport's reserve; only
            // a digest of thousands of members gets here.
            anyhow::bail!(
                "gossip datagram of {} bytes is over the UDP maximum {MAX_DATAGRAM}",
                self.out.len()
            );
        }
        let n = self
            .socket
            .send_to(&self.out, to)
            .await
            .map_err(|e| anyhow::anyhow!("sending gossip to {to}: {e}"))?;
        Ok(SendOutcome { num_bytes_sent: n })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.recv).await {
                Ok(r) => r,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(anyhow::anyhow!("gossip socket: {e}")),
            };
            let datagram = self.recv.get(..n).unwrap_or_default();
            let body = match open(&self.keys, &self.cluster, datagram) {
                Ok(body) => body,
                Err(why) => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.note_drop(from, format_args!("{why:?}"));
                    continue;
                }
            };
            let mut cursor = body;
            match ChitchatEnvelope::deserialize(&mut cursor) {
                Ok(envelope) if cursor.is_empty() => {
                    return Ok(RecvOutcome {
                        from_addr: from,
                        envelope,
                        num_bytes_received: n,
                    });
                }
                Ok(_) => {
                    self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    self.note_drop(from, "bytes after the envelope");
                }
                Err(e) => {
                    self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    self.note_drop(from, format_args!("authenticated but not chitchat: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn key(b: u8) -> GossipKey {
        GossipKey::new(&[b; 32]).unwrap()
    }

    const ENVELOPE: &[u8] = b"\x53\xb0\x00\x03";

    #[test]
    fn a_sealed_datagram_opens_with_the_key_and_only_with_it() {
        let keys = GossipKeys::new(key(1));
        let mut d = Vec::new();
        seal(&keys, b"td", ENVELOPE, &mut d);
        assert_eq!(d.len(), HEADER_LEN + ENVELOPE.len());
        assert_eq!((d[0], d[1]), (FORMAT, key(1).id()));
        assert_eq!(open(&keys, b"td", &d), Ok(ENVELOPE));
        // Another cluster's id under the same key.
        assert_eq!(open(&keys, b"other", &d), Err(Dropped::Mac));
        // Another key: known id (a key with the same id but other bytes) or not.
        let other = GossipKeys::new(key(2));
        let mut forged = Vec::new();
        seal(&other, b"td", ENVELOPE, &mut forged);
        assert_eq!(
            open(&keys, b"td", &forged),
            Err(Dropped::UnknownKey(key(2).id()))
        );
        forged[1] = key(1).id();
        assert_eq!(open(&keys, b"td", &forged), Err(Dropped::Mac));
    }

    #[test]
    fn every_flipped_bit_is_dropped() {
        let keys = GossipKeys::new(key(1));
        let mut d = Vec::new();
        seal(&keys, b"td", ENVELOPE, &mut d);
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut bad = d.clone();
                bad[i] ^= 1 << bit;
                assert!(open(&keys, b"td", &bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn short_long_and_unknown_formats_are_dropped() {
        let keys = GossipKeys::new(key(1));
        let mut d = Vec::new();
        seal(&keys, b"td", ENVELOPE, &mut d);
        for n in 0..d.len() {
            assert_eq!(
                open(&keys, b"td", &d[..n]),
                Err(Dropped::Short),
                "{n} bytes"
            );
        }
        let mut long = Vec::new();
        seal(&keys, b"td", &vec![0u8; MAX_DATAGRAM], &mut long);
        assert_eq!(open(&keys, b"td", &long), Err(Dropped::Long));
        let mut v2 = d.clone();
        v2[0] = 2;
        assert_eq!(open(&keys, b"td", &v2), Err(Dropped::Format(2)));
        // A raw chitchat datagram (no header at all).
        assert!(open(&keys, b"td", ENVELOPE).is_err());
    }

    #[test]
    fn a_rotation_accepts_the_old_key_and_signs_with_the_new() {
        let old = GossipKeys::new(key(1));
        let both = GossipKeys::new(key(2)).accept(key(1));
        let mut from_old = Vec::new();
        seal(&old, b"td", ENVELOPE, &mut from_old);
        assert_eq!(open(&both, b"td", &from_old), Ok(ENVELOPE));
        let mut from_new = Vec::new();
        seal(&both, b"td", ENVELOPE, &mut from_new);
        assert_eq!(from_new[1], key(2).id());
        assert!(open(&old, b"td", &from_new).is_err());
    }

    #[test]
    fn keys_are_32_to_1024_bytes_and_never_printed() {
        assert!(GossipKey::new(&[7; 31]).is_err());
        assert!(GossipKey::new(&[7; 1025]).is_err());
        let k = GossipKey::new(&[0x5a; 40]).unwrap();
        let shown = format!("{k:?} {:?}", GossipKeys::new(k.clone()));
        assert!(
            !shown.contains("90, 90") && !shown.contains("ZZ"),
            "{shown}"
        );
    }
}

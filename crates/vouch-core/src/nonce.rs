//! Stateless, self-authenticating nonces.
//!
//! A nonce is issued by any verifier replica and accepted by any other replica that holds the
//! cluster nonce key, with no shared state beyond the replay cache:
//!
//! ```text
//! version (1) = 1 | issued_at (8, big-endian Unix seconds) | random (32)
//!   | audience_len (1) | audience (audience_len bytes, UTF-8)
//!   | tag (32) = HMAC-SHA256(key, "vouch-nonce-v1" | every byte above)
//! ```
//!
//! encoded as unpadded base64url. Checking a nonce verifies the tag first (a forged or altered
//! nonce is `Invalid`), then the audience, then the time window. Single use is enforced by the
//! verifier's replay cache keyed on [`Nonce::id`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::UnixSeconds;

/// Number of random bytes in every nonce.
pub const NONCE_RANDOM_LEN: usize = 32;
const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
const DOMAIN: &[u8] = b"vouch-nonce-v1";
const MAX_AUDIENCE: usize = 255;
const HEADER_LEN: usize = 1 + 8 + NONCE_RANDOM_LEN + 1;
/// Longest encoded nonce accepted: anything longer is rejected before decoding.
const MAX_ENCODED: usize = (HEADER_LEN + MAX_AUDIENCE + TAG_LEN).div_ceil(3) * 4;

/// The secret that authenticates nonces; shared by every replica of a verifier cluster.
#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl NonceKey {
    /// Wrap 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Build a key from arbitrary bytes of at least 32 bytes (for example a key file).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 32 {
            return None;
        }
        let digest = Sha256::digest(bytes);
        Some(Self(digest.into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC zero-pads keys shorter than the hash block, so padding here changes nothing and
        // lets the infallible fixed-size constructor be used.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut m = <Hmac<Sha256> as KeyInit>::new(&block.into());
        m.update(DOMAIN);
        m
    }
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<redacted>)")
    }
}

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not base64url, wrong length, unknown version, or the tag did not verify.
    #[error("nonce is malformed or its authentication tag does not verify (forged or altered)")]
    Invalid,
    /// Issued for another audience.
    #[error("nonce was issued for audience {found:?}, expected {expected:?}")]
    Audience {
        /// The audience this verifier expects.
        expected: String,
        /// The audience in the nonce.
        found: String,
    },
    /// Older than its time to live.
    #[error("nonce expired {age}s after issue (time to live {ttl}s)")]
    Expired {
        /// Age of the nonce in seconds.
        age: u64,
        /// The time to live in seconds.
        ttl: u64,
    },
    /// Issued later than now plus the allowed skew.
    #[error("nonce was issued {ahead}s in the future (allowed clock skew {skew}s)")]
    FromFuture {
        /// How far ahead the issue time is.
        ahead: u64,
        /// Allowed skew in seconds.
        skew: u64,
    },
}

impl NonceError {
    /// The stable error kind for this failure.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Invalid => crate::ErrorKind::NonceInvalid,
            Self::Audience { .. } => crate::ErrorKind::NonceAudience,
            Self::Expired { .. } => crate::ErrorKind::NonceExpired,
            Self::FromFuture { .. } => crate::ErrorKind::NonceFromFuture,
        }
    }
}

/// A decoded, authenticated nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    /// Issue time, Unix seconds.
    pub issued_at: UnixSeconds,
    /// The random bytes.
    pub random: [u8; NONCE_RANDOM_LEN],
    /// The audience (verifier cluster name) the nonce was issued for.
    pub audience: String,
}

impl Nonce {
    /// Issue a nonce: the caller supplies the time and the random bytes (no I/O here).
    ///
    /// Audiences longer than 255 bytes are truncated at a character boundary.
    pub fn issue(
        key: &NonceKey,
        now: UnixSeconds,
        random: [u8; NONCE_RANDOM_LEN],
        audience: &str,
    ) -> String {
        let mut end = audience.len().min(MAX_AUDIENCE);
        while !audience.is_char_boundary(end) {
            end -= 1;
        }
        let aud = &audience.as_bytes()[..end];
        let mut buf = Vec::with_capacity(HEADER_LEN + aud.len() + TAG_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&now.to_be_bytes());
        buf.extend_from_slice(&random);
        buf.push(aud.len() as u8);
        buf.extend_from_slice(aud);
        let mut mac = key.mac();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Decode and authenticate a nonce with any of `keys` (current key first, then keys being
    /// rotated out), without checking audience or time.
    pub fn authenticate(encoded: &str, keys: &[NonceKey]) -> Result<Nonce, NonceError> {
        if encoded.len() > MAX_ENCODED {
            return Err(NonceError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| NonceError::Invalid)?;
        if raw.len() < HEADER_LEN + TAG_LEN || raw[0] != VERSION {
            return Err(NonceError::Invalid);
        }
        let aud_len = raw[HEADER_LEN - 1] as usize;
        if raw.len() != HEADER_LEN + aud_len + TAG_LEN {
            return Err(NonceError::Invalid);
        }
        let (body, tag) = raw.split_at(HEADER_LEN + aud_len);
        let ok = keys.iter().any(|k| {
            let mut mac = k.mac();
            mac.update(body);
            mac.verify_slice(tag).is_ok()
        });
        if !ok {
            return Err(NonceError::Invalid);
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&body[1..9]);
        let mut random = [0u8; NONCE_RANDOM_LEN];
        random.copy_from_slice(&body[9..9 + NONCE_RANDOM_LEN]);
        let audience =
            String::from_utf8(body[HEADER_LEN..].to_vec()).map_err(|_| NonceError::Invalid)?;
        Ok(Nonce {
            issued_at: u64::from_be_bytes(ts),
            random,
            audience,
        })
    }

    /// Authenticate a nonce and check its audience and time window.
    pub fn check(
        encoded: &str,
        keys: &[NonceKey],
        audience: &str,
        now: UnixSeconds,
        ttl: u64,
        skew: u64,
    ) -> Result<Nonce, NonceError> {
        let n = Self::authenticate(encoded, keys)?;
        if n.audience != audience {
            return Err(NonceError::Audience {
                expected: audience.to_string(),
                found: n.audience,
            });
        }
        if n.issued_at > now.saturating_add(skew) {
            return Err(NonceError::FromFuture {
                ahead: n.issued_at - now,
                skew,
            });
        }
        let age = now.saturating_sub(n.issued_at);
        if age > ttl {
            return Err(NonceError::Expired { age, ttl });
        }
        Ok(n)
    }

    /// The replay-cache identifier: SHA-256 of the random bytes, hex.
    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(self.random))
    }

    /// Unix time after which this nonce can no longer be accepted (and its replay-cache entry
    /// may be dropped).
    pub fn expires_at(&self, ttl: u64) -> UnixSeconds {
        self.issued_at.saturating_add(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> NonceKey {
        NonceKey::new([b; 32])
    }

    #[test]
    fn issued_nonce_checks() {
        let n = Nonce::issue(&key(1), 1000, [7; 32], "cluster-a");
        let d = Nonce::check(&n, &[key(1)], "cluster-a", 1010, 60, 5).unwrap();
        assert_eq!(d.issued_at, 1000);
        assert_eq!(d.random, [7; 32]);
    }

    #[test]
    fn any_replica_with_the_key_accepts_and_old_keys_still_verify() {
        let n = Nonce::issue(&key(1), 1000, [7; 32], "a");
        assert!(Nonce::check(&n, &[key(2), key(1)], "a", 1000, 60, 5).is_ok());
        assert_eq!(
            Nonce::check(&n, &[key(2)], "a", 1000, 60, 5),
            Err(NonceError::Invalid)
        );
    }

    #[test]
    fn every_flipped_byte_is_invalid() {
        let n = Nonce::issue(&key(1), 1000, [7; 32], "a");
        let raw = URL_SAFE_NO_PAD.decode(&n).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 1;
            let enc = URL_SAFE_NO_PAD.encode(&t);
            assert!(
                Nonce::check(&enc, &[key(1)], "a", 1000, 60, 5).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn expired_future_and_audience() {
        let n = Nonce::issue(&key(1), 1000, [7; 32], "a");
        assert!(matches!(
            Nonce::check(&n, &[key(1)], "a", 1061, 60, 5),
            Err(NonceError::Expired { age: 61, ttl: 60 })
        ));
        assert!(matches!(
            Nonce::check(&n, &[key(1)], "a", 990, 60, 5),
            Err(NonceError::FromFuture { ahead: 10, .. })
        ));
        assert!(Nonce::check(&n, &[key(1)], "a", 996, 60, 5).is_ok());
        assert!(matches!(
            Nonce::check(&n, &[key(1)], "b", 1000, 60, 5),
            Err(NonceError::Audience { .. })
        ));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for s in ["", "!!!", "AAAA", &"A".repeat(10_000)] {
            assert_eq!(
                Nonce::check(s, &[key(1)], "a", 0, 60, 5),
                Err(NonceError::Invalid)
            );
        }
    }
}

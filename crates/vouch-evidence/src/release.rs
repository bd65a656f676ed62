//! Secrets sealed to an attested workload with HPKE (RFC 9180).
//!
//! The suite is fixed: mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
//! (`0x0020`, `0x0001`, `0x0003`). The agent makes a fresh [`ReleaseKey`] for every request
//! and puts its public half in the measurements of the evidence that asks
//! (`SoftwareMeasurements::release_key`), so the evidence, not the network, chooses the key
//! the verifier seals to ([`seal`]); the private half never leaves the agent's memory and is
//! dropped once the answer is opened ([`ReleaseKey::open`]).
//!
//! `info` binds what the release was for ([`vouch_core::wire::secret_release_info`]: secret
//! name and version, node, nonce), so a sealed answer to one request does not open as the
//! answer to another even under the same key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};

use crate::EvidenceError;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Largest secret the verifier stores and releases, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// An agent's one-time HPKE key pair for one secret release.
pub struct ReleaseKey {
    sk: <Kem as hpke::Kem>::PrivateKey,
    pk: <Kem as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseKey")
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

impl ReleaseKey {
    /// A key pair derived from 32 bytes of fresh randomness (RFC 9180 `DeriveKeyPair`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (sk, pk) = Kem::derive_keypair(seed);
        Self { sk, pk }
    }

    /// A key pair from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).unwrap_or_else(|_| {
            tracing::error!("system random number generator failed");
            std::process::abort()
        });
        Self::from_seed(&seed)
    }

    /// base64url of the raw 32-byte X25519 public key, as evidence carries it.
    pub fn public_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pk.to_bytes())
    }

    /// Open a sealed secret: `enc` and `ciphertext` base64url as the verifier sent them,
    /// `info` what the release was for. Fails on any other key, `info`, or a changed byte.
    pub fn open(&self, enc: &str, ciphertext: &str, info: &[u8]) -> Result<Vec<u8>, EvidenceError> {
        let enc = URL_SAFE_NO_PAD
            .decode(enc)
            .map_err(|_| EvidenceError::Malformed("enc is not base64url".into()))?;
        let ct = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| EvidenceError::Malformed("ciphertext is not base64url".into()))?;
        if ct.len() > MAX_SECRET_BYTES + 16 {
            return Err(EvidenceError::Malformed("sealed secret too large".into()));
        }
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| {
            EvidenceError::Malformed("enc is not a 32-byte X25519 encapsulated key".into())
        })?;
        hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Base, &self.sk, &enc, info, &ct, b"")
            .map_err(|_| {
                EvidenceError::Malformed(
                    "the sealed secret does not open with this request's key".into(),
                )
            })
    }
}

/// A secret sealed to one public key: the encapsulated key and the ciphertext, base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The HPKE encapsulated key (32 bytes).
    pub enc: String,
    /// The ciphertext with its 16-byte tag.
    pub ciphertext: String,
}

/// Seal `secret` to `public_key_b64` (base64url raw X25519, as evidence bound it) for `info`.
pub fn seal(public_key_b64: &str, info: &[u8], secret: &[u8]) -> Result<Sealed, EvidenceError> {
    let pk = release_public_key(public_key_b64)?;
    let (enc, ct) =
        hpke::single_shot_seal::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, info, secret, b"")
            .map_err(|e| EvidenceError::Malformed(format!("sealing failed: {e}")))?;
    Ok(Sealed {
        enc: URL_SAFE_NO_PAD.encode(enc.to_bytes()),
        ciphertext: URL_SAFE_NO_PAD.encode(ct),
    })
}

fn release_public_key(b64: &str) -> Result<<Kem as hpke::Kem>::PublicKey, EvidenceError> {
    let raw = URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            EvidenceError::Malformed("release_key must be base64url of 32 raw X25519 bytes".into())
        })?;
    <Kem as hpke::Kem>::PublicKey::from_bytes(&raw)
        .map_err(|_| EvidenceError::Malformed("release_key is not an X25519 public key".into()))
}

/// Whether `b64` is a release key [`seal`] accepts.
pub fn valid_release_key(b64: &str) -> bool {
    release_public_key(b64).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_info() {
        let k = ReleaseKey::from_seed(&[7; 32]);
        let other = ReleaseKey::from_seed(&[8; 32]);
        let s = seal(&k.public_b64(), b"info", b"the secret").unwrap();
        assert_eq!(
            k.open(&s.enc, &s.ciphertext, b"info").unwrap(),
            b"the secret"
        );
        assert!(other.open(&s.enc, &s.ciphertext, b"info").is_err());
        assert!(k.open(&s.enc, &s.ciphertext, b"infp").is_err());
        // One flipped bit of the ciphertext, then of the encapsulated key.
        let mut ct = URL_SAFE_NO_PAD.decode(&s.ciphertext).unwrap();
        ct[0] ^= 1;
        assert!(
            k.open(&s.enc, &URL_SAFE_NO_PAD.encode(&ct), b"info")
                .is_err()
        );
        let mut enc = URL_SAFE_NO_PAD.decode(&s.enc).unwrap();
        enc[5] ^= 1;
        assert!(
            k.open(&URL_SAFE_NO_PAD.encode(&enc), &s.ciphertext, b"info")
                .is_err()
        );
        assert!(seal("AAAA", b"info", b"x").is_err());
    }

    /// RFC 9180 A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, base
    /// mode): the recipient key derived from the vector's ikmR opens its first ciphertext.
    #[test]
    fn rfc9180_a2_vector_opens() {
        let h = |s: &str| hex::decode(s).unwrap();
        let ikm_r = h("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df");
        let k = ReleaseKey::from_seed(&ikm_r.try_into().unwrap());
        assert_eq!(
            hex::encode(URL_SAFE_NO_PAD.decode(k.public_b64()).unwrap()),
            "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
        );
        let enc = h("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        let info = h("4f6465206f6e2061204772656369616e2055726e");
        let aad = h("436f756e742d30");
        let ct = h(
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        );
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).unwrap();
        let pt =
            hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Base, &k.sk, &enc, &info, &ct, &aad)
                .unwrap();
        assert_eq!(
            hex::encode(pt),
            "4265617574792069732074727574682c20747275746820626561757479"
        );
    }
}

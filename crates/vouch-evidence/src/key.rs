use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::path::Path;

use crate::EvidenceError;

/// An agent's Ed25519 signing key, stored as PKCS#8 DER in a file readable by the agent only.
pub struct AgentKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("public_key", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl AgentKey {
    /// Generate a fresh key.
    pub fn generate() -> Result<Self, EvidenceError> {
        let pair = Ed25519KeyPair::generate().map_err(|e| EvidenceError::Key(e.to_string()))?;
        Ok(Self { pair })
    }

    /// Parse PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, EvidenceError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| EvidenceError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self { pair })
    }

    /// PKCS#8 DER of the key.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, EvidenceError> {
        self.pair
            .to_pkcs8()
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| EvidenceError::Key(e.to_string()))
    }

    /// Load the key at `path`, or create it (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, EvidenceError> {
        match std::fs::read(path) {
            Ok(der) => Self::from_pkcs8(&der),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                write_private(path, &key.to_pkcs8()?).map_err(|source| EvidenceError::Collect {
                    what: format!("agent key file {}", path.display()),
                    source,
                })?;
                Ok(key)
            }
            Err(source) => Err(EvidenceError::Collect {
                what: format!("agent key file {}", path.display()),
                source,
            }),
        }
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key, base64url.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// Sign `msg`, returning the base64url signature.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.sign(msg).as_ref())
    }
}

/// Verify a base64url Ed25519 signature over `msg` with a raw 32-byte public key.
pub fn verify_ed25519(public_key: &[u8], msg: &[u8], signature_b64: &str) -> bool {
    if signature_b64.len() > 128 {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, &sig)
        .is_ok()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_flip() {
        let k = AgentKey::generate().unwrap();
        let sig = k.sign_b64(b"hello");
        assert!(verify_ed25519(k.public_key(), b"hello", &sig));
        assert!(!verify_ed25519(k.public_key(), b"hellp", &sig));
        let other = AgentKey::generate().unwrap();
        assert!(!verify_ed25519(other.public_key(), b"hello", &sig));
        assert!(!verify_ed25519(k.public_key(), b"hello", "###"));
    }

    #[test]
    fn load_or_create_persists() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/agent.key");
        let a = AgentKey::load_or_create(&p).unwrap();
        let b = AgentKey::load_or_create(&p).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

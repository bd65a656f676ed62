//! Key material of a verifier: result-signing keys (with rotation), the cluster nonce key and
//! generated TLS certificates. Keys are parsed once at load time and held in memory.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::SigningAlg;

/// Errors loading or creating key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// File system error.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being read or written.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate could not be parsed or generated.
    #[error("{0}")]
    Invalid(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Write a secret file with mode 0600, atomically (write to a temporary name, then rename).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io("creating key directory", d))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("writing key", &tmp))?;
    f.write_all(bytes).map_err(io("writing key", &tmp))?;
    f.sync_all().map_err(io("writing key", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("writing key", path))
}

/// Random bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system RNG failing is unrecoverable; fall back to nothing rather than panic would be
    // worse (predictable nonces), so report through the result of fill and abort the process.
    if SystemRandom::new().fill(&mut b).is_err() {
        tracing::error!("system random number generator failed");
        std::process::abort();
    }
    b
}

/// Load the nonce key at `path`, creating 32 random bytes when missing.
pub fn load_or_create_nonce_key(path: &Path) -> Result<vouch_core::NonceKey, KeyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = random_bytes::<32>().to_vec();
            write_secret(path, &b)?;
            b
        }
        Err(e) => return Err(io("reading nonce key", path)(e)),
    };
    vouch_core::NonceKey::from_slice(&bytes).ok_or_else(|| {
        KeyError::Invalid(format!(
            "nonce key {} is shorter than 32 bytes",
            path.display()
        ))
    })
}

/// The admin token (`data_dir/keys/admin.token`, created on first start, mode 0600): the
/// bearer credential of the management API. Read it with `cat` on the verifier's host.
pub fn load_or_create_admin_token(path: &Path) -> Result<String, KeyError> {
    load_or_create_token(path, "vat_", "admin token", "reading the admin token")
}

/// The read token (`data_dir/keys/read.token`, created on first start, mode 0600): the
/// bearer credential of the read-only views (workloads, results, dashboard, metrics). The
/// admin token reads them too.
pub fn load_or_create_read_token(path: &Path) -> Result<String, KeyError> {
    load_or_create_token(path, "vrt_", "read token", "reading the read token")
}

fn load_or_create_token(
    path: &Path,
    prefix: &str,
    what: &str,
    reading: &'static str,
) -> Result<String, KeyError> {
    use base64::Engine as _;
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 32 => Ok(t.trim().to_string()),
        Ok(_) => Err(KeyError::Invalid(format!(
            "{what} {} is shorter than 32 characters",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = format!(
                "{prefix}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
            );
            write_secret(path, t.as_bytes())?;
            Ok(t)
        }
        Err(e) => Err(io(reading, path)(e)),
    }
}

enum Pair {
    Ed(Ed25519KeyPair),
    Es(EcdsaKeyPair),
}

/// One result-signing key.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    pair: Pair,
    meta: KeyMeta,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyMeta {
    kid: String,
    alg: SigningAlg,
    created_at: u64,
    retired_at: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyIndex {
    keys: Vec<KeyMeta>,
}

impl SigningKey {
    fn from_pkcs8(alg: SigningAlg, der: &[u8], meta: KeyMeta) -> Result<Self, KeyError> {
        let pair = match alg {
            SigningAlg::EdDSA => Pair::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| KeyError::Invalid(format!("Ed25519 key {}: {e}", meta.kid)))?,
            ),
            SigningAlg::ES256 => Pair::Es(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| KeyError::Invalid(format!("P-256 key {}: {e}", meta.kid)))?,
            ),
        };
        Ok(Self {
            kid: meta.kid.clone(),
            alg,
            pair,
            meta,
        })
    }

    fn public_key(&self) -> &[u8] {
        match &self.pair {
            Pair::Ed(p) => p.public_key().as_ref(),
            Pair::Es(p) => p.public_key().as_ref(),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK of the public key.
    pub fn jwk(&self) -> Value {
        let pk = self.public_key();
        match self.alg {
            SigningAlg::EdDSA => json!({
                "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pk),
                "kid": self.kid, "alg": "EdDSA", "use": "sig",
            }),
            SigningAlg::ES256 => json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(pk.get(1..33).unwrap_or_default()),
                "y": URL_SAFE_NO_PAD.encode(pk.get(33..65).unwrap_or_default()),
                "kid": self.kid, "alg": "ES256", "use": "sig",
            }),
        }
    }

    /// The public key as a DER SubjectPublicKeyInfo (what the replica certificate certifies).
    pub fn spki_der(&self) -> Vec<u8> {
        // Fixed prefixes: id-Ed25519 (RFC 8410), and id-ecPublicKey with prime256v1 for an
        // uncompressed P-256 point (RFC 5480).
        const ED25519: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        const P256: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let pk = self.public_key();
        let mut out = match self.alg {
            SigningAlg::EdDSA => ED25519.to_vec(),
            SigningAlg::ES256 => P256.to_vec(),
        };
        out.extend_from_slice(pk);
        out
    }

    /// Sign `claims` as a compact JWT with this key.
    pub fn sign_jwt(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        self.sign_jws("JWT", &[], claims)
    }

    /// Sign `claims` as a compact JWS of type `typ`, with the signer's certificate chain
    /// (`x5c`, DER, leaf first) in the header when `x5c` is not empty.
    pub fn sign_jws(
        &self,
        typ: &str,
        x5c: &[Vec<u8>],
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        use base64::engine::general_purpose::STANDARD;
        let mut header = json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        if !x5c.is_empty() {
            header["x5c"] = x5c.iter().map(|c| STANDARD.encode(c)).collect();
        }
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        let body = serde_json::to_vec(claims).map_err(|e| KeyError::Invalid(e.to_string()))?;
        out.push_str(&URL_SAFE_NO_PAD.encode(body));
        let sig = match &self.pair {
            Pair::Ed(p) => p.sign(out.as_bytes()).as_ref().to_vec(),
            Pair::Es(p) => p
                .sign(&SystemRandom::new(), out.as_bytes())
                .map_err(|e| KeyError::Invalid(format!("ECDSA signing failed: {e}")))?
                .as_ref()
                .to_vec(),
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }
}

/// All result-signing keys of this verifier: the active one signs, retired ones stay published
/// in the JWKS for a grace period so results they signed keep verifying.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

fn generate(alg: SigningAlg) -> Result<Vec<u8>, KeyError> {
    let doc = match alg {
        SigningAlg::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8())
            .map(|d| d.as_ref().to_vec()),
        SigningAlg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
    };
    doc.map_err(|e| KeyError::Invalid(format!("key generation failed: {e}")))
}

impl Keyring {
    fn index_path(dir: &Path) -> PathBuf {
        dir.join("signing.json")
    }

    /// Load the keyring in `dir`; when it holds no key, create one with `alg`.
    pub fn load_or_create(dir: &Path, alg: SigningAlg, now: u64) -> Result<Self, KeyError> {
        let ring = Self::load(dir)?;
        if ring.keys.iter().any(|k| k.meta.retired_at.is_none()) {
            return Ok(ring);
        }
        Self::rotate(dir, alg, now)?;
        Self::load(dir)
    }

    /// Load the keyring in `dir` (empty when there is none).
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let idx_path = Self::index_path(dir);
        let index: KeyIndex = match std::fs::read(&idx_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                KeyError::Invalid(format!("{} is corrupt: {e}", idx_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyIndex::default(),
            Err(e) => return Err(io("reading key index", &idx_path)(e)),
        };
        let mut keys = Vec::new();
        for meta in index.keys {
            let p = dir.join(format!("{}.p8", meta.kid));
            let der = std::fs::read(&p).map_err(io("reading signing key", &p))?;
            keys.push(SigningKey::from_pkcs8(meta.alg, &der, meta)?);
        }
        Ok(Self { keys })
    }

    /// Create a new active key and retire the current one(s). Returns the new key id.
    pub fn rotate(dir: &Path, alg: SigningAlg, now: u64) -> Result<String, KeyError> {
        let idx_path = Self::index_path(dir);
        let mut index: KeyIndex = match std::fs::read(&idx_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                KeyError::Invalid(format!("{} is corrupt: {e}", idx_path.display()))
            })?,
            Err(_) => KeyIndex::default(),
        };
        let der = generate(alg)?;
        let probe = SigningKey::from_pkcs8(
            alg,
            &der,
            KeyMeta {
                kid: String::new(),
                alg,
                created_at: now,
                retired_at: None,
            },
        )?;
        let kid = hex::encode(&Sha256::digest(probe.public_key())[..8]);
        write_secret(&dir.join(format!("{kid}.p8")), &der)?;
        for k in &mut index.keys {
            if k.retired_at.is_none() {
                k.retired_at = Some(now);
            }
        }
        index.keys.push(KeyMeta {
            kid: kid.clone(),
            alg,
            created_at: now,
            retired_at: None,
        });
        let json =
            serde_json::to_vec_pretty(&index).map_err(|e| KeyError::Invalid(e.to_string()))?;
        write_secret(&idx_path, &json)?;
        Ok(kid)
    }

    /// The key that signs new results.
    pub fn active(&self) -> Option<&SigningKey> {
        self.keys.iter().rev().find(|k| k.meta.retired_at.is_none())
    }

    /// The JWKS: the active key and keys retired less than `grace` seconds ago.
    pub fn jwks(&self, now: u64, grace: u64) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .rev()
            .filter(|k| match k.meta.retired_at {
                None => true,
                Some(r) => now < r.saturating_add(grace),
            })
            .map(SigningKey::jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// The verifier's ML-DSA-65 (FIPS 204) result-signing key, beside the classical keyring
/// (`keys/mldsa65.p8`, PKCS#8, mode 0600, created on first start). It adds a post-quantum
/// signature to results ([`PqKey::cosign`]); its public key is published in the JWKS as an
/// `AKP` key with `alg` `ML-DSA-65` (RFC 9964).
pub struct PqKey {
    kid: String,
    pair: aws_lc_rs::signature::PqdsaKeyPair,
}

impl std::fmt::Debug for PqKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PqKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PqKey {
    /// The file name of the key under the keys directory.
    pub const FILE: &'static str = "mldsa65.p8";

    /// Load the key at `dir/mldsa65.p8`, creating it when missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        use aws_lc_rs::signature::{ML_DSA_65_SIGNING, PqdsaKeyPair};
        let path = dir.join(Self::FILE);
        let der = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING)
                    .and_then(|k| k.to_pkcs8v1())
                    .map_err(|e| KeyError::Invalid(format!("ML-DSA-65 key generation: {e}")))?
                    .as_ref()
                    .to_vec();
                write_secret(&path, &der)?;
                der
            }
            Err(e) => return Err(io("reading ML-DSA key", &path)(e)),
        };
        let pair = PqdsaKeyPair::from_pkcs8(&ML_DSA_65_SIGNING, &der)
            .map_err(|e| KeyError::Invalid(format!("ML-DSA-65 key {}: {e}", path.display())))?;
        let kid = format!(
            "mldsa65-{}",
            hex::encode(&Sha256::digest(pair.public_key().as_ref())[..8])
        );
        Ok(Self { kid, pair })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK of the public key: `{"kty": "AKP", "alg": "ML-DSA-65", "pub": …}`.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": vouch_core::jws::AKP, "alg": vouch_core::jws::ML_DSA_65,
            "pub": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid, "use": "sig",
        })
    }

    /// ML-DSA-65 signature of `msg` (3,309 bytes).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; aws_lc_rs::signature::ML_DSA_65_SIGNING.signature_len()];
        let n = self
            .pair
            .sign(msg, &mut sig)
            .map_err(|e| KeyError::Invalid(format!("ML-DSA-65 signing failed: {e}")))?;
        sig.truncate(n);
        Ok(sig)
    }

    /// Add this key's ML-DSA-65 signature to the compact JWS `compact` (a result signed by the
    /// classical key or by the quorum): the JWS JSON general serialization of
    /// [`vouch_core::jws`], the classical signature first and unchanged, then
    /// `{"alg": "ML-DSA-65", "kid", "typ"}` (the `typ` of the classical header) and its
    /// signature over that header and the same payload.
    pub fn cosign(&self, compact: &str) -> Result<String, KeyError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let mut jws = vouch_core::jws::GeneralJws::from_compact(compact)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let typ = jws
            .signatures
            .first()
            .and_then(|s| B64.decode(&s.protected).ok())
            .and_then(|h: Vec<u8>| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("typ").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "JWT".into());
        let header = json!({"alg": vouch_core::jws::ML_DSA_65, "kid": self.kid, "typ": typ});
        let protected = B64.encode(header.to_string());
        let input = format!("{protected}.{}", jws.payload);
        let signature = B64.encode(self.sign(input.as_bytes())?);
        jws.signatures.push(vouch_core::jws::JwsSignature {
            protected,
            signature,
        });
        Ok(jws.to_json())
    }
}

/// Paths of generated TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA certificate agents and relying parties trust.
    pub ca_cert: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

/// Create (once) a private CA and a server certificate for localhost/127.0.0.1/::1 and this
/// host's name under `dir`.
pub fn ensure_dev_tls(dir: &Path) -> Result<TlsFiles, KeyError> {
    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    if files.ca_cert.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let bad = |e: rcgen::Error| KeyError::Invalid(format!("generating TLS certificates: {e}"));
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Vouch development CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(bad)?;

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !host.is_empty() && host != "localhost" {
        names.push(host);
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(bad)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vouch verifier");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = params.signed_by(&key, &ca).map_err(bad)?;

    std::fs::create_dir_all(dir).map_err(io("creating TLS directory", dir))?;
    write_secret(&files.key, key.serialize_pem().as_bytes())?;
    let chain = format!("{}{}", cert.pem(), ca.pem());
    std::fs::write(&files.cert, chain).map_err(io("writing certificate", &files.cert))?;
    std::fs::write(&files.ca_cert, ca.pem())
        .map_err(io("writing CA certificate", &files.ca_cert))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_key_published_for_grace() {
        let d = tempfile::tempdir().unwrap();
        let r = Keyring::load_or_create(d.path(), SigningAlg::EdDSA, 100).unwrap();
        let first = r.active().unwrap().kid().to_string();
        let second = Keyring::rotate(d.path(), SigningAlg::ES256, 200).unwrap();
        let r = Keyring::load(d.path()).unwrap();
        assert_eq!(r.active().unwrap().kid(), second);
        let jwks = r.jwks(250, 100);
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, vec![second.as_str(), first.as_str()]);
        assert_eq!(r.jwks(300, 100)["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn ml_dsa_key_is_kept_and_cosigns_without_touching_the_classical_signature() {
        use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let k = PqKey::load_or_create(d.path()).unwrap();
        let again = PqKey::load_or_create(d.path()).unwrap();
        assert_eq!(k.kid(), again.kid());
        let mode = std::fs::metadata(d.path().join(PqKey::FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let jwk = k.jwk();
        assert_eq!(jwk["kty"], "AKP");
        assert_eq!(jwk["alg"], "ML-DSA-65");
        let pk = URL_SAFE_NO_PAD
            .decode(jwk["pub"].as_str().unwrap())
            .unwrap();
        assert_eq!(pk.len(), 1952);

        let r = Keyring::load_or_create(d.path(), SigningAlg::EdDSA, 100).unwrap();
        let compact = r
            .active()
            .unwrap()
            .sign_jws("vouch-revocation+jwt", &[], &json!({"a": 1}))
            .unwrap();
        let jws = vouch_core::jws::GeneralJws::parse(&k.cosign(&compact).unwrap()).unwrap();
        assert_eq!(jws.compact(0).unwrap(), compact);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(&jws.signatures[1].protected)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": "ML-DSA-65", "kid": k.kid(), "typ": "vouch-revocation+jwt"})
        );
        let sig = URL_SAFE_NO_PAD
            .decode(&jws.signatures[1].signature)
            .unwrap();
        let input = jws.signing_input(1).unwrap();
        UnparsedPublicKey::new(&ML_DSA_65, &pk)
            .verify(input.as_bytes(), &sig)
            .unwrap();
        // Not a compact JWS: refused, not panicking.
        assert!(k.cosign("not a jws").is_err());
    }

    #[test]
    fn dev_tls_is_created_once() {
        let d = tempfile::tempdir().unwrap();
        let a = ensure_dev_tls(d.path()).unwrap();
        let before = std::fs::read(&a.cert).unwrap();
        ensure_dev_tls(d.path()).unwrap();
        assert_eq!(before, std::fs::read(&a.cert).unwrap());
    }
}

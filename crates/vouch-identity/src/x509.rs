//! The trust domain's X.509 CA and X.509-SVIDs (X509-SVID standard).

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use serde_json::{Value, json};
use std::path::Path;

use crate::{IdentityError, SpiffeId, TrustDomain};

fn x(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::X509(e.to_string())
}

fn at(unix: u64) -> Result<time::OffsetDateTime, IdentityError> {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).map_err(x)?).map_err(x)
}

fn random_serial() -> Result<SerialNumber, IdentityError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| x("random serial"))?;
    b[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&b))
}

/// Where the CA's private key is.
enum CaKey {
    /// In memory, loaded from `ca.key` (dev and small deployments).
    File(KeyPair),
    /// In a PKCS#11 token; it never leaves it.
    Hsm(crate::Pkcs11Key),
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::File(k) => k.der_bytes(),
            Self::Hsm(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::File(k) => k.algorithm(),
            Self::Hsm(k) => k.algorithm(),
        }
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            Self::File(k) => k.sign(msg),
            Self::Hsm(k) => k.sign(msg),
        }
    }
}

/// A trust domain's signing CA (ECDSA P-256).
pub struct SvidCa {
    trust_domain: TrustDomain,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// The certificate's notBefore and notAfter, Unix seconds.
    validity: (u64, u64),
    issuer: Issuer<'static, CaKey>,
}

impl std::fmt::Debug for SvidCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn ca_params(td: &TrustDomain) -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(x)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Vouch");
    dn.push(DnType::CommonName, format!("Vouch SPIFFE CA {td}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.subject_alt_names = vec![SanType::URI(td.id_string().try_into().map_err(x)?)];
    Ok(p)
}

impl SvidCa {
    /// A new self-signed CA for `td`, valid for `ttl` seconds from `now`.
    pub fn generate(td: &TrustDomain, ttl: u64, now: u64) -> Result<Self, IdentityError> {
        Self::self_signed(td, ttl, now, CaKey::File(KeyPair::generate().map_err(x)?))
    }

    fn self_signed(
        td: &TrustDomain,
        ttl: u64,
        now: u64,
        key: CaKey,
    ) -> Result<Self, IdentityError> {
        let mut p = ca_params(td)?;
        p.not_before = at(now.saturating_sub(60))?;
        p.not_after = at(now + ttl)?;
        p.serial_number = Some(random_serial()?);
        let cert = p.self_signed(&key).map_err(x)?;
        Self::assemble(td, cert.der().to_vec(), cert.pem(), key)
    }

    /// The CA with its key in a PKCS#11 token (generated there on first use, never exported);
    /// the certificate is kept in `dir/ca.crt` and re-made when it does not match the token's
    /// key.
    pub fn open_pkcs11(
        cfg: &crate::Pkcs11Config,
        dir: &Path,
        td: &TrustDomain,
        ttl: u64,
        now: u64,
    ) -> Result<Self, IdentityError> {
        use rcgen::PublicKeyData as _;
        let key = crate::Pkcs11Key::open(cfg)?;
        let cp = dir.join("ca.crt");
        if let Ok(cert_pem) = std::fs::read_to_string(&cp) {
            let der = pem_body(&cert_pem)?;
            let matches = x509_parser::parse_x509_certificate(&der)
                .map(|(_, c)| c.public_key().subject_public_key.data.as_ref() == key.der_bytes())
                .unwrap_or(false);
            if matches {
                return Self::assemble(td, der, cert_pem, CaKey::Hsm(key));
            }
        }
        let ca = Self::self_signed(td, ttl, now, CaKey::Hsm(key))?;
        std::fs::create_dir_all(dir).map_err(x)?;
        std::fs::write(&cp, &ca.cert_pem).map_err(x)?;
        Ok(ca)
    }

    fn assemble(
        td: &TrustDomain,
        cert_der: Vec<u8>,
        cert_pem: String,
        key: CaKey,
    ) -> Result<Self, IdentityError> {
        let validity = {
            let (_, c) = x509_parser::parse_x509_certificate(&cert_der).map_err(x)?;
            let v = c.validity();
            (
                u64::try_from(v.not_before.timestamp()).unwrap_or(0),
                u64::try_from(v.not_after.timestamp()).unwrap_or(0),
            )
        };
        Ok(Self {
            trust_domain: td.clone(),
            cert_der,
            cert_pem,
            validity,
            issuer: Issuer::new(ca_params(td)?, key),
        })
    }

    /// The CA certificate's validity: (notBefore, notAfter), Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        self.validity
    }

    /// Load `ca.crt` and `ca.key` from `dir`, or create them (key mode 0600).
    pub fn load_or_create(
        dir: &Path,
        td: &TrustDomain,
        ttl: u64,
        now: u64,
    ) -> Result<Self, IdentityError> {
        let (cp, kp) = (dir.join("ca.crt"), dir.join("ca.key"));
        if let (Ok(cert_pem), Ok(key_pem)) =
            (std::fs::read_to_string(&cp), std::fs::read_to_string(&kp))
        {
            let key = KeyPair::from_pem(&key_pem).map_err(x)?;
            let der = pem_body(&cert_pem)?;
            return Self::assemble(td, der, cert_pem, CaKey::File(key));
        }
        let ca = Self::generate(td, ttl, now)?;
        std::fs::create_dir_all(dir).map_err(x)?;
        if let CaKey::File(k) = ca.issuer.key() {
            write_private(&kp, k.serialize_pem().as_bytes())?;
        }
        std::fs::write(&cp, &ca.cert_pem).map_err(x)?;
        Ok(ca)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issue an X.509-SVID for `id` to the holder of the key in `spki_der` (SubjectPublicKeyInfo),
    /// valid `ttl` seconds from `now`: exactly one URI SAN (critical, the subject is empty),
    /// `cA=false`, KeyUsage digitalSignature (critical, no keyCertSign/cRLSign), EKU serverAuth
    /// and clientAuth. IDs under [`VERIFIER_PATH_PREFIX`] are refused: those are the verifiers'
    /// own, certified only by [`SvidCa::issue_verifier`].
    pub fn issue(
        &self,
        id: &SpiffeId,
        spki_der: &[u8],
        ttl: u64,
        now: u64,
    ) -> Result<Vec<u8>, IdentityError> {
        if id.path().starts_with(VERIFIER_PATH_PREFIX) {
            return Err(x(format!(
                "{id} is under {VERIFIER_PATH_PREFIX}, the verifiers' own signing identities: \
                 no workload SVID is issued there"
            )));
        }
        self.issue_with(
            id,
            spki_der,
            ttl,
            now,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Certify a verifier replica's result-signing key as `id` (under
    /// [`VERIFIER_PATH_PREFIX`]): as [`SvidCa::issue`], but with the one EKU
    /// id-kp-documentSigning (RFC 9336, [`DOCUMENT_SIGNING_EKU`]) and no TLS use. Relying parties
    /// accept results, revocation records and heads only from certificates with that EKU, which
    /// no workload SVID carries.
    pub fn issue_verifier(
        &self,
        id: &SpiffeId,
        spki_der: &[u8],
        ttl: u64,
        now: u64,
    ) -> Result<Vec<u8>, IdentityError> {
        if !id.path().starts_with(VERIFIER_PATH_PREFIX) {
            return Err(x(format!(
                "{id} is not under {VERIFIER_PATH_PREFIX}: not a verifier identity"
            )));
        }
        self.issue_with(
            id,
            spki_der,
            ttl,
            now,
            vec![ExtendedKeyUsagePurpose::Other(
                DOCUMENT_SIGNING_EKU.to_vec(),
            )],
        )
    }

    fn issue_with(
        &self,
        id: &SpiffeId,
        spki_der: &[u8],
        ttl: u64,
        now: u64,
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<Vec<u8>, IdentityError> {
        if id.trust_domain() != &self.trust_domain {
            return Err(x(format!(
                "{id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(x)?;
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(id.to_string().try_into().map_err(x)?)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = ekus;
        p.use_authority_key_identifier_extension = true;
        p.not_before = at(now.saturating_sub(30))?;
        // Never outlive the CA: an SVID valid after its issuer is not is refused by verifiers.
        if now >= self.validity.1 {
            return Err(x("the CA has expired"));
        }
        p.not_after = at((now + ttl).min(self.validity.1))?;
        p.serial_number = Some(random_serial()?);
        let pk = SubjectPublicKeyInfo::from_der(spki_der).map_err(x)?;
        Ok(p.signed_by(&pk, &self.issuer).map_err(x)?.der().to_vec())
    }
}

/// The path prefix of verifier replicas' signing identities
/// (`spiffe://<td>/vouch/verifier/<kid>`): never a workload's.
pub const VERIFIER_PATH_PREFIX: &str = "/vouch/verifier/";

/// id-kp-documentSigning (1.3.6.1.5.5.7.3.36, RFC 9336): the one EKU of a verifier replica's
/// certificate, and what relying parties require of the signer of a result or record.
pub const DOCUMENT_SIGNING_EKU: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 36];

/// PEM of a DER certificate (64-column base64), as `openssl` and most tools expect.
pub fn cert_to_pem(der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

pub(crate) fn pem_body(pem: &str) -> Result<Vec<u8>, IdentityError> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(x)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(x)?;
    f.write_all(bytes).map_err(x)
}

/// A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle standard): a JWKS whose `x509-svid`
/// keys carry one `x5c` certificate each and whose `jwt-svid` keys carry a `kid`.
pub fn bundle_jwks(
    x509_authorities: &[&[u8]],
    jwt_keys: &[Value],
    sequence: u64,
    refresh_hint: u64,
) -> Value {
    let mut keys: Vec<Value> = x509_authorities
        .iter()
        .map(|der| {
            let mut k = json!({
                "use": "x509-svid",
                "kty": "EC",
                "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
            });
            if let Some((px, py)) = p256_point(der) {
                let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                k["crv"] = json!("P-256");
                k["x"] = json!(b.encode(px));
                k["y"] = json!(b.encode(py));
            }
            k
        })
        .collect();
    for k in jwt_keys {
        let mut k = k.clone();
        if let Some(o) = k.as_object_mut() {
            o.insert("use".into(), json!("jwt-svid"));
        }
        keys.push(k);
    }
    json!({"keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": refresh_hint})
}

/// The P-256 public point of a certificate (the SubjectPublicKeyInfo is `id-ecPublicKey`,
/// `prime256v1`, then a 66-byte BIT STRING holding an uncompressed point).
fn p256_point(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const MARK: [u8; 14] = [
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let at = der.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let point = der.get(at..at + 64)?;
    Some((&point[..32], &point[32..]))
}

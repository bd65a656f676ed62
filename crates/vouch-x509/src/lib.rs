//! Certificate-chain checks shared by Vouch's hardware verifiers: the TPM EK certificate chain
//! and vendor chains of TEEs (AMD's ARK → ASK → VCEK). Each check takes the verification time
//! as an argument, so real samples (valid only in the past) are checked at a time inside their
//! window, and errors say which certificate failed and why.
#![deny(missing_docs)]

use aws_lc_rs::signature::{self as s, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;

/// Most certificates read from one PEM bundle.
const MAX_PEM_CERTS: usize = 64;

/// RSASSA-PSS parameters with SHA-384, MGF1-SHA-384 and a 48-byte salt (what AMD signs its
/// SEV certificates with), with and without the explicit default trailer field.
const PSS_SHA384: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

/// The certificates of a PEM text, DER-decoded (other blocks are skipped).
pub fn pem_certificates(text: &str) -> Vec<Vec<u8>> {
    pem_blocks(text, "CERTIFICATE")
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// The `label` blocks of a PEM text (`CERTIFICATE`, `X509 CRL`, …), each base64-decoded or
/// the reason it does not decode, in order; other blocks are skipped. At most 64 blocks.
pub fn pem_blocks(text: &str, label: &str) -> Vec<Result<Vec<u8>, String>> {
    use base64::Engine as _;
    let (begin, end) = (format!("-----BEGIN {label}"), format!("-----END {label}"));
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with(&begin) {
            cur = Some(String::new());
        } else if l.starts_with(&end) {
            if let Some(b) = cur.take() {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| format!("{label} block is not base64: {e}")),
                );
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(l);
        }
        if out.len() >= MAX_PEM_CERTS {
            break;
        }
    }
    out
}

/// The certificates of PEM text from an untrusted source, strictly: only `CERTIFICATE`
/// blocks with exact armour lines, base64 lines inside, and empty lines between; anything
/// else is an error (so no byte of the text goes unread).
pub fn pem_certificates_strict(text: &str) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (&mut cur, line) {
            (None, BEGIN) => cur = Some(String::new()),
            (None, "") => {}
            (None, _) => return Err(format!("line {}: not a certificate block", n + 1)),
            (Some(b), END) => {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| format!("line {}: certificate base64: {e}", n + 1))?;
                out.push(der);
                cur = None;
            }
            (Some(b), l)
                if !l.is_empty()
                    && l.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) =>
            {
                b.push_str(l);
            }
            (Some(_), _) => return Err(format!("line {}: not base64", n + 1)),
        }
        if out.len() > MAX_PEM_CERTS {
            return Err("too many certificates".into());
        }
    }
    if cur.is_some() {
        return Err("a certificate block is not closed".into());
    }
    Ok(out)
}

/// Parse a DER certificate; the error names `what`.
pub fn parse(der: &[u8], what: &str) -> Result<Certificate, String> {
    Certificate::from_der(der).map_err(|e| format!("{what} certificate does not parse: {e}"))
}

/// Parse a trust anchor: a certificate whose own key signed it. The error names `what`.
pub fn parse_self_signed(der: &[u8], what: &str) -> Result<Certificate, String> {
    let c = parse(der, what)?;
    verify_signed_by(der, &c, &c).map_err(|e| format!("the {what} is not self-signed: {e}"))?;
    Ok(c)
}

/// The certificate's validity window, Unix seconds.
pub fn validity(c: &Certificate) -> (u64, u64) {
    let v = &c.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    )
}

/// Require `now` inside the validity of `c`.
pub fn check_validity(c: &Certificate, now: u64, what: &str) -> Result<(), String> {
    let (nb, na) = validity(c);
    if now < nb {
        return Err(format!(
            "{what} {} is not valid before {nb} (verification time {now})",
            c.tbs_certificate.subject
        ));
    }
    if now > na {
        return Err(format!(
            "{what} {} expired at {na} (verification time {now})",
            c.tbs_certificate.subject
        ));
    }
    Ok(())
}

/// Whether `c` says it is a CA (basicConstraints cA = true).
pub fn is_ca(c: &Certificate) -> bool {
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id.to_string() == "2.5.29.19")
        .filter_map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .any(|bc| bc.ca)
}

/// The raw DER of the TBSCertificate inside a certificate (the signed bytes, exactly as sent).
pub fn tbs_bytes(der: &[u8]) -> Result<&[u8], String> {
    fn header(b: &[u8], at: usize) -> Option<(usize, usize)> {
        let len0 = *b.get(at + 1)? as usize;
        if len0 < 0x80 {
            return Some((2, len0));
        }
        let n = len0 & 0x7f;
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(at + 2 + i)? as usize;
        }
        Some((2 + n, len))
    }
    let (h, _) = header(der, 0).ok_or("certificate DER")?;
    let (h2, l2) = header(der, h).ok_or("TBSCertificate DER")?;
    der.get(h..h + h2 + l2)
        .ok_or_else(|| "TBSCertificate truncated".to_string())
}

/// Check that `issuer`'s key signed `cert` (whose DER is `der`): RSA PKCS#1 v1.5 with SHA-256,
/// -384 or -512, RSASSA-PSS with SHA-384 (AMD), ECDSA P-256/SHA-256 and P-384/SHA-384.
pub fn verify_signed_by(
    der: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
) -> Result<(), String> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "{} is issued by {}, not by {}",
            cert.tbs_certificate.subject,
            cert.tbs_certificate.issuer,
            issuer.tbs_certificate.subject
        ));
    }
    // The outer signatureAlgorithm is not covered by the signature: it must say exactly what
    // the signed TBSCertificate says (RFC 5280 §4.1.1.2), or an edited, unsigned field would
    // choose how the signature is checked.
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(format!(
            "{}: the certificate's signatureAlgorithm differs from the signature field of its \
             signed part (RFC 5280 4.1.1.2)",
            cert.tbs_certificate.subject
        ));
    }
    let sig = cert
        .signature
        .as_bytes()
        .ok_or("signature bit string has unused bits")?;
    let what = cert.tbs_certificate.subject.to_string();
    verify_signature(
        tbs_bytes(der)?,
        &cert.signature_algorithm,
        sig,
        &what,
        issuer,
    )
}

/// Check that `issuer`'s key made `sig` over `tbs` with `alg` (the algorithms of
/// [`verify_signed_by`]); `what` names the signed object in errors.
fn verify_signature(
    tbs: &[u8],
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    sig: &[u8],
    what: &str,
    issuer: &Certificate,
) -> Result<(), String> {
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key_bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("issuer key bit string has unused bits")?;
    let spki_der = spki.to_der().map_err(|e| e.to_string())?;
    let oid = alg.oid.to_string();
    let (alg, key): (&dyn s::VerificationAlgorithm, &[u8]) = match oid.as_str() {
        "1.2.840.113549.1.1.11" => (&s::RSA_PKCS1_2048_8192_SHA256, &spki_der),
        "1.2.840.113549.1.1.12" => (&s::RSA_PKCS1_2048_8192_SHA384, &spki_der),
        "1.2.840.113549.1.1.13" => (&s::RSA_PKCS1_2048_8192_SHA512, &spki_der),
        "1.2.840.113549.1.1.10" => {
            let params = alg
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .unwrap_or_default();
            // Only SHA-384 / MGF1-SHA-384 / salt 48, trailer field explicit or not.
            let without_trailer = {
                let mut v = PSS_SHA384[..PSS_SHA384.len() - 5].to_vec();
                v[1] = 0x34;
                v
            };
            if params.as_slice() != PSS_SHA384.as_slice() && params != without_trailer {
                return Err(format!(
                    "{what}: RSASSA-PSS parameters other than SHA-384, MGF1-SHA-384, salt 48"
                ));
            }
            (&s::RSA_PSS_2048_8192_SHA384, &spki_der)
        }
        "1.2.840.10045.4.3.2" => (&s::ECDSA_P256_SHA256_ASN1, key_bits),
        "1.2.840.10045.4.3.3" => (&s::ECDSA_P384_SHA384_ASN1, key_bits),
        other => {
            return Err(format!("{what}: unsupported signature algorithm {other}"));
        }
    };
    UnparsedPublicKey::new(alg, key)
        .verify(tbs, sig)
        .map_err(|_| {
            format!(
                "the signature on {what} does not verify under {}'s key",
                issuer.tbs_certificate.subject
            )
        })
}

/// Largest CRL read (Intel's PCK CRLs are a few KiB; AMD's smaller).
pub const MAX_CRL: usize = 4 * 1024 * 1024;

/// A certificate revocation list whose signature verified under its issuer and which was
/// current at the verification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCrl {
    /// The issuer's name, as the CRL gives it.
    pub issuer: String,
    /// `thisUpdate`, Unix seconds.
    pub this_update: u64,
    /// `nextUpdate`, Unix seconds: the CRL is not used after it.
    pub next_update: u64,
    /// Revoked serial numbers (the DER INTEGER contents).
    revoked: std::collections::BTreeSet<Vec<u8>>,
}

/// Parse a DER CRL (X.509 v2, RFC 5280) and check it: no byte left unread, issued by `issuer`
/// (name and signature), `thisUpdate <= now < nextUpdate` (a CRL without `nextUpdate` is
/// refused), and no critical extension this code does not apply (a delta CRL, an indirect
/// CRL's certificate-issuer entries).
pub fn verify_crl(der: &[u8], issuer: &Certificate, now: u64) -> Result<VerifiedCrl, String> {
    use x509_cert::crl::CertificateList;
    if der.len() > MAX_CRL {
        return Err(format!("CRL of {} bytes (at most {MAX_CRL})", der.len()));
    }
    let crl = CertificateList::from_der(der).map_err(|e| format!("CRL is not DER: {e}"))?;
    let tbs = &crl.tbs_cert_list;
    let name = tbs.issuer.to_string();
    if tbs.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "the CRL is issued by {name}, not by {}",
            issuer.tbs_certificate.subject
        ));
    }
    if tbs.signature != crl.signature_algorithm {
        return Err("the CRL's two signature algorithm fields differ".into());
    }
    let sig = crl
        .signature
        .as_bytes()
        .ok_or("CRL signature bit string has unused bits")?;
    verify_signature(
        tbs_bytes(der)?,
        &crl.signature_algorithm,
        sig,
        &format!("the CRL of {name}"),
        issuer,
    )?;
    // Extensions: CRL number, authority key id and issuing distribution point are understood
    // (this code takes the whole list of one issuer); anything else critical is refused.
    for e in tbs.crl_extensions.iter().flatten() {
        let oid = e.extn_id.to_string();
        if e.critical && !matches!(oid.as_str(), "2.5.29.20" | "2.5.29.35" | "2.5.29.28") {
            return Err(format!("the CRL of {name} has critical extension {oid}"));
        }
    }
    let this_update = tbs.this_update.to_unix_duration().as_secs();
    let next_update = tbs
        .next_update
        .ok_or_else(|| format!("the CRL of {name} has no nextUpdate"))?
        .to_unix_duration()
        .as_secs();
    if now < this_update {
        return Err(format!(
            "the CRL of {name} is not valid before {this_update} (verification time {now})"
        ));
    }
    if now >= next_update {
        return Err(format!(
            "the CRL of {name} expired at {next_update} (verification time {now}); \
             fetch a current one"
        ));
    }
    let mut revoked = std::collections::BTreeSet::new();
    for r in tbs.revoked_certificates.iter().flatten() {
        for e in r.crl_entry_extensions.iter().flatten() {
            if e.critical {
                return Err(format!(
                    "the CRL of {name} has a critical entry extension {}",
                    e.extn_id
                ));
            }
        }
        revoked.insert(r.serial_number.as_bytes().to_vec());
    }
    Ok(VerifiedCrl {
        issuer: name,
        this_update,
        next_update,
        revoked,
    })
}

impl VerifiedCrl {
    /// Refuse `c` if this CRL's issuer issued it and lists its serial number.
    pub fn check(&self, c: &Certificate) -> Result<(), String> {
        if c.tbs_certificate.issuer.to_string() == self.issuer
            && self
                .revoked
                .contains(c.tbs_certificate.serial_number.as_bytes())
        {
            return Err(format!(
                "{} (serial {}) is revoked by the CRL of {}",
                c.tbs_certificate.subject,
                hex_of(c.tbs_certificate.serial_number.as_bytes()),
                self.issuer
            ));
        }
        Ok(())
    }

    /// Whether the serial number (DER INTEGER contents) is listed.
    pub fn lists(&self, serial: &[u8]) -> bool {
        self.revoked.contains(serial)
    }

    /// How many certificates the CRL revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it revokes none.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// The revoked serial numbers.
    pub fn serials(&self) -> impl Iterator<Item = &[u8]> {
        self.revoked.iter().map(Vec::as_slice)
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The value (inner DER) of the extension `oid` of `c`, if present.
pub fn extension<'a>(c: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Certificate chains whose signatures were checked, each with the window in which all its
/// certificates are valid: a chain is checked once, not on every report it vouches for.
#[derive(Debug, Clone, Default)]
pub struct VerifiedChains {
    inner: std::sync::Arc<std::sync::Mutex<ChainWindows>>,
}

/// Chain digest → (valid from, valid until).
type ChainWindows = std::collections::HashMap<[u8; 32], (u64, u64)>;

/// Most chains remembered (the cache is emptied when full).
const MAX_CACHED_CHAINS: usize = 4096;

/// SHA-256 over `parts`, each preceded by its length, so no two lists of parts collide: the
/// key under which verified material is remembered.
pub fn digest_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for d in parts {
        h.update(&(d.len() as u64).to_be_bytes());
        h.update(d);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    out
}

impl VerifiedChains {
    /// Whether `chain` (DER, in any fixed order) was verified and `now` is inside the window in
    /// which all its certificates are valid.
    pub fn contains(&self, chain: &[&[u8]], now: u64) -> bool {
        let key = digest_parts(chain);
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied())
            .is_some_and(|(from, until)| from <= now && now <= until)
    }

    /// Remember `chain`, verified, with its parsed certificates (for their validity windows).
    pub fn insert(&self, chain: &[&[u8]], certs: &[&Certificate]) {
        self.insert_until(chain, certs, u64::MAX);
    }

    /// [`VerifiedChains::insert`], remembered no later than `until` (e.g. the `nextUpdate` of a
    /// CRL the chain was checked against, which is part of `chain`).
    pub fn insert_until(&self, chain: &[&[u8]], certs: &[&Certificate], until: u64) {
        let from = certs
            .iter()
            .map(|c| validity(c).0)
            .max()
            .unwrap_or(u64::MAX);
        let until = certs
            .iter()
            .map(|c| validity(c).1)
            .min()
            .unwrap_or(0)
            .min(until.saturating_sub(1));
        if let Ok(mut m) = self.inner.lock() {
            if m.len() >= MAX_CACHED_CHAINS {
                m.clear();
            }
            m.insert(digest_parts(chain), (from, until));
        }
    }
}

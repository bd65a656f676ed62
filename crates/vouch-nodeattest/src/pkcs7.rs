//! PKCS#7 / CMS SignedData (RFC 5652) as the clouds send it: AWS's `/rsa2048` and `/pkcs7`
//! instance identity signatures and Azure's attested document. Both are read with one small,
//! bounded BER reader rather than a DER-only parser, because AWS encodes its SignedData with
//! indefinite lengths and a constructed (chunked) content OCTET STRING, which DER parsers
//! (RustCrypto `cms`/`der`) refuse; the certificates and signed attributes inside are DER and
//! go to `x509-cert` and the signature check.
//!
//! Only what verification needs is kept: the encapsulated content (reassembled), the
//! certificates carried along, and the one signer's issuer, serial, algorithms, signed
//! attributes (re-tagged as the SET they are signed as) and signature.

use aws_lc_rs::signature::{self as s, UnparsedPublicKey};
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::der::Encode as _;

/// Deepest nesting the reader follows.
const MAX_DEPTH: usize = 24;
/// Most elements one constructed value may hold (certificates, attributes, chunks).
const MAX_CHILDREN: usize = 256;

/// `1.2.840.113549.1.7.2` signedData.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// `1.2.840.113549.1.7.1` data.
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// `2.16.840.1.101.3.4.2.1` SHA-256.
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// `1.2.840.113549.1.1.1` rsaEncryption.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `1.2.840.113549.1.1.11` sha256WithRSAEncryption (Azure also names it as the *digest*
/// algorithm of its SignerInfo; it is read as SHA-256 there).
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// `1.2.840.113549.1.9.3` contentType attribute.
const OID_ATTR_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
/// `1.2.840.113549.1.9.4` messageDigest attribute.
const OID_ATTR_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];

/// One BER element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    /// The identifier octet (low tag numbers only).
    pub tag: u8,
    /// The content octets (for an indefinite length: up to, not including, the end marker).
    pub content: &'a [u8],
    /// The whole element as encoded.
    pub raw: &'a [u8],
    /// Whether the length was indefinite.
    pub indefinite: bool,
}

/// Read one element at the start of `input`; the rest follows.
pub(crate) fn read(input: &[u8], depth: usize) -> Result<(Element<'_>, &[u8]), String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
    let tag = *input.first().ok_or("truncated: no tag")?;
    if tag & 0x1f == 0x1f {
        return Err(format!(
            "high tag number form (0x{tag:02x}) is not used here"
        ));
    }
    let l0 = *input.get(1).ok_or("truncated: no length")?;
    if l0 == 0x80 {
        if tag & 0x20 == 0 {
            return Err("indefinite length on a primitive element".into());
        }
        // Children until the end-of-contents marker.
        let mut rest = input.get(2..).ok_or("truncated")?;
        let mut n = 0usize;
        loop {
            if rest.starts_with(&[0, 0]) {
                let content_len = input.len() - 2 - rest.len();
                let content = &input[2..2 + content_len];
                let raw = &input[..2 + content_len + 2];
                return Ok((
                    Element {
                        tag,
                        content,
                        raw,
                        indefinite: true,
                    },
                    &rest[2..],
                ));
            }
            n += 1;
            if n > MAX_CHILDREN {
                return Err("too many elements".into());
            }
            let (_, r) = read(rest, depth + 1)?;
            rest = r;
        }
    }
    let (hlen, len) = if l0 < 0x80 {
        (2usize, l0 as usize)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n > 4 {
            return Err("length of length over 4 octets".into());
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i).ok_or("truncated length")? as usize;
        }
        (2 + n, len)
    };
    let end = hlen.checked_add(len).ok_or("length overflows")?;
    if end > input.len() {
        return Err(format!(
            "element 0x{tag:02x} claims {len} octets, {} remain",
            input.len() - hlen.min(input.len())
        ));
    }
    Ok((
        Element {
            tag,
            content: &input[hlen..end],
            raw: &input[..end],
            indefinite: false,
        },
        &input[end..],
    ))
}

/// The elements inside a constructed element's content.
pub(crate) fn children<'a>(content: &'a [u8], depth: usize) -> Result<Vec<Element<'a>>, String> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        if out.len() >= MAX_CHILDREN {
            return Err("too many elements".into());
        }
        let (e, r) = read(rest, depth + 1)?;
        out.push(e);
        rest = r;
    }
    Ok(out)
}

/// Read one element of tag `tag` that must be the whole of `input`.
fn only<'a>(input: &'a [u8], tag: u8, what: &str, depth: usize) -> Result<Element<'a>, String> {
    let (e, rest) = read(input, depth)?;
    if e.tag != tag {
        return Err(format!("{what}: tag 0x{:02x}, expected 0x{tag:02x}", e.tag));
    }
    if !rest.is_empty() {
        return Err(format!("{what}: {} trailing octets", rest.len()));
    }
    Ok(e)
}

fn expect<'a>(e: Option<&Element<'a>>, tag: u8, what: &str) -> Result<Element<'a>, String> {
    let e = e.ok_or_else(|| format!("{what} missing"))?;
    if e.tag != tag {
        return Err(format!("{what}: tag 0x{:02x}, expected 0x{tag:02x}", e.tag));
    }
    Ok(*e)
}

/// The octets of an OCTET STRING, primitive or constructed (chunked, BER).
fn octets(e: &Element<'_>, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match e.tag {
        0x04 => {
            out.extend_from_slice(e.content);
            Ok(())
        }
        0x24 => {
            for c in children(e.content, depth)? {
                octets(&c, depth + 1, out)?;
            }
            Ok(())
        }
        t => Err(format!("OCTET STRING expected, tag 0x{t:02x}")),
    }
}

/// The OID inside an AlgorithmIdentifier (parameters, if any, must be NULL).
fn algorithm<'a>(e: &Element<'a>, depth: usize, what: &str) -> Result<&'a [u8], String> {
    if e.tag != 0x30 {
        return Err(format!("{what}: AlgorithmIdentifier expected"));
    }
    let parts = children(e.content, depth)?;
    let oid = expect(parts.first(), 0x06, what)?;
    match parts.get(1) {
        None => {}
        Some(p) if p.tag == 0x05 && p.content.is_empty() => {}
        Some(_) => return Err(format!("{what}: unexpected algorithm parameters")),
    }
    if parts.len() > 2 {
        return Err(format!("{what}: trailing elements"));
    }
    Ok(oid.content)
}

/// The one signer of a SignedData.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    /// The issuer Name of the signing certificate, DER.
    pub issuer: Vec<u8>,
    /// Its serial number (the INTEGER's content octets).
    pub serial: Vec<u8>,
    /// The signed attributes re-encoded as the SET OF they are signed as, when present.
    pub signed_attrs: Option<Vec<u8>>,
    /// The messageDigest attribute's value, when attributes are present.
    pub message_digest: Option<Vec<u8>>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// A parsed SignedData.
#[derive(Debug, Clone)]
pub(crate) struct SignedData {
    /// The encapsulated content, reassembled from its chunks.
    pub content: Vec<u8>,
    /// The certificates carried along (DER, untrusted).
    pub certificates: Vec<Vec<u8>>,
    /// The signer.
    pub signer: Signer,
}

/// Parse a ContentInfo holding a SignedData with one RSA/SHA-256 signer and encapsulated
/// `data` content.
pub(crate) fn parse(der: &[u8]) -> Result<SignedData, String> {
    let ci = only(der, 0x30, "ContentInfo", 0)?;
    let parts = children(ci.content, 1)?;
    let ct = expect(parts.first(), 0x06, "ContentInfo contentType")?;
    if ct.content != OID_SIGNED_DATA {
        return Err("ContentInfo is not signedData".into());
    }
    let explicit = expect(parts.get(1), 0xa0, "ContentInfo content")?;
    if parts.len() != 2 {
        return Err("ContentInfo: trailing elements".into());
    }
    let sd = only(explicit.content, 0x30, "SignedData", 2)?;
    let f = children(sd.content, 3)?;
    let mut i = 0usize;
    let version = expect(f.get(i), 0x02, "SignedData version")?;
    if version.content != [1] {
        return Err(format!(
            "SignedData version {:?} (expected 1)",
            version.content
        ));
    }
    i += 1;
    let digest_algs = expect(f.get(i), 0x31, "SignedData digestAlgorithms")?;
    for a in children(digest_algs.content, 4)? {
        let oid = algorithm(&a, 5, "digestAlgorithm")?;
        if oid != OID_SHA256 && oid != OID_SHA256_RSA {
            return Err("a digest algorithm other than SHA-256".into());
        }
    }
    i += 1;
    let eci = expect(f.get(i), 0x30, "encapContentInfo")?;
    i += 1;
    let eci_parts = children(eci.content, 4)?;
    let ect = expect(eci_parts.first(), 0x06, "eContentType")?;
    if ect.content != OID_DATA {
        return Err("encapsulated content is not id-data".into());
    }
    let econtent = expect(
        eci_parts.get(1),
        0xa0,
        "eContent (detached signatures are not used)",
    )?;
    if eci_parts.len() != 2 {
        return Err("encapContentInfo: trailing elements".into());
    }
    let inner = children(econtent.content, 5)?;
    if inner.len() != 1 {
        return Err("eContent must hold one OCTET STRING".into());
    }
    let mut content = Vec::new();
    octets(&inner[0], 6, &mut content)?;
    let mut certificates = Vec::new();
    if let Some(c) = f.get(i).filter(|e| e.tag == 0xa0) {
        for cert in children(c.content, 4)? {
            if cert.tag != 0x30 || cert.indefinite {
                return Err("a certificate that is not a DER SEQUENCE".into());
            }
            certificates.push(cert.raw.to_vec());
        }
        i += 1;
    }
    if f.get(i).is_some_and(|e| e.tag == 0xa1) {
        i += 1; // CRLs: not used
    }
    let infos = expect(f.get(i), 0x31, "signerInfos")?;
    if f.len() != i + 1 {
        return Err("SignedData: trailing elements".into());
    }
    let infos = children(infos.content, 4)?;
    let [info] = infos.as_slice() else {
        return Err(format!("{} signers (exactly one expected)", infos.len()));
    };
    let signer = signer_info(info)?;
    Ok(SignedData {
        content,
        certificates,
        signer,
    })
}

fn signer_info(info: &Element<'_>) -> Result<Signer, String> {
    if info.tag != 0x30 {
        return Err("SignerInfo is not a SEQUENCE".into());
    }
    let f = children(info.content, 5)?;
    let v = expect(f.first(), 0x02, "SignerInfo version")?;
    if v.content != [1] {
        return Err("SignerInfo version is not 1 (issuerAndSerialNumber)".into());
    }
    let ias = expect(f.get(1), 0x30, "issuerAndSerialNumber")?;
    let ias = children(ias.content, 6)?;
    let issuer = expect(ias.first(), 0x30, "signer issuer")?;
    if issuer.indefinite {
        return Err("signer issuer is not DER".into());
    }
    let serial = expect(ias.get(1), 0x02, "signer serial")?;
    if ias.len() != 2 {
        return Err("issuerAndSerialNumber: trailing elements".into());
    }
    let da = f.get(2).ok_or("SignerInfo digestAlgorithm missing")?;
    let da = algorithm(da, 6, "SignerInfo digestAlgorithm")?;
    if da != OID_SHA256 && da != OID_SHA256_RSA {
        return Err("SignerInfo digest is not SHA-256".into());
    }
    let mut i = 3usize;
    let mut signed_attrs = None;
    let mut message_digest = None;
    if let Some(a) = f.get(i).filter(|e| e.tag == 0xa0) {
        if a.indefinite {
            return Err("signed attributes are not DER".into());
        }
        let mut seen_ct = false;
        for attr in children(a.content, 6)? {
            let parts = children(attr.content, 7)?;
            let oid = expect(parts.first(), 0x06, "attribute type")?;
            let values = expect(parts.get(1), 0x31, "attribute values")?;
            let values = children(values.content, 8)?;
            let [value] = values.as_slice() else {
                return Err("an attribute with other than one value".into());
            };
            if oid.content == OID_ATTR_CONTENT_TYPE {
                if seen_ct || value.tag != 0x06 || value.content != OID_DATA {
                    return Err("contentType attribute is not id-data (or repeated)".into());
                }
                seen_ct = true;
            } else if oid.content == OID_ATTR_MESSAGE_DIGEST {
                if message_digest.is_some() || value.tag != 0x04 {
                    return Err("messageDigest attribute malformed or repeated".into());
                }
                message_digest = Some(value.content.to_vec());
            }
        }
        if !seen_ct || message_digest.is_none() {
            return Err("signed attributes lack contentType or messageDigest".into());
        }
        let mut set = a.raw.to_vec();
        set[0] = 0x31;
        signed_attrs = Some(set);
        i += 1;
    }
    let sa = f.get(i).ok_or("SignerInfo signatureAlgorithm missing")?;
    let sa = algorithm(sa, 6, "SignerInfo signatureAlgorithm")?;
    if sa != OID_RSA && sa != OID_SHA256_RSA {
        return Err("the signature is not RSA PKCS#1 v1.5 (a DSA-signed /pkcs7 is not supported: use /rsa2048)".into());
    }
    i += 1;
    let sig = expect(f.get(i), 0x04, "signature")?;
    i += 1;
    if f.get(i).is_some_and(|e| e.tag == 0xa1) {
        i += 1;
    }
    if f.len() != i {
        return Err("SignerInfo: trailing elements".into());
    }
    Ok(Signer {
        issuer: issuer.raw.to_vec(),
        serial: serial.content.to_vec(),
        signed_attrs,
        message_digest,
        signature: sig.content.to_vec(),
    })
}

impl SignedData {
    /// Whether `cert` is the one named by the signer (issuer and serial).
    pub fn names(&self, cert: &Certificate) -> bool {
        let issuer = cert.tbs_certificate.issuer.to_der().unwrap_or_default();
        issuer == self.signer.issuer
            && cert.tbs_certificate.serial_number.as_bytes() == self.signer.serial.as_slice()
    }

    /// Check the signature with `cert`'s RSA key (2048 bits or more): over the signed
    /// attributes, whose messageDigest must be SHA-256 of the content, or, without
    /// attributes, over the content itself.
    pub fn verify_with(&self, cert: &Certificate) -> Result<(), String> {
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let signed: &[u8] = match (&self.signer.signed_attrs, &self.signer.message_digest) {
            (Some(attrs), Some(md)) => {
                let digest = sha2::Sha256::digest(&self.content);
                if md.as_slice() != digest.as_slice() {
                    return Err("messageDigest is not SHA-256 of the content".into());
                }
                attrs
            }
            _ => &self.content,
        };
        UnparsedPublicKey::new(&s::RSA_PKCS1_2048_8192_SHA256, &spki)
            .verify(signed, &self.signer.signature)
            .map_err(|_| {
                format!(
                    "the signature does not verify under the key of {}",
                    cert.tbs_certificate.subject
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_lengths_and_chunks_are_reassembled() {
        // [0] indefinite { OCTET STRING constructed indefinite { "ab", "c" } }
        let ber = [
            0xa0, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        let (e, rest) = read(&ber, 0).unwrap();
        assert!(rest.is_empty() && e.indefinite);
        let inner = children(e.content, 0).unwrap();
        let mut out = Vec::new();
        octets(&inner[0], 0, &mut out).unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn truncation_and_nesting_are_bounded() {
        assert!(read(&[0x30, 0x05, 1, 2], 0).is_err());
        assert!(read(&[0x30, 0x80, 0x04, 0x01], 0).is_err());
        assert!(read(&[0x04, 0x80, 0, 0], 0).is_err());
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 100).flatten().collect();
        assert!(read(&deep, 0).unwrap_err().contains("deeply"));
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1], 0).is_err());
    }
}

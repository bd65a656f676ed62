//! AWS Nitro Enclaves attestation documents: a COSE_Sign1 (ES384) whose payload is a CBOR map
//! carrying the enclave's PCRs, the signing certificate and its CA bundle (root first).
//!
//! Checked: the document is at most 32 KiB and a COSE_Sign1 (tagged or not) with algorithm
//! ES384 in the protected header; the payload has every mandatory field with its type and
//! size (module id, digest `SHA384`, timestamp, 1–32 PCRs of 48 bytes, certificate, CA bundle)
//! and no field twice; the bundle's first certificate is byte for byte the trusted root; each
//! further certificate is a CA signed by the previous one, the signing certificate is signed
//! by the last, all valid at the verification time; the signature verifies under the signing
//! certificate's P-384 key over the Sig_structure of the exact bytes received. COSE and CBOR
//! decoding is `coset`/`ciborium`.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use ciborium::value::Value;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable, iana};
use serde::Serialize;
use x509_cert::Certificate;

use crate::TeeError;

/// Largest document accepted, bytes.
pub const MAX_DOC: usize = 32 * 1024;
/// Longest `public_key`, `user_data` or `nonce`, bytes (the NSM's own limit).
const MAX_OPTIONAL: usize = 1024;
/// Most certificates in the CA bundle.
const MAX_BUNDLE: usize = 8;

fn malformed(m: impl Into<String>) -> TeeError {
    TeeError::Malformed(m.into())
}

/// A verified attestation document's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NitroClaims {
    /// The enclave's module id.
    pub module_id: String,
    /// When the NSM made the document, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The PCR digest algorithm (`SHA384`).
    pub digest: String,
    /// PCRs by index, hex.
    pub pcrs: BTreeMap<u8, String>,
    /// Debug mode: PCR 0, 1 and 2 are all zero (the enclave's memory is readable).
    pub debug: bool,
    /// The enclave's public key, hex, if it gave one.
    pub public_key: Option<String>,
    /// User data, hex.
    pub user_data: Option<String>,
    /// The nonce the enclave was asked to include, hex.
    pub nonce: Option<String>,
    /// Subject of the signing certificate.
    pub certificate: String,
}

/// Verifies documents against a trusted Nitro root.
#[derive(Debug, Clone)]
pub struct NitroVerifier {
    root_der: Vec<u8>,
    chains: vouch_x509::VerifiedChains,
}

fn bytes(v: &Value, what: &str, max: usize) -> Result<Vec<u8>, TeeError> {
    match v {
        Value::Bytes(b) if b.len() <= max => Ok(b.clone()),
        Value::Bytes(b) => Err(malformed(format!(
            "{what} is {} bytes (at most {max})",
            b.len()
        ))),
        _ => Err(malformed(format!("{what} is not a byte string"))),
    }
}

fn optional(v: Option<&Value>, what: &str) -> Result<Option<Vec<u8>>, TeeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bytes(v, what, MAX_OPTIONAL).map(Some),
    }
}

impl NitroVerifier {
    /// Trust `root` (DER), which must be a self-signed CA.
    pub fn new(root: &[u8]) -> Result<Self, TeeError> {
        vouch_x509::parse_self_signed(root, "Nitro root").map_err(TeeError::Chain)?;
        Ok(Self {
            root_der: root.to_vec(),
            chains: Default::default(),
        })
    }

    /// Verify `doc` (the raw COSE_Sign1 bytes) with certificates checked at `now`.
    pub fn verify(&self, doc: &[u8], now: u64) -> Result<NitroClaims, TeeError> {
        if doc.len() > MAX_DOC {
            return Err(malformed(format!("document larger than {MAX_DOC} bytes")));
        }
        let sign1 = CoseSign1::from_slice(doc)
            .or_else(|_| CoseSign1::from_tagged_slice(doc))
            .map_err(|e| malformed(format!("not a COSE_Sign1: {e}")))?;
        let alg = &sign1.protected.header.alg;
        if *alg
            != Some(coset::RegisteredLabelWithPrivate::Assigned(
                iana::Algorithm::ES384,
            ))
        {
            return Err(malformed(format!("algorithm {alg:?}, expected ES384")));
        }
        if !sign1.protected.header.crit.is_empty() {
            return Err(malformed("critical COSE headers are not understood"));
        }
        let payload = sign1
            .payload
            .as_deref()
            .ok_or_else(|| malformed("detached payload"))?;
        let map = match ciborium::from_reader::<Value, _>(payload) {
            Ok(Value::Map(m)) => m,
            Ok(_) => return Err(malformed("payload is not a CBOR map")),
            Err(e) => return Err(malformed(format!("payload CBOR: {e}"))),
        };
        let mut fields: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in map {
            let Value::Text(k) = k else {
                return Err(malformed("payload key is not text"));
            };
            if fields.insert(k.clone(), v).is_some() {
                return Err(malformed(format!("payload field {k} appears twice")));
            }
        }
        let field = |k: &str| {
            fields
                .get(k)
                .ok_or_else(|| malformed(format!("payload has no {k}")))
        };
        let module_id = match field("module_id")? {
            Value::Text(t) if !t.is_empty() && t.len() <= 256 => t.clone(),
            _ => return Err(malformed("module_id is not a non-empty text")),
        };
        let digest = match field("digest")? {
            Value::Text(t) if t == "SHA384" => t.clone(),
            other => return Err(malformed(format!("digest {other:?}, expected SHA384"))),
        };
        let timestamp_ms = match field("timestamp")? {
            Value::Integer(i) => u64::try_from(*i).map_err(|_| malformed("timestamp"))?,
            _ => return Err(malformed("timestamp is not an integer")),
        };
        let mut pcrs = BTreeMap::new();
        match field("pcrs")? {
            Value::Map(m) if !m.is_empty() && m.len() <= 32 => {
                for (k, v) in m {
                    let i = match k {
                        Value::Integer(i) => u8::try_from(*i)
                            .ok()
                            .filter(|i| *i < 32)
                            .ok_or_else(|| malformed("PCR index out of 0..32"))?,
                        _ => return Err(malformed("PCR index is not an integer")),
                    };
                    let b = bytes(v, "a PCR", 48)?;
                    if b.len() != 48 {
                        return Err(malformed(format!("PCR {i} is {} bytes, not 48", b.len())));
                    }
                    if pcrs.insert(i, hex::encode(b)).is_some() {
                        return Err(malformed(format!("PCR {i} appears twice")));
                    }
                }
            }
            _ => return Err(malformed("pcrs is not a map of 1 to 32 entries")),
        }
        let leaf_der = bytes(field("certificate")?, "certificate", 8192)?;
        let bundle: Vec<Vec<u8>> = match field("cabundle")? {
            Value::Array(a) if !a.is_empty() && a.len() <= MAX_BUNDLE => a
                .iter()
                .map(|c| bytes(c, "a cabundle certificate", 8192))
                .collect::<Result<_, _>>()?,
            _ => return Err(malformed("cabundle is not an array of 1 to 8 certificates")),
        };
        let public_key = optional(fields.get("public_key"), "public_key")?;
        let user_data = optional(fields.get("user_data"), "user_data")?;
        let nonce = optional(fields.get("nonce"), "nonce")?;

        // The chain: root (trusted, byte for byte) → intermediates → signing certificate.
        if bundle[0] != self.root_der {
            return Err(TeeError::Chain(
                "the CA bundle does not start with the trusted Nitro root".into(),
            ));
        }
        let leaf: Certificate = vouch_x509::parse(&leaf_der, "signing").map_err(TeeError::Chain)?;
        let mut ders: Vec<&[u8]> = bundle.iter().map(Vec::as_slice).collect();
        ders.push(&leaf_der);
        if !self.chains.contains(&ders, now) {
            let mut parsed = Vec::new();
            let mut issuer = vouch_x509::parse(&bundle[0], "root").map_err(TeeError::Chain)?;
            vouch_x509::check_validity(&issuer, now, "Nitro root").map_err(TeeError::Chain)?;
            parsed.push(issuer.clone());
            for der in &bundle[1..] {
                let c = vouch_x509::parse(der, "cabundle").map_err(TeeError::Chain)?;
                vouch_x509::verify_signed_by(der, &c, &issuer).map_err(TeeError::Chain)?;
                vouch_x509::check_validity(&c, now, "intermediate").map_err(TeeError::Chain)?;
                if !vouch_x509::is_ca(&c) {
                    return Err(TeeError::Chain(format!(
                        "{} in the CA bundle is not a CA",
                        c.tbs_certificate.subject
                    )));
                }
                parsed.push(c.clone());
                issuer = c;
            }
            vouch_x509::verify_signed_by(&leaf_der, &leaf, &issuer).map_err(TeeError::Chain)?;
            vouch_x509::check_validity(&leaf, now, "signing certificate")
                .map_err(TeeError::Chain)?;
            parsed.push(leaf.clone());
            self.chains
                .insert(&ders, &parsed.iter().collect::<Vec<_>>());
        }

        let point = leaf
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| TeeError::Chain("signing key bit string".into()))?;
        sign1.verify_signature(b"", |sig, data| {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
                .verify(data, sig)
                .map_err(|_| {
                    TeeError::Signature(
                        "the document's signature does not verify under its certificate".into(),
                    )
                })
        })?;
        let zero = "0".repeat(96);
        let debug = (0..3).all(|i| pcrs.get(&i) == Some(&zero));
        Ok(NitroClaims {
            module_id,
            timestamp_ms,
            digest,
            pcrs,
            debug,
            public_key: public_key.map(hex::encode),
            user_data: user_data.map(hex::encode),
            nonce: nonce.map(hex::encode),
            certificate: leaf.tbs_certificate.subject.to_string(),
        })
    }
}

//! `aws_iid`: the EC2 instance identity document, signed by AWS, checked against AWS's
//! published per-region certificates kept in a local directory.
//!
//! The agent reads the document and one of its signatures from the instance metadata service
//! and sends them as [`AwsIidData`] (JSON). Three signature forms are accepted:
//!
//! - `rsa2048`: the body of `/latest/dynamic/instance-identity/rsa2048`, a base64 PKCS#7
//!   SignedData (RSA-2048, SHA-256, BER with indefinite lengths) that *contains* the document;
//!   the signer is found among the region's certificates by issuer and serial number. The
//!   recommended form.
//! - `pkcs7`: the body of `/latest/dynamic/instance-identity/pkcs7`, the same structure; AWS
//!   signs it with DSA, which this verifier does not implement, so it is refused unless the
//!   signer is RSA.
//! - `signature`: the body of `/latest/dynamic/instance-identity/signature`, a base64
//!   RSA-SHA256 signature over the exact `document` bytes, checked with the region's `rsa`
//!   certificate (a 1024-bit key: AWS's choice, accepted for this form only).
//!
//! The signed bytes must be exactly the document the selectors are read from (for the PKCS#7
//! forms the document is the signed content; a `document` sent beside it must be identical).
//!
//! Certificates: `certificates_dir` holds PEM files named after the region they serve,
//! `<region>.pem`, directly or one directory down (`rsa/eu-west-1.pem`,
//! `rsa2048/eu-west-1.pem` — the layout AWS's documentation pages are commonly scraped into).
//! A document is checked only with the certificates of the region it names. The directory is
//! read when the attestor is built; nothing is fetched while verifying.
//!
//! An identity document does not expire and carries no nonce: whoever read it once (any
//! process on the instance, a log) can replay it. So the node is trusted on first use, as
//! SPIRE does: [`NodeIdentity::reattestable`] is false, and the verifier refuses the same
//! instance with another agent key until an admin opens a re-enrolment.

use crate::cloud::{self, allowed, ident, text};
use crate::{MAX_DATA, NodeAttestError, NodeAttestation, NodeAttestor, NodeIdentity, pkcs7};
use aws_lc_rs::signature::{self as s, UnparsedPublicKey};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use x509_cert::Certificate;
use x509_cert::der::Encode as _;

const METHOD: &str = "aws_iid";

/// The attestor's configuration (`[[node_attestors]]` with `method = "aws_iid"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsIidConfig {
    /// Directory of AWS's public certificates, `<region>.pem` (or `<kind>/<region>.pem`).
    pub certificates_dir: PathBuf,
    /// AWS account ids whose instances may attest; empty: any account.
    #[serde(default)]
    pub allowed_accounts: Vec<String>,
    /// How far in the future a document's `pendingTime` may be, seconds.
    #[serde(default = "cloud::default_skew")]
    pub max_clock_skew_secs: u64,
}

/// What an agent sends for `aws_iid` (JSON): the document and one signature form.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsIidData {
    /// `/latest/dynamic/instance-identity/document`, byte for byte. Required with
    /// `signature`; optional with the PKCS#7 forms (which contain it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// `/latest/dynamic/instance-identity/rsa2048` (base64 PKCS#7, PEM armour optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsa2048: Option<String>,
    /// `/latest/dynamic/instance-identity/pkcs7` (base64 PKCS#7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs7: Option<String>,
    /// `/latest/dynamic/instance-identity/signature` (base64 RSA-SHA256 over `document`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The document's fields that are used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    account_id: String,
    region: String,
    instance_id: String,
    image_id: Option<String>,
    instance_type: Option<String>,
    availability_zone: Option<String>,
    pending_time: Option<String>,
    architecture: Option<String>,
}

/// Verifies EC2 instance identity documents.
#[derive(Debug)]
pub struct AwsIidAttestor {
    config: AwsIidConfig,
    /// Region → its certificates (parsed, with their DER).
    certs: BTreeMap<String, Vec<(Certificate, Vec<u8>)>>,
}

impl AwsIidAttestor {
    /// Build from configuration, reading the certificate directory.
    pub fn from_config(config: AwsIidConfig) -> Result<Self, NodeAttestError> {
        let files = cloud::read_dir_files(METHOD, &config.certificates_dir, &[".pem", ".crt"])?;
        let mut by_region: Vec<(String, Vec<u8>)> = Vec::new();
        for (path, bytes) in files {
            let region = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            for der in cloud::pem_file_certs(METHOD, &path, &bytes)? {
                by_region.push((region.clone(), der));
            }
        }
        Self::with_certificates(config, by_region)
    }

    /// Build from configuration and certificates already read: `(region, DER)` pairs.
    pub fn with_certificates(
        config: AwsIidConfig,
        certificates: Vec<(String, Vec<u8>)>,
    ) -> Result<Self, NodeAttestError> {
        let mut certs: BTreeMap<String, Vec<(Certificate, Vec<u8>)>> = BTreeMap::new();
        for (region, der) in certificates {
            ident(METHOD, "certificate region (file name)", &region).map_err(|_| {
                NodeAttestError::Config {
                    method: METHOD,
                    why: format!("{region:?} is not a region name"),
                }
            })?;
            let cert = vouch_x509::parse(&der, "AWS").map_err(|why| NodeAttestError::Config {
                method: METHOD,
                why: format!("{region}: {why}"),
            })?;
            certs.entry(region).or_default().push((cert, der));
        }
        if certs.is_empty() {
            return Err(NodeAttestError::Config {
                method: METHOD,
                why: "no AWS certificates configured".into(),
            });
        }
        for a in &config.allowed_accounts {
            ident(METHOD, "allowed account", a).map_err(|e| NodeAttestError::Config {
                method: METHOD,
                why: e.to_string(),
            })?;
        }
        Ok(Self { config, certs })
    }

    /// The regions certificates were configured for.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.certs.keys().map(String::as_str)
    }

    fn region_certs(&self, region: &str) -> Result<&[(Certificate, Vec<u8>)], NodeAttestError> {
        self.certs
            .get(region)
            .map(Vec::as_slice)
            .ok_or_else(|| NodeAttestError::Signature {
                method: METHOD,
                why: format!("no certificate configured for region {region:?}"),
            })
    }
}

fn malformed(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Malformed {
        method: METHOD,
        why: why.into(),
    }
}

fn sig_err(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Signature {
        method: METHOD,
        why: why.into(),
    }
}

/// Base64 with line breaks and optional PEM armour, as IMDS and users hand it over.
fn b64(field: &str, v: &str) -> Result<Vec<u8>, NodeAttestError> {
    let body: String = v
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| malformed(format!("{field} is not base64: {e}")))
}

fn parse_document(bytes: &[u8]) -> Result<Document, NodeAttestError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("identity document: {e}")))
}

impl NodeAttestor for AwsIidAttestor {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn attest(&self, att: &NodeAttestation<'_>, now: u64) -> Result<NodeIdentity, NodeAttestError> {
        if att.data.len() > MAX_DATA {
            return Err(malformed(format!("more than {MAX_DATA} bytes")));
        }
        let data: AwsIidData = serde_json::from_slice(att.data)
            .map_err(|e| malformed(format!("attestation data: {e}")))?;
        let forms = [&data.rsa2048, &data.pkcs7, &data.signature]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if forms != 1 {
            return Err(malformed(
                "exactly one of rsa2048, pkcs7 and signature is required",
            ));
        }
        // The document, parsed from exactly the bytes that were signed.
        let doc = if let Some(p7) = data.rsa2048.as_ref().or(data.pkcs7.as_ref()) {
            let der = b64("PKCS#7", p7)?;
            let sd = pkcs7::parse(&der).map_err(|e| malformed(format!("PKCS#7: {e}")))?;
            if let Some(d) = &data.document
                && d.as_bytes() != sd.content.as_slice()
            {
                return Err(sig_err("the document is not the content the PKCS#7 signs"));
            }
            let doc = parse_document(&sd.content)?;
            let certs = self.region_certs(&doc.region)?;
            let (cert, _) = certs.iter().find(|(c, _)| sd.names(c)).ok_or_else(|| {
                sig_err(format!(
                    "the PKCS#7 signer is not among the certificates of region {}",
                    doc.region
                ))
            })?;
            vouch_x509::check_validity(cert, now, "AWS certificate").map_err(sig_err)?;
            sd.verify_with(cert).map_err(sig_err)?;
            doc
        } else {
            let (Some(doc_text), Some(sig)) = (&data.document, &data.signature) else {
                return Err(malformed("signature needs the document"));
            };
            let sig = b64("signature", sig)?;
            let doc = parse_document(doc_text.as_bytes())?;
            let certs = self.region_certs(&doc.region)?;
            let mut why = String::from("no certificate of the region verifies the signature");
            let mut ok = false;
            for (cert, _) in certs {
                if let Err(e) = vouch_x509::check_validity(cert, now, "AWS certificate") {
                    why = e;
                    continue;
                }
                let Ok(spki) = cert.tbs_certificate.subject_public_key_info.to_der() else {
                    continue;
                };
                if UnparsedPublicKey::new(&s::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, &spki)
                    .verify(doc_text.as_bytes(), &sig)
                    .is_ok()
                {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(sig_err(why));
            }
            doc
        };
        identity(&self.config, &doc, now)
    }
}

fn identity(cfg: &AwsIidConfig, doc: &Document, now: u64) -> Result<NodeIdentity, NodeAttestError> {
    let account = ident(METHOD, "accountId", &doc.account_id)?;
    let region = ident(METHOD, "region", &doc.region)?;
    let instance = ident(METHOD, "instanceId", &doc.instance_id)?;
    if !allowed(&cfg.allowed_accounts, account) {
        return Err(NodeAttestError::Refused {
            method: METHOD,
            why: format!("account {account} is not allowed"),
        });
    }
    if let Some(p) = &doc.pending_time {
        let t = cloud::parse_rfc3339_utc(p).ok_or_else(|| malformed("pendingTime"))?;
        if t > now.saturating_add(cfg.max_clock_skew_secs) {
            return Err(NodeAttestError::Refused {
                method: METHOD,
                why: format!("the instance was launched ({p}) after the verification time"),
            });
        }
    }
    let mut selectors = vec![
        format!("{METHOD}:account:{account}"),
        format!("{METHOD}:region:{region}"),
        format!("{METHOD}:instance_id:{instance}"),
    ];
    for (name, v) in [
        ("image_id", &doc.image_id),
        ("instance_type", &doc.instance_type),
        ("az", &doc.availability_zone),
        ("architecture", &doc.architecture),
    ] {
        if let Some(v) = v {
            selectors.push(format!("{METHOD}:{name}:{}", text(METHOD, name, v)?));
        }
    }
    Ok(NodeIdentity {
        key: format!("{METHOD}:{account}:{region}:{instance}"),
        selectors,
        hostname: None,
        reattestable: false,
    })
}

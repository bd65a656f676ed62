//! `azure_imds`: the Azure Instance Metadata Service attested data document, a PKCS#7
//! SignedData whose content is JSON (`vmId`, `subscriptionId`, `sku`, `nonce`, `plan`,
//! `timeStamp.createdOn/expiresOn`), signed by a Microsoft certificate for
//! `*.metadata.azure.com` (or the sovereign clouds' domains) that chains to a root kept
//! locally.
//!
//! The agent asks IMDS, from inside the VM:
//!
//! ```text
//! GET http://169.254.169.254/metadata/attested/document?api-version=2020-09-01&nonce=<n>
//!     (Metadata: true)
//! ```
//!
//! and sends the response body (`{"encoding":"pkcs7","signature":"<base64>"}`) unchanged.
//!
//! **Nonce.** IMDS takes a nonce of at most ten digits, so the verifier's nonce cannot go in
//! as is: `<n>` is [`imds_nonce`]`(nonce)`, ten decimal digits derived from SHA-256 of the
//! verifier's nonce. With `require_nonce` (the default) the document's `nonce` must be that
//! value, so a document answers one attestation only. Ten digits are 33 bits: a replayed
//! document would have to have been fetched for the same derived value, and it expires
//! (`expiresOn`, six hours after `createdOn`) — the verifier's own nonce still covers the
//! agent key's signature. IMDS caches documents: an agent that asks again with the same
//! nonce may get the cached one, which is fine. Without `require_nonce` a document is good
//! until it expires and the node is not re-attestable.
//!
//! **Certificates.** `certificates_dir` holds PEM files: self-signed ones are the trust
//! anchors (DigiCert Global Root G2, ...), others are intermediates (Microsoft Azure RSA TLS
//! Issuing CA 03, ...) used only to build the chain from the signing certificate (which the
//! document carries) to an anchor. IMDS documents carry only the signing certificate, so the
//! intermediates Microsoft currently issues from must be in the directory — kept current
//! by the operator (see docs/SECURITY.md). Nothing is fetched while verifying (no AIA).

use crate::cloud::{self, allowed, ident, text};
use crate::{MAX_DATA, NodeAttestError, NodeAttestation, NodeAttestor, NodeIdentity, pkcs7};
use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;
use std::path::PathBuf;
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

const METHOD: &str = "azure_imds";

/// Longest chain followed from the signing certificate to an anchor.
const MAX_CHAIN: usize = 5;

/// The signer domains of Azure's public and sovereign clouds.
pub const DEFAULT_SIGNER_DOMAINS: [&str; 4] = [
    "metadata.azure.com",
    "metadata.azure.us",
    "metadata.azure.cn",
    "metadata.microsoftazure.de",
];

fn default_domains() -> Vec<String> {
    DEFAULT_SIGNER_DOMAINS
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// The attestor's configuration (`method = "azure_imds"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AzureImdsConfig {
    /// Directory of trusted roots (self-signed) and Microsoft intermediates, PEM.
    pub certificates_dir: PathBuf,
    /// Subscription ids whose VMs may attest; empty: any subscription.
    #[serde(default)]
    pub allowed_subscriptions: Vec<String>,
    /// Require the document's nonce to be [`imds_nonce`] of the attestation's nonce;
    /// default true.
    #[serde(default = "cloud::yes")]
    pub require_nonce: bool,
    /// DNS names the signing certificate may be for (itself or a subdomain).
    #[serde(default = "default_domains")]
    pub signer_domains: Vec<String>,
    /// Tolerance for `createdOn`/`expiresOn`, seconds.
    #[serde(default = "cloud::default_skew")]
    pub max_clock_skew_secs: u64,
}

/// The `nonce` an agent passes to IMDS for the verifier's nonce `nonce`: ten decimal digits,
/// the first eight bytes of SHA-256(`"vouch azure_imds nonce " || nonce`) as a big-endian
/// integer modulo 10¹⁰, zero-padded.
pub fn imds_nonce(nonce: &str) -> String {
    let h = sha2::Sha256::digest(format!("vouch azure_imds nonce {nonce}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    format!("{:010}", u64::from_be_bytes(b) % 10_000_000_000)
}

/// The IMDS response.
#[derive(Debug, Deserialize)]
struct Response {
    encoding: String,
    signature: String,
}

/// The signed document's fields that are used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    nonce: Option<String>,
    vm_id: String,
    subscription_id: Option<String>,
    sku: Option<String>,
    license_type: Option<String>,
    plan: Option<Plan>,
    time_stamp: TimeStamp,
}

#[derive(Debug, Deserialize)]
struct Plan {
    name: Option<String>,
    product: Option<String>,
    publisher: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeStamp {
    created_on: String,
    expires_on: String,
}

/// Verifies Azure IMDS attested documents.
#[derive(Debug)]
pub struct AzureImdsAttestor {
    config: AzureImdsConfig,
    anchors: Vec<(Certificate, Vec<u8>)>,
    intermediates: Vec<(Certificate, Vec<u8>)>,
}

fn cfg_err(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Config {
        method: METHOD,
        why: why.into(),
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

fn refused(why: impl Into<String>) -> NodeAttestError {
    NodeAttestError::Refused {
        method: METHOD,
        why: why.into(),
    }
}

fn self_signed(c: &Certificate, der: &[u8]) -> bool {
    c.tbs_certificate.issuer == c.tbs_certificate.subject
        && vouch_x509::verify_signed_by(der, c, c).is_ok()
}

/// RFC 5280 §4.1.1.2: a certificate's signatureAlgorithm (outside the signed part) must be
/// the signature field of its TBSCertificate, parameters included; otherwise the unsigned
/// copy could be changed without the signature noticing.
fn outer_algorithm_matches(c: &Certificate) -> Result<(), NodeAttestError> {
    if c.signature_algorithm != c.tbs_certificate.signature {
        return Err(sig_err(format!(
            "{}: signatureAlgorithm differs from the signed one",
            c.tbs_certificate.subject
        )));
    }
    Ok(())
}

impl AzureImdsAttestor {
    /// Build from configuration, reading the certificate directory.
    pub fn from_config(config: AzureImdsConfig) -> Result<Self, NodeAttestError> {
        let files = cloud::read_dir_files(METHOD, &config.certificates_dir, &[".pem", ".crt"])?;
        let mut ders = Vec::new();
        for (path, bytes) in files {
            ders.extend(cloud::pem_file_certs(METHOD, &path, &bytes)?);
        }
        Self::with_certificates(config, ders)
    }

    /// Build from configuration and certificates already read (DER): the self-signed ones
    /// are anchors, the others intermediates.
    pub fn with_certificates(
        config: AzureImdsConfig,
        certificates: Vec<Vec<u8>>,
    ) -> Result<Self, NodeAttestError> {
        let (mut anchors, mut intermediates) = (Vec::new(), Vec::new());
        for der in certificates {
            let c = vouch_x509::parse(&der, "Azure").map_err(cfg_err)?;
            // A root's self-signature may use an algorithm the chain check does not (the
            // Baltimore root is SHA-1): a certificate naming itself as issuer is an anchor.
            if c.tbs_certificate.issuer == c.tbs_certificate.subject || self_signed(&c, &der) {
                anchors.push((c, der));
            } else {
                intermediates.push((c, der));
            }
        }
        if anchors.is_empty() {
            return Err(cfg_err(
                "no trusted root (self-signed certificate) configured",
            ));
        }
        if config.signer_domains.is_empty() {
            return Err(cfg_err("signer_domains is empty"));
        }
        for s in &config.allowed_subscriptions {
            ident(METHOD, "allowed subscription", s).map_err(|e| cfg_err(e.to_string()))?;
        }
        Ok(Self {
            config,
            anchors,
            intermediates,
        })
    }

    /// Check that `leaf` chains to an anchor at `now` through configured intermediates or
    /// the (untrusted) certificates the document carried.
    fn chain(
        &self,
        leaf: &Certificate,
        leaf_der: &[u8],
        carried: &[(Certificate, Vec<u8>)],
        now: u64,
    ) -> Result<(), NodeAttestError> {
        vouch_x509::check_validity(leaf, now, "signing certificate").map_err(sig_err)?;
        outer_algorithm_matches(leaf)?;
        let (mut cur, mut cur_der) = (leaf.clone(), leaf_der.to_vec());
        for _ in 0..MAX_CHAIN {
            if self.anchors.iter().any(|(_, d)| *d == cur_der) {
                return Ok(());
            }
            for (a, _) in &self.anchors {
                if vouch_x509::verify_signed_by(&cur_der, &cur, a).is_ok() {
                    vouch_x509::check_validity(a, now, "root").map_err(sig_err)?;
                    return Ok(());
                }
            }
            let next = self
                .intermediates
                .iter()
                .chain(carried.iter())
                .find(|(i, _)| {
                    vouch_x509::is_ca(i) && vouch_x509::verify_signed_by(&cur_der, &cur, i).is_ok()
                })
                .ok_or_else(|| {
                    sig_err(format!(
                        "no configured certificate issued {} (issuer {})",
                        cur.tbs_certificate.subject, cur.tbs_certificate.issuer
                    ))
                })?;
            vouch_x509::check_validity(&next.0, now, "intermediate").map_err(sig_err)?;
            outer_algorithm_matches(&next.0)?;
            (cur, cur_der) = (next.0.clone(), next.1.clone());
        }
        Err(sig_err("certificate chain too long"))
    }

    /// Whether the signing certificate is for one of the signer domains (its DNS SANs, or
    /// its common name when it has none).
    fn signer_name_ok(&self, c: &Certificate) -> bool {
        use x509_cert::ext::pkix::SubjectAltName;
        use x509_cert::ext::pkix::name::GeneralName;
        let mut names: Vec<String> = Vec::new();
        if let Some(v) = vouch_x509::extension(c, "2.5.29.17")
            && let Ok(san) = SubjectAltName::from_der(v)
        {
            for g in san.0 {
                if let GeneralName::DnsName(d) = g {
                    names.push(d.to_string());
                }
            }
        }
        if names.is_empty() {
            for rdn in c.tbs_certificate.subject.0.iter() {
                for atv in rdn.0.iter() {
                    if atv.oid.to_string() == "2.5.4.3"
                        && let Ok(s) = atv
                            .value
                            .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                    {
                        names.push(s.to_string());
                    } else if atv.oid.to_string() == "2.5.4.3"
                        && let Ok(s) = atv
                            .value
                            .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                    {
                        names.push(s.to_string());
                    }
                }
            }
        }
        names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            self.config.signer_domains.iter().any(|d| {
                let d = d.to_ascii_lowercase();
                n == d || n.strip_suffix(&d).is_some_and(|p| p.ends_with('.'))
            })
        })
    }
}

impl NodeAttestor for AzureImdsAttestor {
    fn method(&self) -> &'static str {
        METHOD
    }

    fn attest(&self, att: &NodeAttestation<'_>, now: u64) -> Result<NodeIdentity, NodeAttestError> {
        if att.data.len() > MAX_DATA {
            return Err(malformed(format!("more than {MAX_DATA} bytes")));
        }
        let resp: Response = serde_json::from_slice(att.data)
            .map_err(|e| malformed(format!("IMDS response: {e}")))?;
        if resp.encoding != "pkcs7" {
            return Err(malformed(format!(
                "encoding {:?}, not pkcs7",
                resp.encoding
            )));
        }
        let body: String = resp.signature.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| malformed(format!("signature is not base64: {e}")))?;
        let sd = pkcs7::parse(&der).map_err(|e| malformed(format!("PKCS#7: {e}")))?;
        let carried: Vec<(Certificate, Vec<u8>)> = sd
            .certificates
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok().map(|c| (c, d.clone())))
            .collect();
        let (signer, signer_der) = carried
            .iter()
            .find(|(c, _)| sd.names(c))
            .ok_or_else(|| sig_err("the document does not carry its signing certificate"))?;
        if !self.signer_name_ok(signer) {
            return Err(sig_err(format!(
                "signing certificate {} is not for {:?}",
                signer.tbs_certificate.subject, self.config.signer_domains
            )));
        }
        self.chain(signer, signer_der, &carried, now)?;
        sd.verify_with(signer).map_err(sig_err)?;

        let doc: Document = serde_json::from_slice(&sd.content)
            .map_err(|e| malformed(format!("attested document: {e}")))?;
        let cfg = &self.config;
        let created = cloud::parse_azure_time(&doc.time_stamp.created_on)
            .ok_or_else(|| malformed("timeStamp.createdOn"))?;
        let expires = cloud::parse_azure_time(&doc.time_stamp.expires_on)
            .ok_or_else(|| malformed("timeStamp.expiresOn"))?;
        let skew = cfg.max_clock_skew_secs;
        if expires.saturating_add(skew) < now {
            return Err(refused(format!(
                "the document expired at {} (now {now})",
                doc.time_stamp.expires_on
            )));
        }
        if created > now.saturating_add(skew) {
            return Err(refused(format!(
                "the document was created after the verification time ({})",
                doc.time_stamp.created_on
            )));
        }
        if cfg.require_nonce {
            let want = imds_nonce(att.nonce);
            if doc.nonce.as_deref() != Some(want.as_str()) {
                return Err(refused(format!(
                    "document nonce {:?}, expected {want} (derived from the attestation nonce)",
                    doc.nonce
                )));
            }
        }
        let vm = ident(METHOD, "vmId", &doc.vm_id)?;
        let sub = ident(
            METHOD,
            "subscriptionId",
            doc.subscription_id
                .as_deref()
                .ok_or_else(|| malformed("no subscriptionId (api-version 2019-04-30 or later)"))?,
        )?;
        if !allowed(&cfg.allowed_subscriptions, sub) {
            return Err(refused(format!("subscription {sub} is not allowed")));
        }
        let mut selectors = vec![
            format!("{METHOD}:subscription:{sub}"),
            format!("{METHOD}:vm_id:{vm}"),
        ];
        let plan = doc.plan.as_ref();
        for (name, v) in [
            ("sku", doc.sku.as_deref()),
            ("license_type", doc.license_type.as_deref()),
            ("plan_name", plan.and_then(|p| p.name.as_deref())),
            ("plan_product", plan.and_then(|p| p.product.as_deref())),
            ("plan_publisher", plan.and_then(|p| p.publisher.as_deref())),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                selectors.push(format!("{METHOD}:{name}:{}", text(METHOD, name, v)?));
            }
        }
        Ok(NodeIdentity {
            key: format!("{METHOD}:{sub}:{vm}"),
            selectors,
            hostname: None,
            reattestable: cfg.require_nonce,
        })
    }
}

//! TEE evidence in the formats tools write, decoded into the report (or quote) and the
//! certificates a verifier takes, and recognised by what it is when it is not what was asked.
//!
//! Accepted encodings: raw bytes; base64 (standard or URL-safe, padded or not); hex text; the
//! configfs-tsm report as JSON (`outblob`, `auxblob`, `provider`: URL-safe base64, the form
//! Veraison and the Linux TSM tooling exchange), whose `auxblob` is the SEV-SNP certificate
//! table; a JSON object holding the report or quote as base64 under `quote` or `report` (at
//! the top, or under `tdx`, `sgx`, `snp` or `sev-snp`); and for SEV-SNP the extended report
//! as tools write it, the report followed by the certificate table.
//!
//! Anything else is refused with what it looks like: an Azure HCL report, a TDX quote given
//! as an SEV-SNP report, a PEM certificate, a report of the wrong size. All parsing here is
//! bounded ([`MAX_INPUT`]) and never panics (`fuzz/fuzz_targets/tee_input.rs`).
//!
//! Azure confidential VM evidence (`az-snp-vtpm`, `az-tdx-vtpm`) is Trustee's JSON, passed on
//! whole to [`crate::azure::Evidence::parse`].

use base64::Engine as _;
use serde_json::Value;

use crate::{TeeError, TeeKind, snp};

/// The encoding name of Azure vTPM evidence (Trustee's JSON, kept whole).
const AZURE_JSON: &str = "azure vtpm json";

/// Largest evidence input accepted, in any encoding.
pub const MAX_INPUT: usize = 256 * 1024;

/// Evidence decoded from one of the formats above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The report, quote or document, as the TEE produced it.
    pub report: Vec<u8>,
    /// Certificates that came with it (SEV-SNP: the VEK and ASK/ASVK from a certificate
    /// table, DER), in the order [`crate::TeeRoots::verify`] takes them.
    pub certs: Vec<Vec<u8>>,
    /// How it was encoded (`raw`, `base64`, `base64url`, `hex`, `configfs-tsm json`, `json`,
    /// `extended report`, `azure vtpm json`).
    pub encoding: &'static str,
}

/// What a binary blob looks like, from its first bytes and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looks {
    /// An AMD SEV-SNP attestation report (1184 bytes or more) of this version.
    SnpReport {
        /// The report version (2–5).
        version: u32,
    },
    /// An Intel DCAP quote.
    DcapQuote {
        /// Quote version (3–5).
        version: u16,
        /// A TDX quote (TEE type 0x81); otherwise SGX.
        tdx: bool,
    },
    /// An Azure confidential VM's HCL report (`HCLA`), holding an SEV-SNP report or a TD
    /// report.
    AzureHcl {
        /// The hardware report inside is a TDX TD report; otherwise SEV-SNP.
        tdx: bool,
    },
    /// An SEV-SNP certificate table (a known GUID first).
    CertTable,
    /// A COSE_Sign1 (CBOR), as AWS Nitro attestation documents are.
    Cose,
    /// A DER SEQUENCE (a certificate, most likely).
    Der,
    /// None of the above.
    Unknown,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Offset of the IGVM request data's report type in an HCL report (32-byte header, then the
/// hardware report area of 1184 bytes, then data size, version and report type).
const HCL_REPORT_TYPE: usize = 32 + snp::REPORT_LEN + 8;

/// What `b` looks like.
pub fn identify(b: &[u8]) -> Looks {
    if b.starts_with(b"HCLA") {
        return Looks::AzureHcl {
            tdx: u32_at(b, HCL_REPORT_TYPE) == Some(4),
        };
    }
    if let (Some(version), Some(key), Some(tee)) = (u16_at(b, 0), u16_at(b, 2), u32_at(b, 4))
        && (3..=5).contains(&version)
        && (key == 2 || key == 3)
        && (tee == 0 || tee == 0x81)
        && b.len() >= 48 + 384
    {
        return Looks::DcapQuote {
            version,
            tdx: tee == 0x81,
        };
    }
    if b.len() >= snp::REPORT_LEN
        && let (Some(version), Some(1)) = (u32_at(b, 0), u32_at(b, 0x34))
        && (2..=5).contains(&version)
    {
        return Looks::SnpReport { version };
    }
    if b.len() >= 24 && snp::cert_guid(&b[..16]).is_some() {
        return Looks::CertTable;
    }
    match b.first() {
        Some(0x84 | 0xD2) => Looks::Cose,
        Some(0x30) if b.get(1).is_some_and(|l| *l >= 0x80) => Looks::Der,
        _ => Looks::Unknown,
    }
}

impl Looks {
    /// A phrase naming it, for errors.
    pub fn describe(&self) -> String {
        match self {
            Self::SnpReport { version } => format!("an SEV-SNP report (version {version})"),
            Self::DcapQuote { version, tdx } => format!(
                "{} quote (version {version})",
                if *tdx { "a TDX" } else { "an SGX" }
            ),
            Self::AzureHcl { tdx } => format!(
                "an Azure HCL report ({} inside)",
                if *tdx {
                    "a TDX TD report"
                } else {
                    "an SEV-SNP report"
                }
            ),
            Self::CertTable => "an SEV-SNP certificate table".into(),
            Self::Cose => "a COSE_Sign1 document (CBOR)".into(),
            Self::Der => "a DER structure (a certificate?)".into(),
            Self::Unknown => "nothing Vouch recognises".into(),
        }
    }

    /// The kind to ask for to verify it, when there is one.
    fn kind_hint(&self) -> Option<&'static str> {
        match self {
            Self::SnpReport { .. } => Some("sev-snp"),
            Self::DcapQuote { tdx: true, .. } => Some("tdx"),
            Self::DcapQuote { tdx: false, .. } => Some("sgx"),
            Self::AzureHcl { tdx: false } => Some("az-snp-vtpm"),
            Self::AzureHcl { tdx: true } => Some("az-tdx-vtpm"),
            Self::Cose => Some("nitro"),
            _ => None,
        }
    }
}

fn malformed(m: impl Into<String>) -> TeeError {
    TeeError::Malformed(m.into())
}

/// Base64 in either alphabet, padded or not, line breaks ignored (spaces inside a line are
/// not base64: words are not taken for it).
pub fn base64_any(text: &str) -> Option<(Vec<u8>, &'static str)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if text.trim().contains([' ', '\t']) {
        return None;
    }
    let t: String = text.split_ascii_whitespace().collect();
    if t.is_empty() {
        return None;
    }
    if t.contains(['-', '_']) {
        URL_SAFE
            .decode(&t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(&t))
            .ok()
            .map(|b| (b, "base64url"))
    } else {
        STANDARD
            .decode(&t)
            .or_else(|_| STANDARD_NO_PAD.decode(&t))
            .ok()
            .map(|b| (b, "base64"))
    }
}

fn hex_text(text: &str) -> Option<Vec<u8>> {
    let t: String = text.split_ascii_whitespace().collect();
    let t = t.strip_prefix("0x").unwrap_or(&t);
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    hex::decode(t).ok()
}

/// The blob of a JSON field: base64 in either alphabet.
fn json_blob(v: &Value, field: &str) -> Result<Option<Vec<u8>>, TeeError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(Vec::new())),
        Some(Value::String(s)) => base64_any(s)
            .map(|(b, _)| Some(b))
            .ok_or_else(|| malformed(format!("JSON field {field:?} is not base64"))),
        Some(_) => Err(malformed(format!("JSON field {field:?} is not a string"))),
    }
}

/// The certificates of an SEV-SNP certificate table, DER, VEK first (see [`snp::vek_chain`]).
fn table_certs(blob: &[u8]) -> Result<Vec<Vec<u8>>, TeeError> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    snp::vek_chain_der(&snp::cert_table(blob)?)
}

/// Decode JSON evidence: configfs-tsm, or a report/quote field.
fn json(kind: TeeKind, text: &str) -> Result<Decoded, TeeError> {
    let v: Value = serde_json::from_str(text).map_err(|e| malformed(format!("JSON: {e}")))?;
    if !v.is_object() {
        return Err(malformed("JSON evidence that is not an object"));
    }
    if v.get("outblob").is_some() {
        let report = json_blob(&v, "outblob")?.unwrap_or_default();
        let provider = v.get("provider").and_then(Value::as_str).map(str::trim);
        let want = match kind {
            TeeKind::SevSnp => Some("sev_guest"),
            TeeKind::Tdx => Some("tdx_guest"),
            _ => None,
        };
        if let (Some(p), Some(w)) = (provider, want)
            && p != w
        {
            return Err(malformed(format!(
                "a configfs-tsm report from provider {p:?}, given as --kind {}",
                kind.as_str()
            )));
        }
        let certs = table_certs(&json_blob(&v, "auxblob")?.unwrap_or_default())?;
        return Ok(Decoded {
            report,
            certs,
            encoding: "configfs-tsm json",
        });
    }
    let azure = v.get("hcl_report").is_some() || v.get("tpm_quote").is_some();
    let azure_v0 = v.get("report").is_some_and(Value::is_array) && v.get("quote").is_some();
    if matches!(kind, TeeKind::AzSnpVtpm | TeeKind::AzTdxVtpm) {
        if azure || azure_v0 {
            // Parsed and checked by azure::Evidence, as the whole JSON.
            return Ok(Decoded {
                report: text.as_bytes().to_vec(),
                certs: Vec::new(),
                encoding: AZURE_JSON,
            });
        }
        return Err(malformed(
            "JSON that is not Azure vTPM evidence (hcl_report and tpm_quote, as Trustee's \
             az-snp-vtpm and az-tdx-vtpm attesters write it)",
        ));
    }
    if azure || azure_v0 {
        let tdx = v.get("td_quote").is_some();
        return Err(malformed(format!(
            "Trustee's Azure vTPM evidence (HCL report and vTPM quote): use --kind {}",
            if tdx { "az-tdx-vtpm" } else { "az-snp-vtpm" }
        )));
    }
    let inner = ["tdx", "sgx", "snp", "sev-snp"]
        .iter()
        .find_map(|k| v.get(*k).filter(|x| x.is_object()))
        .unwrap_or(&v);
    for field in ["quote", "report"] {
        if let Some(report) = json_blob(inner, field)? {
            return Ok(Decoded {
                report,
                certs: Vec::new(),
                encoding: "json",
            });
        }
    }
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).take(8).collect())
        .unwrap_or_default();
    Err(malformed(format!(
        "JSON with fields {keys:?}: neither a configfs-tsm report (outblob) nor a quote or report"
    )))
}

/// Undo the text encodings: the bytes inside, the certificates that came along, and how it
/// was encoded.
fn unwrap(kind: TeeKind, input: &[u8]) -> Result<Decoded, TeeError> {
    let raw = |b: &[u8]| Decoded {
        report: b.to_vec(),
        certs: Vec::new(),
        encoding: "raw",
    };
    if identify(input) != Looks::Unknown {
        return Ok(raw(input));
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(raw(input));
    };
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if t.starts_with("-----BEGIN") {
        return Err(malformed(
            "PEM text (a certificate?), not a report: give certificates with --certs",
        ));
    }
    if t.starts_with('{') {
        return json(kind, t);
    }
    if let Some(b) = hex_text(t) {
        return Ok(Decoded {
            report: b,
            certs: Vec::new(),
            encoding: "hex",
        });
    }
    if let Some((b, encoding)) = base64_any(t) {
        return Ok(Decoded {
            report: b,
            certs: Vec::new(),
            encoding,
        });
    }
    Err(malformed(format!(
        "{} bytes of text that is neither hex, base64 nor JSON",
        input.len()
    )))
}

/// Decode evidence of `kind` from whatever a tool wrote, and check it is what `kind` says;
/// otherwise say what it looks like. The report is then verified by
/// [`crate::TeeRoots::verify`].
pub fn decode(kind: TeeKind, input: &[u8]) -> Result<Decoded, TeeError> {
    if input.len() > MAX_INPUT {
        return Err(malformed(format!(
            "{} bytes of evidence (at most {MAX_INPUT})",
            input.len()
        )));
    }
    let mut d = unwrap(kind, input)?;
    let looks = identify(&d.report);
    let wrong = |looks: Looks| {
        let hint = looks
            .kind_hint()
            .map(|k| format!(": use --kind {k}"))
            .unwrap_or_default();
        malformed(format!(
            "{} ({} bytes, {}), given as --kind {}{hint}",
            looks.describe(),
            d.report.len(),
            d.encoding,
            kind.as_str()
        ))
    };
    match (kind, looks) {
        (TeeKind::SevSnp, Looks::SnpReport { .. }) => {
            if d.report.len() > snp::REPORT_LEN {
                // The extended report: the report, then the host's certificate table.
                let table = d.report.split_off(snp::REPORT_LEN);
                let certs = table_certs(&table).map_err(|e| {
                    malformed(format!(
                        "{} bytes after the SEV-SNP report that are not a certificate table: {e}",
                        table.len()
                    ))
                })?;
                if !d.certs.is_empty() && !certs.is_empty() {
                    return Err(malformed(
                        "two certificate tables (auxblob and after the report)",
                    ));
                }
                d.certs.extend(certs);
                if d.encoding == "raw" {
                    d.encoding = "extended report";
                }
            }
            Ok(d)
        }
        (TeeKind::Tdx, Looks::DcapQuote { tdx: true, .. })
        | (TeeKind::Sgx, Looks::DcapQuote { tdx: false, .. })
        | (TeeKind::Nitro, Looks::Cose) => Ok(d),
        (TeeKind::AzSnpVtpm | TeeKind::AzTdxVtpm, Looks::Unknown) if d.encoding == AZURE_JSON => {
            Ok(d)
        }
        (TeeKind::AzSnpVtpm, Looks::AzureHcl { tdx: false })
        | (TeeKind::AzTdxVtpm, Looks::AzureHcl { tdx: true }) => Err(malformed(
            "an Azure HCL report alone: its vTPM quote is needed too (Trustee's Azure vTPM \
             evidence JSON: hcl_report, tpm_quote, and vcek or td_quote)",
        )),
        (TeeKind::SevSnp, Looks::Unknown) => Err(malformed(format!(
            "an SEV-SNP report is {} bytes of version 2 to 5 with signature algorithm 1; \
             these {} bytes ({}) are not one",
            snp::REPORT_LEN,
            d.report.len(),
            d.encoding
        ))),
        (_, looks) => Err(wrong(looks)),
    }
}

/// Certificates from a `--certs` file: PEM (any number), an SEV-SNP certificate table (raw
/// or base64; VEK and ASK/ASVK taken, DER), or one DER certificate.
pub fn decode_certs(input: &[u8]) -> Result<Vec<Vec<u8>>, TeeError> {
    if input.len() > MAX_INPUT {
        return Err(malformed(format!(
            "{} bytes of certificates (at most {MAX_INPUT})",
            input.len()
        )));
    }
    if identify(input) == Looks::CertTable {
        return table_certs(input);
    }
    if let Ok(text) = std::str::from_utf8(input) {
        if text.contains("-----BEGIN") {
            return Ok(vouch_x509::pem_certificates(text));
        }
        if let Some((b, _)) = base64_any(text)
            && identify(&b) == Looks::CertTable
        {
            return table_certs(&b);
        }
    }
    Ok(vec![input.to_vec()])
}

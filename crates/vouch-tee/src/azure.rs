//! Azure confidential VMs (`az-snp-vtpm`, `az-tdx-vtpm`): the guest never sees a bare SEV-SNP
//! report or TD quote. Azure's paravisor (the HCL, at VMPL 0) asks the hardware for a report
//! whose report data binds a runtime-data JSON it wrote, which carries the vTPM's attestation
//! key (AK); the guest then attests through that vTPM. Three layers, each binding the next:
//!
//! 1. the hardware report: SEV-SNP, signed by the VCEK, whose chain ends at AMD's ARK
//!    ([`crate::snp`]); TDX, the TD quote verified by DCAP against Intel's root
//!    ([`crate::dcap`]), whose TD report must be the one inside the HCL report;
//! 2. the runtime data: `report_data[0..32]` = SHA-256 of the runtime data exactly as received,
//!    `report_data[32..64]` zero; the runtime data is JSON whose `keys` hold the AK (`kid`
//!    `HCLAkPub`, an RSA JWK);
//! 3. the vTPM quote: a `TPMS_ATTEST` signed (RSASSA-PKCS1-v1_5, SHA-256) by that AK, over the
//!    PCRs presented ([`vouch_tpm::verify_quote`]); its `extraData` is the nonce the caller
//!    must bind (returned as [`crate::TeeVerified::report_data`]).
//!
//! The evidence is the JSON Trustee's `az-snp-vtpm` and `az-tdx-vtpm` attesters write (versions
//! 0, 1 and 2). The HCL report's layout is the one kinvolk/azure-cvm-tooling's `hcl` module
//! reads: a 32-byte header (`HCLA`, version, report size, request type, status, reserved), the
//! hardware report area (1184 bytes: the SEV-SNP report, or the 1024-byte TDREPORT), the IGVM
//! request data (data size, version, report type 2 SEV-SNP / 4 TDX, hash type 1 SHA-256,
//! runtime data size) and the runtime data.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::{TeeError, snp};

fn malformed(m: impl Into<String>) -> TeeError {
    TeeError::Malformed(m.into())
}

const HEADER_LEN: usize = 32;
const HW_AREA: usize = snp::REPORT_LEN;
const IGVM_AT: usize = HEADER_LEN + HW_AREA;
const RUNTIME_AT: usize = IGVM_AT + 20;
/// A TDREPORT (REPORTMACSTRUCT, TEE_TCB_INFO, reserved, TDINFO).
const TD_REPORT_LEN: usize = 1024;
/// Largest runtime data accepted.
const MAX_RUNTIME: usize = 16 * 1024;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// A parsed HCL report. Nothing in it is trusted until the hardware report verifies and binds
/// the runtime data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    /// The header's version.
    pub version: u32,
    /// The header's request type.
    pub request_type: u32,
    /// The hardware report is a TDX TD report (report type 4); otherwise SEV-SNP (2).
    pub tdx: bool,
    /// The hardware report: the 1184-byte SEV-SNP report, or the 1024-byte TDREPORT.
    pub hw_report: &'a [u8],
    /// The runtime data, exactly as the report carries it (what the hardware report binds).
    pub runtime_data: &'a [u8],
}

impl<'a> HclReport<'a> {
    /// Parse an HCL report: the `HCLA` header with status 0, report type 2 or 4, hash type 1
    /// (SHA-256), the runtime data inside the report size the header gives, and only zero
    /// padding after it.
    pub fn parse(b: &'a [u8]) -> Result<Self, TeeError> {
        if b.len() < RUNTIME_AT {
            return Err(malformed(format!(
                "an HCL report is at least {RUNTIME_AT} bytes, this one {}",
                b.len()
            )));
        }
        if !b.starts_with(b"HCLA") {
            return Err(malformed("not an HCL report (no HCLA signature)"));
        }
        let (version, report_size, request_type, status) =
            (u32_at(b, 4), u32_at(b, 8), u32_at(b, 12), u32_at(b, 16));
        if status != 0 {
            return Err(malformed(format!(
                "HCL report status {status} (0 is success)"
            )));
        }
        let (data_size, report_type, hash_type, runtime_size) = (
            u32_at(b, IGVM_AT) as usize,
            u32_at(b, IGVM_AT + 8),
            u32_at(b, IGVM_AT + 12),
            u32_at(b, IGVM_AT + 16) as usize,
        );
        let tdx = match report_type {
            2 => false,
            4 => true,
            t => return Err(malformed(format!("HCL report type {t} (2 SEV-SNP, 4 TDX)"))),
        };
        if hash_type != 1 {
            return Err(malformed(format!(
                "HCL runtime data hash type {hash_type} (only 1, SHA-256, is known)"
            )));
        }
        if runtime_size > MAX_RUNTIME || data_size != 20 + runtime_size {
            return Err(malformed(format!(
                "HCL runtime data of {runtime_size} bytes in request data of {data_size}"
            )));
        }
        let end = RUNTIME_AT + runtime_size;
        if report_size as usize != end || end > b.len() {
            return Err(malformed(format!(
                "HCL report size {report_size}, runtime data ending at {end}, {} bytes given",
                b.len()
            )));
        }
        if b[end..].iter().any(|x| *x != 0) {
            return Err(malformed(
                "bytes after the HCL report that are not zero padding",
            ));
        }
        let hw_len = if tdx { TD_REPORT_LEN } else { snp::REPORT_LEN };
        if b[HEADER_LEN + hw_len..IGVM_AT].iter().any(|x| *x != 0) {
            return Err(malformed(
                "the HCL report's hardware area has bytes after the report",
            ));
        }
        Ok(Self {
            version,
            request_type,
            tdx,
            hw_report: &b[HEADER_LEN..HEADER_LEN + hw_len],
            runtime_data: &b[RUNTIME_AT..end],
        })
    }
}

/// Trustee's `az-snp-vtpm` / `az-tdx-vtpm` evidence, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Evidence format version (0: no version field, byte arrays; 1; 2: the nonce also in the
    /// runtime data's `user-data`).
    pub version: u64,
    /// The HCL report.
    pub hcl_report: Vec<u8>,
    /// The vTPM quote's `TPMS_ATTEST`.
    pub tpm_message: Vec<u8>,
    /// Its signature (the raw RSA signature).
    pub tpm_signature: Vec<u8>,
    /// The PCR values, in the quote's selection order (SHA-256 bank).
    pub pcrs: Vec<Vec<u8>>,
    /// SEV-SNP: the VCEK (DER), when the evidence carries it.
    pub vcek: Option<Vec<u8>>,
    /// TDX: the TD quote.
    pub td_quote: Option<Vec<u8>>,
}

/// A byte field: a JSON array of bytes, hex text, or base64 (either alphabet).
fn bytes_of(v: &Value, what: &str) -> Result<Vec<u8>, TeeError> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| malformed(format!("{what}: not an array of bytes")))
            })
            .collect(),
        Value::String(s) => {
            let even_hex = s.len() % 2 == 0 && s.bytes().all(|c| c.is_ascii_hexdigit());
            if even_hex {
                hex::decode(s).map_err(|_| malformed(format!("{what}: bad hex")))
            } else {
                crate::input::base64_any(s)
                    .map(|(b, _)| b)
                    .ok_or_else(|| malformed(format!("{what}: neither hex nor base64")))
            }
        }
        _ => Err(malformed(format!("{what}: not bytes"))),
    }
}

fn field<'v>(v: &'v Value, name: &str) -> Result<&'v Value, TeeError> {
    v.get(name)
        .ok_or_else(|| malformed(format!("Azure vTPM evidence has no {name:?}")))
}

impl Evidence {
    /// Parse the JSON (at most [`crate::input::MAX_INPUT`] bytes).
    pub fn parse(json: &[u8]) -> Result<Self, TeeError> {
        if json.len() > crate::input::MAX_INPUT {
            return Err(malformed("Azure vTPM evidence over the size limit"));
        }
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| malformed(format!("Azure vTPM evidence is not JSON: {e}")))?;
        let version = match v.get("version") {
            None => 0,
            Some(x) => x
                .as_u64()
                .filter(|n| (1..=2).contains(n))
                .ok_or_else(|| malformed(format!("Azure vTPM evidence version {x} (0-2)")))?,
        };
        let (quote, hcl) = if version == 0 {
            (field(&v, "quote")?, field(&v, "report")?)
        } else {
            (field(&v, "tpm_quote")?, field(&v, "hcl_report")?)
        };
        let pcrs = field(quote, "pcrs")?
            .as_array()
            .ok_or_else(|| malformed("vTPM quote pcrs is not an array"))?;
        if pcrs.len() > 24 {
            return Err(malformed(format!("{} PCRs (at most 24)", pcrs.len())));
        }
        let vcek = match v.get("vcek") {
            None => None,
            // v0: PEM text; v1 and v2: base64 DER.
            Some(Value::String(s)) if s.contains("-----BEGIN") => Some(
                vouch_x509::pem_certificates(s)
                    .into_iter()
                    .next()
                    .ok_or_else(|| malformed("vcek: no PEM certificate"))?,
            ),
            Some(x) => Some(bytes_of(x, "vcek")?),
        };
        Ok(Self {
            version,
            hcl_report: bytes_of(hcl, "HCL report")?,
            tpm_message: bytes_of(field(quote, "message")?, "vTPM quote message")?,
            tpm_signature: bytes_of(field(quote, "signature")?, "vTPM quote signature")?,
            pcrs: pcrs
                .iter()
                .map(|p| bytes_of(p, "PCR"))
                .collect::<Result<_, _>>()?,
            vcek,
            td_quote: v
                .get("td_quote")
                .map(|x| bytes_of(x, "TD quote"))
                .transpose()?,
        })
    }
}

/// The runtime data's claims and the vTPM AK it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeData {
    /// The AK (RSA modulus and exponent, big-endian).
    pub ak: vouch_tpm::PublicKey,
    /// `vm-configuration`, `user-data` and the key ids, for the claims.
    pub claims: Value,
}

fn b64url(s: &str, what: &str) -> Result<Vec<u8>, TeeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| malformed(format!("runtime data: {what} is not base64url")))
}

/// Read the runtime data (after its digest was checked against the hardware report): JSON
/// with `keys`, the AK being the RSA key with `kid` `HCLAkPub`.
pub fn runtime_data(bytes: &[u8]) -> Result<RuntimeData, TeeError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("the runtime data is not JSON: {e}")))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("the runtime data has no keys"))?;
    let ak = keys
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some("HCLAkPub"))
        .ok_or_else(|| malformed("the runtime data has no HCLAkPub key"))?;
    if ak.get("kty").and_then(Value::as_str) != Some("RSA") {
        return Err(malformed("HCLAkPub is not an RSA key"));
    }
    let part = |name: &str| {
        ak.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("HCLAkPub has no {name}")))
            .and_then(|s| b64url(s, name))
    };
    let (n, e) = (part("n")?, part("e")?);
    if !(256..=512).contains(&n.len()) {
        return Err(malformed(format!(
            "HCLAkPub modulus of {} bits (2048 to 4096)",
            n.len() * 8
        )));
    }
    let kids: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.get("kid").and_then(Value::as_str))
        .collect();
    let claims = json!({
        "keys": kids,
        "ak_sha256": hex::encode(digest(&SHA256, &n)),
        "vm_configuration": v.get("vm-configuration").cloned().unwrap_or(Value::Null),
        "user_data": v.get("user-data").cloned().unwrap_or(Value::Null),
    });
    Ok(RuntimeData {
        ak: vouch_tpm::PublicKey::Rsa { n, e },
        claims,
    })
}

/// The runtime data's binding: `report_data[0..32]` is its SHA-256, the rest zero.
pub fn check_runtime_binding(report_data: &[u8], runtime: &[u8]) -> Result<(), TeeError> {
    let d = digest(&SHA256, runtime);
    if report_data.len() != 64
        || &report_data[..32] != d.as_ref()
        || report_data[32..].iter().any(|x| *x != 0)
    {
        return Err(TeeError::Mismatch(
            "the hardware report's report data is not SHA-256 of the HCL runtime data".into(),
        ));
    }
    Ok(())
}

/// RSASSA (TPM_ALG_RSASSA) and SHA-256 (TPM_ALG_SHA256).
const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_SHA256: u16 = 0x000B;

/// The vTPM quote, verified with the runtime data's AK: the signature over the `TPMS_ATTEST`
/// exactly as received, the PCR digest over the values presented (SHA-256, in the signed
/// selection's order). Returns the quote's `extraData` (the nonce) and its claims.
pub fn verify_vtpm_quote(
    ak: &vouch_tpm::PublicKey,
    message: &[u8],
    signature: &[u8],
    pcrs: &[Vec<u8>],
) -> Result<(Vec<u8>, Value), TeeError> {
    let tpm = |e: vouch_tpm::TpmError| TeeError::Signature(format!("vTPM quote: {e}"));
    let attest = vouch_tpm::TpmsAttest::parse(message).map_err(tpm)?;
    // The PCR values in the signed selection's order (one SHA-256 bank).
    let mut bank = vouch_tpm::PcrBank::new();
    let mut values = pcrs.iter();
    for (alg, idx) in &attest.pcr_select.0 {
        if idx.is_empty() {
            continue;
        }
        if *alg != vouch_tpm::HashAlg::Sha256 {
            return Err(malformed(format!("vTPM quote over a {alg} PCR bank")));
        }
        for i in idx {
            let v = values
                .next()
                .ok_or_else(|| malformed("fewer PCR values than the quote selects"))?;
            bank.insert(*i, v.clone());
        }
    }
    if values.next().is_some() {
        return Err(malformed("more PCR values than the quote selects"));
    }
    let mut pcr_values = vouch_tpm::PcrValues::default();
    pcr_values.0.insert(vouch_tpm::HashAlg::Sha256, bank);
    // The raw RSA signature as a TPMT_SIGNATURE (RSASSA, SHA-256).
    let size =
        u16::try_from(signature.len()).map_err(|_| malformed("vTPM quote signature too long"))?;
    let mut sig = Vec::with_capacity(6 + signature.len());
    for v in [TPM_ALG_RSASSA, TPM_ALG_SHA256, size] {
        sig.extend_from_slice(&v.to_be_bytes());
    }
    sig.extend_from_slice(signature);
    let ak = vouch_tpm::Ak {
        key: ak.clone(),
        scheme: Some((TPM_ALG_RSASSA, vouch_tpm::HashAlg::Sha256)),
        qualified_name: None,
    };
    let q = vouch_tpm::verify_quote(
        &ak,
        message,
        &sig,
        &pcr_values,
        &attest.extra_data,
        &vouch_tpm::QuotePolicy::default(),
    )
    .map_err(tpm)?;
    let claims = json!({
        "nonce": hex::encode(&attest.extra_data),
        "pcrs": pcr_values.to_hex(),
        "clock": q.clock,
        "firmware_version": q.firmware_version,
        "signature": q.signature,
        "qualified_signer": q.qualified_signer,
    });
    Ok((attest.extra_data, claims))
}

/// The TDREPORT inside the HCL report must be the one the TD quote signed: its REPORTDATA
/// (REPORTMACSTRUCT at 128), MRTD and RTMRs (TDINFO at 512) equal the quote body's.
pub fn check_td_report(
    td_report: &[u8],
    quote_body: &crate::dcap::QuoteBody,
) -> Result<(), TeeError> {
    let crate::dcap::QuoteBody::Tdx {
        mr_td,
        rtmr,
        report_data,
        ..
    } = quote_body
    else {
        return Err(TeeError::Mismatch("the TD quote is not a TDX quote".into()));
    };
    let h = |from: usize, len: usize| hex::encode(&td_report[from..from + len]);
    let tdinfo = 512;
    let same = h(128, 64) == *report_data
        && h(tdinfo + 16, 48) == *mr_td
        && (0..4).all(|i| h(tdinfo + 208 + 48 * i, 48) == rtmr[i]);
    if !same {
        return Err(TeeError::Mismatch(
            "the TD report in the HCL report is not the one the TD quote signed".into(),
        ));
    }
    Ok(())
}

//! Confidential-computing evidence, verified against vendor roots with every field checked.
//!
//! - [`snp`]: AMD SEV-SNP attestation reports, signed by a VCEK or VLEK whose chain ends at the
//!   product line's ARK; the certificate's TCB and chip id must be the report's.
//! - [`nitro`]: AWS Nitro Enclaves attestation documents (COSE_Sign1 ES384), the CA bundle
//!   from the trusted Nitro root.
//!
//! Every verification takes the time to check certificates at, so real samples (valid only
//! in the past) are verified at a time inside their windows.
#![deny(missing_docs)]

pub mod azure;
pub mod dcap;
pub mod input;
pub mod nitro;
pub mod snp;

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// The bytes are not a well-formed report or certificate.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A certificate chain does not lead to a trusted root, or a certificate is outside its
    /// validity window at the verification time.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// The report's signature does not verify under the certified key.
    #[error("signature: {0}")]
    Signature(String),
    /// The report and its certificate disagree (TCB, chip id, key type).
    #[error("mismatch: {0}")]
    Mismatch(String),
    /// A component that vouches for the evidence is not the one its vendor publishes: a DCAP
    /// quote's quoting enclave (MRSIGNER, ISVPRODID, MISCSELECT, ATTRIBUTES) or TDX module
    /// (MRSIGNERSEAM, SEAMATTRIBUTES).
    #[error("identity: {0}")]
    Identity(String),
}

use serde_json::{Value, json};

/// The TEE evidence kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// AMD SEV-SNP attestation report (with the VEK and its chain).
    SevSnp,
    /// Intel TDX DCAP quote.
    Tdx,
    /// Intel SGX DCAP quote.
    Sgx,
    /// AWS Nitro Enclaves attestation document.
    Nitro,
    /// Azure confidential VM on SEV-SNP: HCL report, runtime data and vTPM quote.
    AzSnpVtpm,
    /// Azure confidential VM on TDX: HCL report, TD quote, runtime data and vTPM quote.
    AzTdxVtpm,
}

impl TeeKind {
    /// The name on the wire and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SevSnp => "sev-snp",
            Self::Tdx => "tdx",
            Self::Sgx => "sgx",
            Self::Nitro => "nitro",
            Self::AzSnpVtpm => "az-snp-vtpm",
            Self::AzTdxVtpm => "az-tdx-vtpm",
        }
    }

    /// Parse [`TeeKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::SevSnp,
            Self::Tdx,
            Self::Sgx,
            Self::Nitro,
            Self::AzSnpVtpm,
            Self::AzTdxVtpm,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The vendor roots an operator trusts, read once (an offline store: no vendor service is
/// contacted): AMD ARKs, the Intel SGX Root CA, the AWS Nitro root.
#[derive(Debug, Clone, Default)]
pub struct TeeRoots {
    snp: Option<snp::SnpVerifier>,
    /// SEV-SNP certificates an operator fetched ahead of time: VCEKs by (chip id, raw
    /// REPORTED_TCB), and ASK/ASVK intermediates.
    vceks: std::collections::HashMap<(String, u64), Vec<u8>>,
    snp_intermediates: Vec<Vec<u8>>,
    dcap: Option<dcap::DcapVerifier>,
    nitro: Option<nitro::NitroVerifier>,
}

/// Verified TEE evidence: the claims for policies and the 64 bytes the TEE bound.
#[derive(Debug, Clone, PartialEq)]
pub struct TeeVerified {
    /// `input.tee`: `kind`, `measurement`, `signer`, `debug`, `migratable`, `tcb`,
    /// `report_data`, `revocation_checked`, and the
    /// kind's full claims under `details`.
    pub claims: Value,
    /// The report data / nonce the TEE signed (64 bytes for SNP, TDX and SGX; Nitro's `nonce`).
    pub report_data: Vec<u8>,
}

/// The files of `dir` whose extension is one of `exts`, in file-name order.
fn files_with(dir: &std::path::Path, exts: &[&str]) -> Result<Vec<std::path::PathBuf>, TeeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| TeeError::Chain(format!("reading {}: {e}", dir.display())))?;
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Every certificate in the `.pem`, `.crt` and `.der` files of `dir`, in file-name order.
fn read_cert_dir(dir: &std::path::Path) -> Result<Vec<Vec<u8>>, TeeError> {
    let mut certs = Vec::new();
    for p in files_with(dir, &["pem", "crt", "der"])? {
        let bytes = std::fs::read(&p)
            .map_err(|e| TeeError::Chain(format!("reading {}: {e}", p.display())))?;
        match std::str::from_utf8(&bytes) {
            Ok(t) if t.contains("-----BEGIN") => certs.extend(vouch_x509::pem_certificates(t)),
            _ => certs.push(bytes),
        }
    }
    Ok(certs)
}

/// Every CRL in the `.crl` files of `dir` (DER, or PEM `X509 CRL` blocks), in file-name order.
fn read_crl_dir(dir: &std::path::Path) -> Result<Vec<Vec<u8>>, TeeError> {
    let mut out = Vec::new();
    for p in files_with(dir, &["crl"])? {
        let bytes = std::fs::read(&p)
            .map_err(|e| TeeError::Chain(format!("reading {}: {e}", p.display())))?;
        match std::str::from_utf8(&bytes) {
            Ok(t) if t.contains("-----BEGIN X509 CRL-----") => {
                for block in vouch_x509::pem_blocks(t, "X509 CRL") {
                    out.push(
                        block.map_err(|e| TeeError::Malformed(format!("{}: {e}", p.display())))?,
                    );
                }
            }
            _ => out.push(bytes),
        }
    }
    Ok(out)
}

fn self_signed_subject(der: &[u8]) -> Option<String> {
    let c = vouch_x509::parse(der, "root").ok()?;
    (c.tbs_certificate.subject == c.tbs_certificate.issuer)
        .then(|| c.tbs_certificate.subject.to_string())
}

impl TeeRoots {
    /// Classify self-signed certificates (DER) by subject: `ARK-*` (AMD), `Intel SGX Root CA`,
    /// `aws.nitro-enclaves` (AWS). Others are an error, naming them.
    pub fn from_certs(certs: &[Vec<u8>]) -> Result<Self, TeeError> {
        let (mut arks, mut intel, mut aws) = (Vec::new(), None, None);
        for der in certs {
            let subject = self_signed_subject(der).ok_or_else(|| {
                TeeError::Chain("a TEE root is not a self-signed certificate".into())
            })?;
            if subject.contains("CN=ARK-") {
                arks.push(der.clone());
            } else if subject.contains("CN=Intel SGX Root CA") {
                intel = Some(dcap::DcapVerifier::new(der)?);
            } else if subject.contains("CN=aws.nitro-enclaves") {
                aws = Some(nitro::NitroVerifier::new(der)?);
            } else {
                return Err(TeeError::Chain(format!(
                    "{subject} is not an AMD ARK, the Intel SGX Root CA or the AWS Nitro root"
                )));
            }
        }
        Ok(Self {
            vceks: Default::default(),
            snp_intermediates: Vec::new(),
            snp: if arks.is_empty() {
                None
            } else {
                Some(snp::SnpVerifier::new(&arks)?)
            },
            dcap: intel,
            nitro: aws,
        })
    }

    /// Read the self-signed certificates of every `.pem`, `.crt` and `.der` file of `dir` (a
    /// PEM bundle may also hold intermediates, which are skipped here).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, TeeError> {
        let certs: Vec<Vec<u8>> = read_cert_dir(dir)?
            .into_iter()
            .filter(|d| self_signed_subject(d).is_some())
            .collect();
        Self::from_certs(&certs)
    }

    /// Load SEV-SNP certificates from the operator's offline store (`.der`, `.pem`, `.crt`):
    /// VCEKs, indexed by the chip id and TCB they certify, so agents need not send them, and
    /// ASK/ASVK intermediates. Returns how many VCEKs were indexed.
    pub fn add_snp_cert_dir(&mut self, dir: &std::path::Path) -> Result<usize, TeeError> {
        let mut n = 0;
        for der in read_crl_dir(dir)? {
            let snp = self.snp.as_mut().ok_or_else(|| {
                TeeError::Chain("a CRL in the store, but no AMD ARK among the roots".into())
            })?;
            snp.add_crl(der)?;
        }
        for der in read_cert_dir(dir)? {
            let c = vouch_x509::parse(&der, "SEV-SNP store").map_err(TeeError::Chain)?;
            let subject = c.tbs_certificate.subject.to_string();
            if subject.contains("CN=SEV-VCEK") {
                let key = snp::vcek_index(&c).ok_or_else(|| {
                    TeeError::Chain(format!("{subject}: no hwID or TCB extensions"))
                })?;
                self.vceks.insert(key, der);
                n += 1;
            } else if c.tbs_certificate.subject != c.tbs_certificate.issuer {
                self.snp_intermediates.push(der);
            }
        }
        Ok(n)
    }

    /// Load the operator's offline store: DCAP collateral and QE identities (`*.json`, see
    /// [`TeeRoots::add_collateral_dir`]) and SEV-SNP certificates
    /// ([`TeeRoots::add_snp_cert_dir`]). Returns the FMSPCs covered.
    pub fn add_store_dir(&mut self, dir: &std::path::Path) -> Result<Vec<String>, TeeError> {
        self.add_snp_cert_dir(dir)?;
        self.add_collateral_dir(dir)
    }

    /// Load DCAP files (`*.json`) from the operator's offline store: collateral (one FMSPC
    /// each: TCB info, QE identity, CRLs) and QE identities alone (a JSON object with only the
    /// collateral's `qe_identity`, `qe_identity_signature` and `qe_identity_issuer_chain`).
    /// Every QE identity must be signed by Intel; the newest of each quoting enclave (`QE`,
    /// `TD_QE`) is what quotes' QE reports are checked against, on every platform (without
    /// one, Intel's values built into [`dcap::QeIdentity::built_in`]). Returns the FMSPCs
    /// covered. Needs the Intel root when there is any file.
    pub fn add_collateral_dir(&mut self, dir: &std::path::Path) -> Result<Vec<String>, TeeError> {
        let paths = files_with(dir, &["json"])?;
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let dcap = self
            .dcap
            .as_mut()
            .ok_or_else(|| TeeError::Chain("DCAP collateral needs the Intel SGX root".into()))?;
        let mut out = Vec::new();
        for p in paths {
            let bytes = std::fs::read(&p)
                .map_err(|e| TeeError::Chain(format!("reading {}: {e}", p.display())))?;
            if bytes.len() > 1 << 20 {
                return Err(TeeError::Malformed(format!(
                    "{} is over 1 MiB",
                    p.display()
                )));
            }
            let named = |e: TeeError| TeeError::Malformed(format!("{}: {e}", p.display()));
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| TeeError::Malformed(format!("{}: {e}", p.display())))?;
            if v.get("tcb_info").is_some() {
                let c: dcap::Collateral = serde_json::from_value(v)
                    .map_err(|e| TeeError::Malformed(format!("{}: {e}", p.display())))?;
                out.push(dcap.add_collateral(c).map_err(named)?);
            } else if v.get("qe_identity").is_some() {
                let q: dcap::SignedQeIdentity = serde_json::from_value(v)
                    .map_err(|e| TeeError::Malformed(format!("{}: {e}", p.display())))?;
                dcap.add_qe_identity(&q).map_err(named)?;
            } else {
                return Err(TeeError::Malformed(format!(
                    "{}: neither DCAP collateral (tcb_info) nor a QE identity (qe_identity)",
                    p.display()
                )));
            }
        }
        Ok(out)
    }

    /// Verify evidence of `kind`: `report` (the report, quote or document) and `certs` (for
    /// SEV-SNP the VEK first, then its chain), certificates checked at `now`.
    pub fn verify(
        &self,
        kind: TeeKind,
        report: &[u8],
        certs: &[Vec<u8>],
        now: u64,
    ) -> Result<TeeVerified, TeeError> {
        let missing = |what: &str| TeeError::Chain(format!("no trusted {what} root configured"));
        match kind {
            TeeKind::SevSnp => {
                let v = self.snp.as_ref().ok_or_else(|| missing("AMD ARK"))?;
                let c = match certs.split_first() {
                    Some((vek, chain)) => {
                        let mut chain = chain.to_vec();
                        chain.extend(self.snp_intermediates.iter().cloned());
                        v.verify(report, vek, &chain, now)?
                    }
                    None => {
                        // No certificate sent: the VCEK for this chip and TCB from the store.
                        let key = snp::report_vcek_key(report)?;
                        let vek = self.vceks.get(&key).ok_or_else(|| {
                            TeeError::Chain(format!(
                                "no VEK certificate sent, and none in the store for chip {}… at TCB {:016x}",
                                &key.0[..16],
                                key.1
                            ))
                        })?;
                        v.verify(report, vek, &self.snp_intermediates, now)?
                    }
                };
                Ok(snp_verified(kind, &c))
            }
            TeeKind::AzSnpVtpm | TeeKind::AzTdxVtpm => self.verify_azure(kind, report, certs, now),
            TeeKind::Tdx | TeeKind::Sgx => {
                let v = self.dcap.as_ref().ok_or_else(|| missing("Intel SGX"))?;
                let c = v.verify(report, now)?;
                dcap_verified(kind, c)
            }
            TeeKind::Nitro => {
                let v = self.nitro.as_ref().ok_or_else(|| missing("AWS Nitro"))?;
                let c = v.verify(report, now)?;
                let nonce = c.nonce.clone().unwrap_or_default();
                Ok(TeeVerified {
                    report_data: hex::decode(&nonce).unwrap_or_default(),
                    claims: json!({
                        "kind": kind.as_str(),
                        "measurement": c.pcrs.get(&0).cloned().unwrap_or_default(),
                        "signer": c.pcrs.get(&8).cloned().unwrap_or_default(),
                        "debug": c.debug,
                        "migratable": false,
                        "tcb": {},
                        "report_data": nonce,
                        "revocation_checked": false,
                        "details": c,
                    }),
                })
            }
        }
    }
}

impl TeeRoots {
    /// Azure confidential VM evidence ([`azure`]): the hardware report against the vendor
    /// chain, the runtime data it binds, the vTPM quote signed by the runtime data's AK. The
    /// result's report data is the vTPM quote's nonce; the claims are the hardware report's
    /// (`measurement`, `tcb`, … as for `sev-snp` or `tdx`), with `details.hcl`,
    /// `details.runtime_data` and `details.vtpm`.
    fn verify_azure(
        &self,
        kind: TeeKind,
        evidence: &[u8],
        certs: &[Vec<u8>],
        now: u64,
    ) -> Result<TeeVerified, TeeError> {
        let ev = azure::Evidence::parse(evidence)?;
        let hcl = azure::HclReport::parse(&ev.hcl_report)?;
        let tdx = kind == TeeKind::AzTdxVtpm;
        if hcl.tdx != tdx {
            return Err(TeeError::Mismatch(format!(
                "the HCL report holds {} report, given as {}",
                if hcl.tdx { "a TDX" } else { "an SEV-SNP" },
                kind.as_str()
            )));
        }
        // 1. The hardware report.
        let mut v = if tdx {
            let quote = ev.td_quote.as_deref().ok_or_else(|| {
                TeeError::Malformed("az-tdx-vtpm evidence without a td_quote".into())
            })?;
            let d = self
                .dcap
                .as_ref()
                .ok_or_else(|| TeeError::Chain("no trusted Intel SGX root configured".into()))?;
            let c = d.verify(quote, now)?;
            azure::check_td_report(hcl.hw_report, &c.body)?;
            dcap_verified(TeeKind::Tdx, c)?
        } else {
            let v = self
                .snp
                .as_ref()
                .ok_or_else(|| TeeError::Chain("no trusted AMD ARK root configured".into()))?;
            let mut chain = certs.to_vec();
            chain.extend(self.snp_intermediates.iter().cloned());
            let vek = match (&ev.vcek, certs.first()) {
                (Some(vcek), _) => vcek.clone(),
                (None, Some(first)) => first.clone(),
                (None, None) => {
                    let key = snp::report_vcek_key(hcl.hw_report)?;
                    self.vceks.get(&key).cloned().ok_or_else(|| {
                        TeeError::Chain(
                            "no VCEK in the evidence, none sent, none in the store".into(),
                        )
                    })?
                }
            };
            let c = v.verify(hcl.hw_report, &vek, &chain, now)?;
            // The HCL runs at VMPL 0: a report from a less privileged VMPL was not its own.
            if c.report.vmpl != 0 {
                return Err(TeeError::Mismatch(format!(
                    "the HCL's SEV-SNP report comes from VMPL {}, not 0",
                    c.report.vmpl
                )));
            }
            snp_verified(TeeKind::SevSnp, &c)
        };
        // 2. The runtime data, bound by the hardware report, and its AK.
        azure::check_runtime_binding(&v.report_data, hcl.runtime_data)?;
        let runtime = azure::runtime_data(hcl.runtime_data)?;
        // 3. The vTPM quote, signed by that AK.
        let (nonce, vtpm) =
            azure::verify_vtpm_quote(&runtime.ak, &ev.tpm_message, &ev.tpm_signature, &ev.pcrs)?;
        v.claims["kind"] = kind.as_str().into();
        v.claims["report_data"] = hex::encode(&nonce).into();
        // The HCL header's and request data's version fields are not bound by anything (the
        // hardware report binds the runtime data only), so they are not claimed.
        v.claims["details"]["hcl"] = json!({
            "report_type": if tdx { "tdx" } else { "sev-snp" },
            "hardware_report_data": hex::encode(&v.report_data),
            "evidence_version": ev.version,
        });
        // Whether the runtime data's user-data (bound by the hardware report) starts with the
        // vTPM quote's nonce: Trustee's evidence v2 puts it there, so the hardware report is as
        // fresh as the quote; a policy can require it.
        let mut runtime_claims = runtime.claims;
        let binds = runtime_claims["user_data"]
            .as_str()
            .and_then(|u| hex::decode(u).ok())
            .is_some_and(|u| !nonce.is_empty() && u.starts_with(&nonce));
        runtime_claims["user_data_binds_nonce"] = binds.into();
        v.claims["details"]["runtime_data"] = runtime_claims;
        v.claims["details"]["vtpm"] = vtpm;
        v.report_data = nonce;
        Ok(v)
    }
}

/// The claims of a verified SEV-SNP report (`input.tee`).
fn snp_verified(kind: TeeKind, c: &snp::SnpClaims) -> TeeVerified {
    let r = &c.report;
    TeeVerified {
        report_data: hex::decode(&r.report_data).unwrap_or_default(),
        claims: json!({
            "kind": kind.as_str(),
            "measurement": r.measurement,
            "signer": r.id_key_digest,
            "debug": r.policy.debug,
            "migratable": r.policy.migrate_ma,
            "tcb": {
                "bootloader": r.reported_tcb.bootloader, "tee": r.reported_tcb.tee,
                "snp": r.reported_tcb.snp, "microcode": r.reported_tcb.microcode,
            },
            "report_data": r.report_data,
            "revocation_checked": c.revocation_checked,
            "details": c,
        }),
    }
}

/// The claims of a verified DCAP quote of `kind` (SGX or TDX; the body must be of that kind).
fn dcap_verified(kind: TeeKind, c: dcap::QuoteClaims) -> Result<TeeVerified, TeeError> {
    let (measurement, signer, debug, migratable, report_data, tcb) = match &c.body {
        dcap::QuoteBody::Sgx {
            mr_enclave,
            mr_signer,
            debug,
            report_data,
            isv_svn,
            cpu_svn,
            ..
        } if kind == TeeKind::Sgx => (
            mr_enclave.clone(),
            mr_signer.clone(),
            *debug,
            false,
            report_data.clone(),
            json!({"isv_svn": isv_svn, "cpu_svn": cpu_svn, "qe_svn": c.qe_svn,
               "pce_svn": c.pce_svn, "status": c.tcb_status}),
        ),
        dcap::QuoteBody::Tdx {
            mr_td,
            mr_seam,
            debug,
            migratable,
            report_data,
            tee_tcb_svn,
            tee_tcb_svn2,
            ..
        } if kind == TeeKind::Tdx => (
            mr_td.clone(),
            mr_seam.clone(),
            *debug,
            *migratable,
            report_data.clone(),
            json!({"tee_tcb_svn": tee_tcb_svn, "tee_tcb_svn2": tee_tcb_svn2,
               "qe_svn": c.qe_svn, "pce_svn": c.pce_svn, "status": c.tcb_status}),
        ),
        _ => {
            return Err(TeeError::Mismatch(format!(
                "the quote is not a {} quote",
                kind.as_str()
            )));
        }
    };
    Ok(TeeVerified {
        report_data: hex::decode(&report_data).unwrap_or_default(),
        claims: json!({
            "kind": kind.as_str(), "measurement": measurement, "signer": signer,
            "debug": debug, "migratable": migratable, "tcb": tcb,
            "report_data": report_data,
            "revocation_checked": c.revocation_checked, "details": c,
        }),
    })
}

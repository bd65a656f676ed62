//! Intel SGX and TDX DCAP quotes (versions 3, 4 and 5), checked by hand against the Intel SGX
//! Root CA with the PCK certificate chain the quote carries:
//!
//! 1. the quote parses exactly: header (version, ECDSA P-256 attestation key, TEE type), the
//!    body of its type (SGX enclave report 384 bytes, TD report 584 or 648 bytes), the
//!    signature data with the attestation key, the QE report and its signature, the QE
//!    authentication data and the certification data (a PCK chain, type 5, directly in v3 or
//!    inside the QE report certification data, type 6, from v4); anything after the quote may
//!    only be zero padding;
//! 2. the PCK chain ends at the trusted root (byte for byte), every certificate signed by the
//!    next and valid at the verification time, intermediates CAs;
//! 3. the QE report is signed by the PCK key, and binds the attestation key:
//!    `report_data = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes`;
//! 4. the QE report comes from Intel's quoting enclave for the quote's TEE: MRSIGNER,
//!    ISVPRODID, and MISCSELECT and ATTRIBUTES under their masks equal Intel's published QE
//!    identity (the newest Intel-signed one in the offline store, or Intel's values built in);
//!    see [`QeIdentity`];
//! 5. the quote (header and body, as received) is signed by the attestation key;
//! 6. TDX: the TD report comes from Intel's TDX module: MRSIGNERSEAM and SEAMATTRIBUTES (under
//!    the mask) equal the TDX module identity of the platform's collateral or, without
//!    collateral, Intel's (zero and zero).
//!
//! With collateral for the platform's FMSPC ([`Collateral`]: TCB info, QE identity and CRLs, kept
//! in an offline store an operator fills ahead of time), `dcap-qvl` then judges the TCB status
//! (and checks the collateral's signatures, windows and revocation lists); without it the
//! status is "not judged".

mod identity;

pub use identity::{IdentitySource, QeId, QeIdentity, SignedQeIdentity};
use identity::{TdxModules, check_tdx_module};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Serialize;

use crate::TeeError;

/// Largest quote accepted, bytes.
pub const MAX_QUOTE: usize = 64 * 1024;
const HEADER_LEN: usize = 48;
const SGX_REPORT_LEN: usize = 384;
const TD_REPORT_V4_LEN: usize = 584;
const TD_REPORT_V5_LEN: usize = 648;
const ATT_KEY_ECDSA_P256: u16 = 2;
const TEE_SGX: u32 = 0;
const TEE_TDX: u32 = 0x81;

fn malformed(m: impl Into<String>) -> TeeError {
    TeeError::Malformed(m.into())
}

/// A bounded little-endian reader.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TeeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| malformed(format!("quote truncated in {what}")))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<u16, TeeError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, TeeError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// The enclave (SGX) or trust domain (TDX) the quote is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tee", rename_all = "lowercase")]
pub enum QuoteBody {
    /// An SGX enclave.
    Sgx {
        /// CPU SVN, hex.
        cpu_svn: String,
        /// MRENCLAVE, hex.
        mr_enclave: String,
        /// MRSIGNER, hex.
        mr_signer: String,
        /// ISV product id.
        isv_prod_id: u16,
        /// ISV SVN.
        isv_svn: u16,
        /// Debug enclave (ATTRIBUTES.DEBUG).
        debug: bool,
        /// ATTRIBUTES, hex.
        attributes: String,
        /// MISCSELECT.
        misc_select: u32,
        /// ISVEXTPRODID, hex.
        isv_ext_prod_id: String,
        /// CONFIGID, hex.
        config_id: String,
        /// CONFIGSVN.
        config_svn: u16,
        /// ISVFAMILYID, hex.
        isv_family_id: String,
        /// REPORT_DATA, hex.
        report_data: String,
    },
    /// A TDX trust domain.
    Tdx {
        /// TEE TCB SVN, hex.
        tee_tcb_svn: String,
        /// MRSEAM, hex.
        mr_seam: String,
        /// MRSIGNERSEAM (zero for Intel's TDX module), hex.
        mr_signer_seam: String,
        /// SEAMATTRIBUTES, hex.
        seam_attributes: String,
        /// MRTD (the initial TD contents), hex.
        mr_td: String,
        /// MRCONFIGID, hex.
        mr_config_id: String,
        /// MROWNER, hex.
        mr_owner: String,
        /// MROWNERCONFIG, hex.
        mr_owner_config: String,
        /// RTMR 0–3, hex.
        rtmr: Box<[String; 4]>,
        /// TD ATTRIBUTES, hex.
        td_attributes: String,
        /// Debug TD (TD ATTRIBUTES bit 0).
        debug: bool,
        /// Migratable TD (TD ATTRIBUTES bit 29): it may be moved to another platform by a
        /// migration TD.
        migratable: bool,
        /// XFAM, hex.
        xfam: String,
        /// REPORT_DATA, hex.
        report_data: String,
        /// TEE_TCB_SVN_2 (TD 1.5 bodies, type 3 of a v5 quote), hex.
        #[serde(skip_serializing_if = "Option::is_none")]
        tee_tcb_svn2: Option<String>,
        /// MRSERVICETD (TD 1.5 bodies), hex.
        #[serde(skip_serializing_if = "Option::is_none")]
        mr_service_td: Option<String>,
    },
}

/// A verified quote's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteClaims {
    /// Quote format version (3, 4 or 5).
    pub version: u16,
    /// The body's type: 1 SGX enclave report, 2 TD report of TDX 1.0, 3 TD report of TDX
    /// 1.5 (v5 quotes say so in their body descriptor; v3 and v4 by their TEE type).
    pub body_type: u16,
    /// QE SVN: the header's (v3); from v4 the header leaves it reserved, and it is the QE
    /// report's ISVSVN (the quoting enclave that signed).
    pub qe_svn: u16,
    /// PCE SVN: the header's (v3); from v4 the PCESVN of the PCK certificate's TCB (the
    /// certification data's), the value Intel certified the platform at.
    pub pce_svn: u16,
    /// CPUSVN the PCK certificate was issued for, hex (from its SGX extension's TCB).
    pub pck_cpu_svn: String,
    /// PCE id of the PCK certificate, hex.
    pub pce_id: String,
    /// QE vendor id from the header, hex (Intel's is 939a7233f79c4ca9940a0db3957f0607).
    pub qe_vendor_id: String,
    /// The header's user data, hex (Intel's QE puts a platform identifier in its first 16
    /// bytes).
    pub user_data: String,
    /// The QE report's CPUSVN, hex.
    pub qe_cpu_svn: String,
    /// The QE report's ISVPRODID.
    pub qe_isv_prod_id: u16,
    /// The enclave or trust domain.
    pub body: QuoteBody,
    /// MRSIGNER of the quoting enclave, hex (checked against Intel's QE identity).
    pub qe_mr_signer: String,
    /// The QE identity the QE report was checked against: `QE` (SGX) or `TD_QE` (TDX), and
    /// where it came from.
    pub qe_identity: QeIdentityChecked,
    /// TDX: where the TDX module identity the TD report was checked against came from.
    pub tdx_module_identity: Option<IdentitySource>,
    /// Subject of the PCK certificate.
    pub pck_subject: String,
    /// The platform's FMSPC (from the PCK certificate), hex.
    pub fmspc: String,
    /// TCB status from the collateral (`UpToDate`, `SWHardeningNeeded`, `OutOfDate`, …), or
    /// "not judged (no collateral)".
    pub tcb_status: String,
    /// Intel security advisories that apply (with collateral).
    pub advisory_ids: Vec<String>,
    /// Whether the PCK chain was checked against the collateral's CRLs (with collateral).
    pub revocation_checked: bool,
}

/// Which QE identity a quote's QE report matched, and where that identity came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QeIdentityChecked {
    /// `QE` or `TD_QE`.
    pub id: QeId,
    /// The store (Intel-signed, with its issue date) or the built-in values.
    #[serde(flatten)]
    pub source: IdentitySource,
}

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

/// An SGX enclave report (384 bytes, SGX REPORT_BODY): offsets from Intel's quote format.
fn sgx_body(b: &[u8]) -> QuoteBody {
    let flags = u64::from_le_bytes(b[48..56].try_into().unwrap_or_default());
    QuoteBody::Sgx {
        cpu_svn: hx(&b[0..16]),
        misc_select: u32::from_le_bytes(b[16..20].try_into().unwrap_or_default()),
        isv_ext_prod_id: hx(&b[32..48]),
        mr_enclave: hx(&b[64..96]),
        mr_signer: hx(&b[128..160]),
        config_id: hx(&b[192..256]),
        isv_prod_id: u16::from_le_bytes([b[256], b[257]]),
        isv_svn: u16::from_le_bytes([b[258], b[259]]),
        config_svn: u16::from_le_bytes([b[260], b[261]]),
        isv_family_id: hx(&b[304..320]),
        debug: flags & 2 != 0,
        attributes: hx(&b[48..64]),
        report_data: hx(&b[320..384]),
    }
}

fn td_body(b: &[u8]) -> QuoteBody {
    let attrs = u64::from_le_bytes(b[120..128].try_into().unwrap_or_default());
    QuoteBody::Tdx {
        tee_tcb_svn: hx(&b[0..16]),
        mr_seam: hx(&b[16..64]),
        mr_signer_seam: hx(&b[64..112]),
        seam_attributes: hx(&b[112..120]),
        mr_td: hx(&b[136..184]),
        mr_config_id: hx(&b[184..232]),
        mr_owner: hx(&b[232..280]),
        mr_owner_config: hx(&b[280..328]),
        rtmr: Box::new([
            hx(&b[328..376]),
            hx(&b[376..424]),
            hx(&b[424..472]),
            hx(&b[472..520]),
        ]),
        td_attributes: hx(&b[120..128]),
        debug: attrs & 1 != 0,
        migratable: attrs & (1 << 29) != 0,
        xfam: hx(&b[128..136]),
        report_data: hx(&b[520..584]),
        tee_tcb_svn2: b.get(584..600).map(hx),
        mr_service_td: b.get(600..648).map(hx),
    }
}

/// Verifies quotes against a trusted Intel SGX Root CA.
#[derive(Debug, Clone)]
pub struct DcapVerifier {
    root_der: Vec<u8>,
    chains: vouch_x509::VerifiedChains,
    collateral: std::collections::BTreeMap<String, dcap_qvl::QuoteCollateralV3>,
    /// TDX module identities from the TCB info of each FMSPC's collateral.
    tdx_modules: std::collections::BTreeMap<String, TdxModules>,
    /// The newest Intel-signed QE identity of each quoting enclave in the store.
    qe_identities: std::collections::BTreeMap<QeId, QeIdentity>,
    /// TCB appraisals already made: see [`DcapVerifier::verify`], step 7.
    appraisals: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], Appraised>>>,
}

/// A TCB appraisal by dcap-qvl and the window it stands in: from when it was made to the
/// earliest next update of the collateral it used.
#[derive(Debug, Clone)]
struct Appraised {
    status: String,
    advisory_ids: Vec<String>,
    from: u64,
    until: u64,
}

/// Most appraisals remembered (emptied when full).
const MAX_APPRAISALS: usize = 4096;

/// The earliest `nextUpdate` of the collateral: TCB info, QE identity (RFC 3339 in their JSON)
/// and both CRLs. `None` when one cannot be read (then nothing is remembered).
fn collateral_until(c: &dcap_qvl::QuoteCollateralV3) -> Option<u64> {
    use std::str::FromStr as _;
    use x509_cert::der::Decode as _;
    let json_next = |j: &str| -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(j).ok()?;
        let t = v.get("nextUpdate")?.as_str()?;
        Some(
            x509_cert::der::DateTime::from_str(t)
                .ok()?
                .unix_duration()
                .as_secs(),
        )
    };
    let crl_next = |der: &[u8]| -> Option<u64> {
        let crl = x509_cert::crl::CertificateList::from_der(der).ok()?;
        Some(crl.tbs_cert_list.next_update?.to_unix_duration().as_secs())
    };
    [
        json_next(&c.tcb_info)?,
        json_next(&c.qe_identity)?,
        crl_next(&c.pck_crl)?,
        crl_next(&c.root_ca_crl)?,
    ]
    .into_iter()
    .min()
}

/// The collateral's CRLs, checked here as well as by dcap-qvl: the PCK CRL signed by the PCK
/// chain's issuing CA and the root CA CRL by the root, both current at `now`, and no
/// certificate of the chain on either.
fn check_crls(
    c: &dcap_qvl::QuoteCollateralV3,
    chain: &[x509_cert::Certificate],
    now: u64,
) -> Result<(), TeeError> {
    let crl_err = |e: String| TeeError::Chain(format!("collateral CRL: {e}"));
    let (Some(root), Some(ca)) = (chain.last(), chain.get(1)) else {
        return Err(TeeError::Chain("the PCK chain is too short".into()));
    };
    let pck_crl = vouch_x509::verify_crl(&c.pck_crl, ca, now).map_err(crl_err)?;
    let root_crl = vouch_x509::verify_crl(&c.root_ca_crl, root, now).map_err(crl_err)?;
    for cert in chain {
        pck_crl.check(cert).map_err(crl_err)?;
        root_crl.check(cert).map_err(crl_err)?;
    }
    Ok(())
}

/// Collateral for one FMSPC, as Intel's PCS / a PCCS serves it (the JSON `dcap-qvl` writes:
/// PEM issuer chains, hex CRLs and signatures, TCB info and QE identity JSON).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Collateral {
    #[serde(flatten)]
    qe: SignedQeIdentity,
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
}

impl Collateral {
    /// The FMSPC the TCB info is for (lower-case hex), its TDX module identities (TDX), and the
    /// collateral in `dcap-qvl`'s form.
    fn into_qvl(
        self,
    ) -> Result<(String, Option<TdxModules>, dcap_qvl::QuoteCollateralV3), TeeError> {
        let h = |s: &str, what: &str| {
            hex::decode(s.trim()).map_err(|_| malformed(format!("collateral {what} is not hex")))
        };
        let info: serde_json::Value = serde_json::from_str(&self.tcb_info)
            .map_err(|e| malformed(format!("collateral TCB info: {e}")))?;
        let fmspc = info["fmspc"]
            .as_str()
            .ok_or_else(|| malformed("collateral TCB info has no fmspc"))?
            .to_ascii_lowercase();
        let modules = TdxModules::from_tcb_info(&info, &fmspc)?;
        let qe = self.qe;
        Ok((
            fmspc,
            modules,
            dcap_qvl::QuoteCollateralV3 {
                pck_crl_issuer_chain: self.pck_crl_issuer_chain,
                root_ca_crl: h(&self.root_ca_crl, "root CA CRL")?,
                pck_crl: h(&self.pck_crl, "PCK CRL")?,
                tcb_info_issuer_chain: self.tcb_info_issuer_chain,
                tcb_info: self.tcb_info,
                tcb_info_signature: h(&self.tcb_info_signature, "TCB info signature")?,
                qe_identity_signature: h(&qe.qe_identity_signature, "QE identity signature")?,
                qe_identity_issuer_chain: qe.qe_identity_issuer_chain,
                qe_identity: qe.qe_identity,
                pck_certificate_chain: None,
            },
        ))
    }
}

/// The FMSPC in a PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1.4), hex.
fn fmspc(pck: &x509_cert::Certificate) -> Option<String> {
    const FMSPC_OID: [u8; 12] = [
        0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x04,
    ];
    let ext = vouch_x509::extension(pck, "1.2.840.113741.1.13.1")?;
    let at = ext.windows(FMSPC_OID.len()).position(|w| w == FMSPC_OID)? + FMSPC_OID.len();
    match ext.get(at..at + 8)? {
        [0x04, 0x06, rest @ ..] => Some(hex::encode(rest)),
        _ => None,
    }
}

impl DcapVerifier {
    /// Trust `root` (DER), which must be self-signed.
    pub fn new(root: &[u8]) -> Result<Self, TeeError> {
        vouch_x509::parse_self_signed(root, "Intel root").map_err(TeeError::Chain)?;
        Ok(Self {
            root_der: root.to_vec(),
            chains: Default::default(),
            collateral: std::collections::BTreeMap::new(),
            tdx_modules: std::collections::BTreeMap::new(),
            qe_identities: std::collections::BTreeMap::new(),
            appraisals: Default::default(),
        })
    }

    /// Add collateral (the operator's offline store); returns the FMSPC it is for. Its QE
    /// identity, which Intel must have signed, also counts for quotes of other platforms
    /// ([`DcapVerifier::add_qe_identity`]).
    pub fn add_collateral(&mut self, c: Collateral) -> Result<String, TeeError> {
        self.add_qe_identity(&c.qe)?;
        let (fmspc, modules, qvl) = c.into_qvl()?;
        match modules {
            Some(m) => self.tdx_modules.insert(fmspc.clone(), m),
            None => self.tdx_modules.remove(&fmspc),
        };
        self.collateral.insert(fmspc.clone(), qvl);
        Ok(fmspc)
    }

    /// Add a QE identity Intel signed (the offline store's; checked by
    /// [`SignedQeIdentity::verify`] against this verifier's root). Quotes are then checked
    /// against the newest identity (by `issueDate`) of their quoting enclave instead of the
    /// built-in values. Returns which enclave it is for.
    pub fn add_qe_identity(&mut self, q: &SignedQeIdentity) -> Result<QeId, TeeError> {
        let identity = q.verify(&self.root_der)?;
        let id = identity.id();
        if self
            .qe_identities
            .get(&id)
            .is_none_or(|old| identity.newer_than(old))
        {
            self.qe_identities.insert(id, identity);
        }
        Ok(id)
    }

    /// The identity a quote's QE report must match: the store's newest, else built in.
    fn qe_identity(&self, id: QeId) -> std::borrow::Cow<'_, QeIdentity> {
        match self.qe_identities.get(&id) {
            Some(i) => std::borrow::Cow::Borrowed(i),
            None => std::borrow::Cow::Owned(QeIdentity::built_in(id)),
        }
    }

    /// Verify `quote` with certificates checked at `now` (Unix seconds).
    pub fn verify(&self, quote: &[u8], now: u64) -> Result<QuoteClaims, TeeError> {
        if quote.len() > MAX_QUOTE {
            return Err(malformed(format!("quote larger than {MAX_QUOTE} bytes")));
        }
        let mut r = Reader { b: quote, at: 0 };
        let version = r.u16("header")?;
        let att_key_type = r.u16("header")?;
        let tee_type = r.u32("header")?;
        let qe_svn = r.u16("header")?;
        let pce_svn = r.u16("header")?;
        r.take(HEADER_LEN - 12, "header")?;
        if !(3..=5).contains(&version) {
            return Err(malformed(format!("quote version {version} (3 to 5 known)")));
        }
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(malformed(format!(
                "attestation key type {att_key_type} (only 2, ECDSA P-256, is supported)"
            )));
        }
        let tee = match (version, tee_type) {
            (3, _) => TEE_SGX, // v3 has no TEE type: SGX only.
            (_, TEE_SGX | TEE_TDX) => tee_type,
            (_, t) => return Err(malformed(format!("TEE type 0x{t:x}"))),
        };
        let mut body_type = if tee == TEE_SGX { 1 } else { 2 };
        let body = match version {
            5 => {
                let kind = r.u16("body descriptor")?;
                let size = r.u32("body descriptor")? as usize;
                let expected = match kind {
                    1 => SGX_REPORT_LEN,
                    2 => TD_REPORT_V4_LEN,
                    3 => TD_REPORT_V5_LEN,
                    k => return Err(malformed(format!("body type {k}"))),
                };
                if size != expected || (kind == 1) != (tee == TEE_SGX) {
                    return Err(malformed(format!(
                        "body type {kind} of {size} bytes does not fit TEE type 0x{tee:x}"
                    )));
                }
                body_type = kind;
                r.take(size, "body")?
            }
            _ if tee == TEE_SGX => r.take(SGX_REPORT_LEN, "enclave report")?,
            _ => r.take(TD_REPORT_V4_LEN, "TD report")?,
        };
        let signed_len = r.at;
        let sig_len = r.u32("signature data length")? as usize;
        let sig_data = r.take(sig_len, "signature data")?;
        if quote[r.at..].iter().any(|b| *b != 0) {
            return Err(malformed("bytes after the quote that are not zero padding"));
        }
        let mut s = Reader { b: sig_data, at: 0 };
        let quote_sig = s.take(64, "quote signature")?;
        let att_key = s.take(64, "attestation key")?;
        // v3: the QE report follows directly; v4/v5: inside certification data type 6.
        let (qe_report, qe_sig, qe_auth, pck_chain) = if version == 3 {
            let qe_report = s.take(SGX_REPORT_LEN, "QE report")?;
            let qe_sig = s.take(64, "QE report signature")?;
            let auth_len = s.u16("QE auth data")? as usize;
            let auth = s.take(auth_len, "QE auth data")?;
            let chain = certification(&mut s, 5)?;
            (qe_report, qe_sig, auth, chain)
        } else {
            let outer = certification(&mut s, 6)?;
            let mut q = Reader { b: outer, at: 0 };
            let qe_report = q.take(SGX_REPORT_LEN, "QE report")?;
            let qe_sig = q.take(64, "QE report signature")?;
            let auth_len = q.u16("QE auth data")? as usize;
            let auth = q.take(auth_len, "QE auth data")?;
            let chain = certification(&mut q, 5)?;
            if q.at != outer.len() {
                return Err(malformed("bytes after the PCK chain in certification data"));
            }
            (qe_report, qe_sig, auth, chain)
        };
        if s.at != sig_data.len() {
            return Err(malformed("bytes after the certification data"));
        }

        // 2. The PCK chain: leaf first, root last, as PEM.
        let text = std::str::from_utf8(pck_chain)
            .map_err(|_| malformed("the PCK chain is not PEM text"))?
            .trim_end_matches('\0');
        let certs = vouch_x509::pem_certificates_strict(text)
            .map_err(|e| malformed(format!("PCK chain: {e}")))?;
        if certs.len() < 2 {
            return Err(TeeError::Chain(format!(
                "the PCK chain holds {} certificate(s)",
                certs.len()
            )));
        }
        let root = certs
            .last()
            .ok_or_else(|| TeeError::Chain("empty PCK chain".into()))?;
        if *root != self.root_der {
            return Err(TeeError::Chain(
                "the PCK chain does not end at the trusted Intel SGX Root CA".into(),
            ));
        }
        let parsed = certs
            .iter()
            .map(|d| vouch_x509::parse(d, "PCK chain"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TeeError::Chain)?;
        let ders: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
        if !self.chains.contains(&ders, now) {
            for (i, c) in parsed.iter().enumerate() {
                let issuer = parsed.get(i + 1).unwrap_or(c);
                vouch_x509::verify_signed_by(&certs[i], c, issuer).map_err(TeeError::Chain)?;
                vouch_x509::check_validity(c, now, if i == 0 { "PCK certificate" } else { "CA" })
                    .map_err(TeeError::Chain)?;
                if i > 0 && !vouch_x509::is_ca(c) {
                    return Err(TeeError::Chain(format!(
                        "{} in the PCK chain is not a CA",
                        c.tbs_certificate.subject
                    )));
                }
            }
            self.chains
                .insert(&ders, &parsed.iter().collect::<Vec<_>>());
        }
        let pck = &parsed[0];
        let pck_key = pck
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| TeeError::Chain("PCK key bit string".into()))?;

        // 3. The QE report, signed by the PCK key, binds the attestation key.
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pck_key)
            .verify(qe_report, qe_sig)
            .map_err(|_| {
                TeeError::Signature("the QE report is not signed by the PCK key".into())
            })?;
        let mut bound = att_key.to_vec();
        bound.extend_from_slice(qe_auth);
        let expect = digest(&SHA256, &bound);
        if &qe_report[320..352] != expect.as_ref() || qe_report[352..384].iter().any(|b| *b != 0) {
            return Err(TeeError::Mismatch(
                "the QE report does not bind this attestation key".into(),
            ));
        }

        // 4. The QE report is Intel's quoting enclave's (with or without collateral).
        let qe_id = if tee == TEE_SGX { QeId::Qe } else { QeId::TdQe };
        let expected_qe = self.qe_identity(qe_id);
        expected_qe.check(qe_report)?;

        // 5. The quote, signed by the attestation key.
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(att_key);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(&quote[..signed_len], quote_sig)
            .map_err(|_| {
                TeeError::Signature("the quote is not signed by its attestation key".into())
            })?;
        let fmspc = fmspc(pck);
        // The PCK certificate's TCB (CPUSVN, PCESVN) and PCE id, from its SGX extension.
        let ext = dcap_qvl::intel::parse_pck_extension(&certs[0])
            .map_err(|e| TeeError::Chain(format!("the PCK certificate's SGX extension: {e:#}")))?;
        let qe_isv_svn = u16::from_le_bytes([qe_report[258], qe_report[259]]);
        let (qe_svn, pce_svn) = if version == 3 {
            (qe_svn, pce_svn)
        } else {
            (qe_isv_svn, ext.pce_svn)
        };
        // 6. TDX: the TD report is Intel's TDX module's (the collateral's identity, or Intel's).
        let tdx_module_identity = if tee == TEE_TDX {
            let modules = fmspc.as_ref().and_then(|f| self.tdx_modules.get(f));
            Some(check_tdx_module(body, modules)?)
        } else {
            None
        };
        // 7. With collateral for this platform, the TCB status (dcap-qvl, same root). It depends
        // on the PCK chain, the QE report, the header and the body (all but its report data,
        // which changes with every nonce) and the collateral: an appraisal of the same inputs
        // is reused while the collateral stands (from when it was made to its next update).
        let collateral_used = fmspc
            .as_ref()
            .is_some_and(|f| self.collateral.contains_key(f));
        let (tcb_status, advisory_ids) = match fmspc.as_ref().and_then(|f| self.collateral.get(f)) {
            Some(c) => {
                let report_data_at = if tee == TEE_SGX { 320 } else { 520 };
                let key = vouch_x509::digest_parts(&[
                    pck_chain,
                    qe_report,
                    &quote[..HEADER_LEN],
                    &body[..report_data_at],
                    &body[report_data_at + 64..],
                    c.tcb_info.as_bytes(),
                    c.qe_identity.as_bytes(),
                    &c.pck_crl,
                    &c.root_ca_crl,
                ]);
                let cached = self
                    .appraisals
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&key).cloned())
                    .filter(|a| a.from <= now && now <= a.until);
                match cached {
                    Some(a) => (a.status, a.advisory_ids),
                    None => {
                        check_crls(c, &parsed, now)?;
                        let r = dcap_qvl::verify::QuoteVerifier::new(self.root_der.clone())
                            .allow_debug(true)
                            .verify(quote, c, now)
                            .map_err(|e| TeeError::Chain(format!("collateral appraisal: {e:#}")))?;
                        if let (Some(until), Ok(mut m)) =
                            (collateral_until(c), self.appraisals.lock())
                        {
                            if m.len() >= MAX_APPRAISALS {
                                m.clear();
                            }
                            m.insert(
                                key,
                                Appraised {
                                    status: r.status.clone(),
                                    advisory_ids: r.advisory_ids.clone(),
                                    from: now,
                                    until,
                                },
                            );
                        }
                        (r.status, r.advisory_ids)
                    }
                }
            }
            None => ("not judged (no collateral)".to_string(), Vec::new()),
        };
        Ok(QuoteClaims {
            version,
            body_type,
            qe_svn,
            pce_svn,
            pck_cpu_svn: hx(&ext.cpu_svn),
            pce_id: hx(&ext.pce_id),
            qe_vendor_id: hx(&quote[12..28]),
            user_data: hx(&quote[28..48]),
            qe_cpu_svn: hx(&qe_report[0..16]),
            qe_isv_prod_id: u16::from_le_bytes([qe_report[256], qe_report[257]]),
            body: if tee == TEE_SGX {
                sgx_body(body)
            } else {
                td_body(body)
            },
            qe_mr_signer: hx(&qe_report[128..160]),
            qe_identity: QeIdentityChecked {
                id: qe_id,
                source: expected_qe.source().clone(),
            },
            tdx_module_identity,
            pck_subject: pck.tbs_certificate.subject.to_string(),
            fmspc: fmspc.unwrap_or_default(),
            revocation_checked: collateral_used,
            tcb_status,
            advisory_ids,
        })
    }
}

/// Certification data: `type` (u16), `size` (u32), data; the type must be `want`.
fn certification<'a>(r: &mut Reader<'a>, want: u16) -> Result<&'a [u8], TeeError> {
    let kind = r.u16("certification data type")?;
    let size = r.u32("certification data size")? as usize;
    if kind != want {
        return Err(malformed(format!(
            "certification data type {kind}, expected {want}"
        )));
    }
    r.take(size, "certification data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appraisal_stands_until_the_earliest_next_update_of_its_collateral() {
        let c: Collateral = serde_json::from_slice(&vouch_testkit::read_testdata(
            "tdx/dcapqvl_tdx_quote_collateral.json",
        ))
        .unwrap_or_else(|e| {
            panic!("{e}");
        });
        let (fmspc, _, qvl) = c.into_qvl().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fmspc, "b0c06f000000");
        let until = collateral_until(&qvl).unwrap_or(0);
        // TCB info: nextUpdate 2025-07-19T10:16:03Z; the others are no earlier than mid-2025.
        assert!(until <= 1_752_920_163, "{until}");
        assert!(until > 1_750_809_600, "{until}");
    }
}

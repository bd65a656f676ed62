//! Who may vouch for a DCAP quote: the quoting enclave (QE) whose report the PCK key signed,
//! and, for TDX, the TDX module (SEAM) that made the TD report. Both are checked on every
//! quote, with or without collateral.
//!
//! Why: the Provisioning Certification Enclave signs, with the platform's PCK key, the report
//! of any enclave launched with the PROVISIONKEY attribute, and under flexible launch control
//! the platform owner decides which enclaves launch. The host of a TD is such an owner. A QE
//! of its own would get its attestation key certified like Intel's and could then sign any TD
//! report it likes: the PCK chain, the QE report's signature and binding, and the quote's
//! signature would all verify. Only the QE's identity tells the two apart: Intel's QEs are
//! signed by Intel (MRSIGNER), have a fixed product id and are never debug enclaves. The same
//! holds one level down for the TDX module, measured into the TD report by the CPU.
//!
//! The expected values come from Intel's published, signed identities (PCS `qe/identity`, the
//! `tdxModule` of a TDX TCB info) in the operator's offline store, or, when the store has
//! none, from the values Intel publishes for its production enclaves, built in here:
//!
//! | QE | id | MRSIGNER | ISVPRODID | ATTRIBUTES / mask |
//! |---|---|---|---|---|
//! | SGX QE3 | `QE` | `8c4f5775…90c57bff` | 1 | `11…00` / `fbffffffffffffff 00…00` |
//! | TDX QE | `TD_QE` | `dc9e2a7c…0e54a8c5` | 2 | the same |
//!
//! MISCSELECT must be 0 (mask `ffffffff`). The TDX module: MRSIGNERSEAM all zero (Intel's
//! module), SEAMATTRIBUTES zero under the mask `ffffffffffffffff`. These are the values of
//! Intel's signed identities in testdata (a `QE` identity and a `TD_QE` identity issued on
//! 2025-06-19, a TDX TCB info of the same day) and of every real quote there.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::TeeError;

/// Intel's SGX quoting enclave signer (`QE` identity).
const INTEL_QE_MRSIGNER: [u8; 32] =
    hex_32("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff");
/// Intel's TDX quoting enclave signer (`TD_QE` identity).
const INTEL_TD_QE_MRSIGNER: [u8; 32] =
    hex_32("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5");
/// ATTRIBUTES of Intel's QEs: INIT and PROVISIONKEY; the mask leaves out MODE64BIT and XFRM
/// but keeps DEBUG, so a debug QE never matches.
const INTEL_QE_ATTRIBUTES: [u8; 16] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const INTEL_QE_ATTRIBUTES_MASK: [u8; 16] = [
    0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// 32 bytes from 64 hex digits, at compile time.
const fn hex_32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0xff,
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (hi, lo) = (nibble(b[2 * i]), nibble(b[2 * i + 1]));
        assert!(hi < 16 && lo < 16);
        out[i] = hi << 4 | lo;
        i += 1;
    }
    out
}

/// Which of Intel's quoting enclaves a quote needs: the SGX QE (`QE`) or the TDX QE (`TD_QE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum QeId {
    /// The SGX quoting enclave (QE3), identity id `QE`.
    #[serde(rename = "QE")]
    Qe,
    /// The TDX quoting enclave, identity id `TD_QE`.
    #[serde(rename = "TD_QE")]
    TdQe,
}

impl QeId {
    /// The identity's `id` in Intel's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qe => "QE",
            Self::TdQe => "TD_QE",
        }
    }
}

/// Where the expected identity came from, as a quote's claims report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum IdentitySource {
    /// Intel's values for its production enclaves, built into Vouch (the store has none).
    BuiltIn,
    /// An identity Intel signed, from the offline store.
    Store {
        /// Its `issueDate` (RFC 3339).
        issue_date: String,
    },
    /// The TCB info of the platform's collateral (TDX module).
    Collateral {
        /// The FMSPC of the TCB info.
        fmspc: String,
    },
}

/// A quoting enclave identity: the fields of Intel's `enclaveIdentity` (version 2) that say
/// which enclave may produce QE reports. Its TCB levels are left to the collateral appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    id: QeId,
    mrsigner: [u8; 32],
    isvprodid: u16,
    miscselect: [u8; 4],
    miscselect_mask: [u8; 4],
    attributes: [u8; 16],
    attributes_mask: [u8; 16],
    issued: u64,
    source: IdentitySource,
}

/// Intel's `enclaveIdentity` JSON, the fields read here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnclaveIdentityJson {
    id: String,
    version: u32,
    issue_date: String,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
}

/// A QE identity as the offline store keeps it: the `qe_identity` JSON exactly as Intel signed
/// it, its ECDSA P-256 signature (hex, r ‖ s) and the PEM issuer chain (Intel SGX TCB Signing,
/// then the root). The fields and their encoding are those of a collateral file, so a
/// collateral file also holds one.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedQeIdentity {
    pub(super) qe_identity_issuer_chain: String,
    pub(super) qe_identity: String,
    pub(super) qe_identity_signature: String,
}

fn bad(m: impl std::fmt::Display) -> TeeError {
    TeeError::Malformed(format!("QE identity: {m}"))
}

/// `N` bytes from hex (either case).
pub(super) fn hex_n<const N: usize>(s: &str, what: &str) -> Result<[u8; N], TeeError> {
    let v = hex::decode(s).map_err(|_| TeeError::Malformed(format!("{what} is not hex")))?;
    v.try_into()
        .map_err(|_| TeeError::Malformed(format!("{what} is not {N} bytes")))
}

/// RFC 3339 time as Unix seconds.
pub(super) fn rfc3339(s: &str) -> Option<u64> {
    use std::str::FromStr as _;
    Some(
        x509_cert::der::DateTime::from_str(s)
            .ok()?
            .unix_duration()
            .as_secs(),
    )
}

impl QeIdentity {
    /// Intel's values for its production quoting enclave `id` (see the module docs).
    pub fn built_in(id: QeId) -> Self {
        Self {
            id,
            mrsigner: match id {
                QeId::Qe => INTEL_QE_MRSIGNER,
                QeId::TdQe => INTEL_TD_QE_MRSIGNER,
            },
            isvprodid: match id {
                QeId::Qe => 1,
                QeId::TdQe => 2,
            },
            miscselect: [0; 4],
            miscselect_mask: [0xff; 4],
            attributes: INTEL_QE_ATTRIBUTES,
            attributes_mask: INTEL_QE_ATTRIBUTES_MASK,
            issued: 0,
            source: IdentitySource::BuiltIn,
        }
    }

    /// Parse an `enclaveIdentity` JSON (version 2, id `QE` or `TD_QE`). Its signature is not
    /// checked here: see [`SignedQeIdentity::verify`].
    pub fn parse(json: &str) -> Result<Self, TeeError> {
        let j: EnclaveIdentityJson = serde_json::from_str(json).map_err(bad)?;
        if j.version != 2 {
            return Err(bad(format!("version {} (2 is known)", j.version)));
        }
        let id = match j.id.as_str() {
            "QE" => QeId::Qe,
            "TD_QE" => QeId::TdQe,
            other => {
                return Err(bad(format!(
                    "id {other:?} is not a quoting enclave's (QE or TD_QE)"
                )));
            }
        };
        let issued =
            rfc3339(&j.issue_date).ok_or_else(|| bad(format!("issueDate {:?}", j.issue_date)))?;
        Ok(Self {
            id,
            mrsigner: hex_n(&j.mrsigner, "QE identity mrsigner")?,
            isvprodid: j.isvprodid,
            miscselect: hex_n(&j.miscselect, "QE identity miscselect")?,
            miscselect_mask: hex_n(&j.miscselect_mask, "QE identity miscselectMask")?,
            attributes: hex_n(&j.attributes, "QE identity attributes")?,
            attributes_mask: hex_n(&j.attributes_mask, "QE identity attributesMask")?,
            issued,
            source: IdentitySource::Store {
                issue_date: j.issue_date,
            },
        })
    }

    /// The quoting enclave this identity is for.
    pub fn id(&self) -> QeId {
        self.id
    }

    /// Where it came from.
    pub fn source(&self) -> &IdentitySource {
        &self.source
    }

    /// Whether `self` was issued after `other` (the newer of two identities is used).
    pub(super) fn newer_than(&self, other: &Self) -> bool {
        self.issued > other.issued
    }

    /// Check a QE report (384 bytes, an SGX enclave report) against this identity: MRSIGNER,
    /// ISVPRODID, and MISCSELECT and ATTRIBUTES under their masks.
    pub fn check(&self, qe_report: &[u8]) -> Result<(), TeeError> {
        let field = |r: std::ops::Range<usize>| {
            qe_report
                .get(r)
                .ok_or_else(|| TeeError::Malformed("the QE report is truncated".into()))
        };
        let what = || match &self.source {
            IdentitySource::Store { issue_date } => format!(
                "Intel's {} identity issued {issue_date}, from the store",
                self.id.as_str()
            ),
            _ => format!("Intel's {} identity, built in", self.id.as_str()),
        };
        let mrsigner = field(128..160)?;
        if mrsigner != self.mrsigner {
            return Err(TeeError::Identity(format!(
                "the QE report's MRSIGNER {} is not Intel's quoting enclave signer {} ({}): the quote was not made by Intel's quoting enclave",
                hex::encode(mrsigner),
                hex::encode(self.mrsigner),
                what()
            )));
        }
        let prod = field(256..258)?;
        let prod = u16::from_le_bytes([prod[0], prod[1]]);
        if prod != self.isvprodid {
            return Err(TeeError::Identity(format!(
                "the QE report's ISVPRODID is {prod}, not {} ({})",
                self.isvprodid,
                what()
            )));
        }
        let masked = |v: &[u8], want: &[u8], mask: &[u8]| {
            v.iter()
                .zip(want)
                .zip(mask)
                .all(|((v, w), m)| v & m == w & m)
        };
        let misc = field(16..20)?;
        if !masked(misc, &self.miscselect, &self.miscselect_mask) {
            return Err(TeeError::Identity(format!(
                "the QE report's MISCSELECT {} does not match {} under the mask {} ({})",
                hex::encode(misc),
                hex::encode(self.miscselect),
                hex::encode(self.miscselect_mask),
                what()
            )));
        }
        let attrs = field(48..64)?;
        if !masked(attrs, &self.attributes, &self.attributes_mask) {
            return Err(TeeError::Identity(format!(
                "the QE report's ATTRIBUTES {} do not match {} under the mask {} ({}){}",
                hex::encode(attrs),
                hex::encode(self.attributes),
                hex::encode(self.attributes_mask),
                what(),
                if attrs[0] & 2 != 0 {
                    ": a debug quoting enclave"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }
}

impl SignedQeIdentity {
    /// Check that Intel signed the identity (the issuer chain's leaf made the signature over
    /// the JSON as stored; every certificate is signed by the next; the chain ends at `root`,
    /// byte for byte; the intermediates are CAs) and parse it. Validity windows are not
    /// checked: only the identity's fixed fields are used, never its TCB levels.
    pub fn verify(&self, root: &[u8]) -> Result<QeIdentity, TeeError> {
        let chain = vouch_x509::pem_certificates_strict(self.qe_identity_issuer_chain.trim())
            .map_err(|e| bad(format!("issuer chain: {e}")))?;
        let (Some(leaf), Some(last)) = (chain.first(), chain.last()) else {
            return Err(bad("empty issuer chain"));
        };
        if last != root {
            return Err(TeeError::Chain(
                "the QE identity's issuer chain does not end at the trusted Intel SGX Root CA"
                    .into(),
            ));
        }
        let parsed = chain
            .iter()
            .map(|d| vouch_x509::parse(d, "QE identity issuer"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TeeError::Chain)?;
        for (i, c) in parsed.iter().enumerate() {
            let issuer = parsed.get(i + 1).unwrap_or(c);
            vouch_x509::verify_signed_by(&chain[i], c, issuer).map_err(TeeError::Chain)?;
            if i > 0 && !vouch_x509::is_ca(c) {
                return Err(TeeError::Chain(format!(
                    "{} in the QE identity's issuer chain is not a CA",
                    c.tbs_certificate.subject
                )));
            }
        }
        let key = vouch_x509::parse(leaf, "QE identity signer")
            .map_err(TeeError::Chain)?
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| TeeError::Chain("QE identity signer key bit string".into()))?;
        let sig = hex::decode(self.qe_identity_signature.trim())
            .map_err(|_| bad("the signature is not hex"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
            .verify(self.qe_identity.as_bytes(), &sig)
            .map_err(|_| {
                TeeError::Signature("the QE identity is not signed by its issuer chain".into())
            })?;
        QeIdentity::parse(&self.qe_identity)
    }
}

/// The TDX module a TD report must come from: MRSIGNERSEAM, and SEAMATTRIBUTES under a mask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModuleIdentity {
    mrsigner: [u8; 48],
    attributes: [u8; 8],
    attributes_mask: [u8; 8],
}

impl ModuleIdentity {
    fn from_json(v: &serde_json::Value, what: &str) -> Result<Self, TeeError> {
        let s = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .ok_or_else(|| TeeError::Malformed(format!("collateral {what} has no {k}")))
        };
        Ok(Self {
            mrsigner: hex_n(s("mrsigner")?, &format!("collateral {what} mrsigner"))?,
            attributes: hex_n(s("attributes")?, &format!("collateral {what} attributes"))?,
            attributes_mask: hex_n(
                s("attributesMask")?,
                &format!("collateral {what} attributesMask"),
            )?,
        })
    }
}

/// The TDX module identities of one TDX TCB info: `tdxModule`, and `tdxModuleIdentities` by
/// id (`TDX_<module major version, hex>`), which take its place for that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TdxModules {
    fmspc: String,
    base: ModuleIdentity,
    by_id: Vec<(String, ModuleIdentity)>,
}

impl TdxModules {
    /// From a TCB info's JSON; `None` for an SGX TCB info (no `tdxModule`).
    pub(super) fn from_tcb_info(
        info: &serde_json::Value,
        fmspc: &str,
    ) -> Result<Option<Self>, TeeError> {
        let Some(base) = info.get("tdxModule") else {
            return Ok(None);
        };
        let mut by_id = Vec::new();
        for m in info
            .get("tdxModuleIdentities")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let id = m
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| TeeError::Malformed("a TDX module identity has no id".into()))?;
            by_id.push((
                id.to_ascii_uppercase(),
                ModuleIdentity::from_json(m, "tdxModuleIdentities")?,
            ));
        }
        Ok(Some(Self {
            fmspc: fmspc.to_string(),
            base: ModuleIdentity::from_json(base, "tdxModule")?,
            by_id,
        }))
    }
}

/// Check a TD report's TDX module against `modules` (the platform's TCB info) or, without
/// them, Intel's module (MRSIGNERSEAM zero, SEAMATTRIBUTES zero). The module identity for the
/// report's module version (`TEE_TCB_SVN[1]`, when not 0) replaces `tdxModule` and must be
/// in the TCB info. Bits outside the mask must be zero. Returns where the values came from.
pub(super) fn check_tdx_module(
    td_report: &[u8],
    modules: Option<&TdxModules>,
) -> Result<IdentitySource, TeeError> {
    let field = |r: std::ops::Range<usize>| {
        td_report
            .get(r)
            .ok_or_else(|| TeeError::Malformed("the TD report is truncated".into()))
    };
    let (tee_tcb_svn, mrsigner, attrs) = (field(0..16)?, field(64..112)?, field(112..120)?);
    let intel = ModuleIdentity {
        mrsigner: [0; 48],
        attributes: [0; 8],
        attributes_mask: [0xff; 8],
    };
    let (want, source) = match modules {
        None => (&intel, IdentitySource::BuiltIn),
        Some(m) => {
            let version = tee_tcb_svn[1];
            let want = if version == 0 {
                &m.base
            } else {
                let id = format!("TDX_{version:02X}");
                m.by_id
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        TeeError::Identity(format!(
                            "the TD report's TDX module version {version} has no identity ({id}) in the collateral's TCB info"
                        ))
                    })?
            };
            (
                want,
                IdentitySource::Collateral {
                    fmspc: m.fmspc.clone(),
                },
            )
        }
    };
    let whose = match &source {
        IdentitySource::Collateral { fmspc } => format!("the TCB info for FMSPC {fmspc}"),
        _ => "Intel's TDX module, built in".to_string(),
    };
    if mrsigner != want.mrsigner {
        return Err(TeeError::Identity(format!(
            "the TD report's MRSIGNERSEAM {} is not the TDX module signer {} ({whose})",
            hex::encode(mrsigner),
            hex::encode(want.mrsigner)
        )));
    }
    let ok = attrs
        .iter()
        .zip(&want.attributes)
        .zip(&want.attributes_mask)
        .all(|((a, w), m)| a & m == w & m && a & !m == 0);
    if !ok {
        return Err(TeeError::Identity(format!(
            "the TD report's SEAMATTRIBUTES {} do not match {} under the mask {} ({whose})",
            hex::encode(attrs),
            hex::encode(want.attributes),
            hex::encode(want.attributes_mask)
        )));
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_values_are_those_of_intels_signed_identities() {
        // The TD_QE identity Intel signed on 2025-06-19 (testdata/tdx collateral).
        let c: serde_json::Value = serde_json::from_slice(&vouch_testkit::read_testdata(
            "tdx/dcapqvl_tdx_quote_collateral.json",
        ))
        .unwrap_or_default();
        let signed: SignedQeIdentity =
            serde_json::from_value(c.clone()).unwrap_or_else(|e| panic!("{e}"));
        let root = vouch_testkit::read_testdata("tdx/intel_sgx_root_ca.der");
        let td = signed.verify(&root).unwrap_or_else(|e| panic!("{e}"));
        let mut built_in = QeIdentity::built_in(QeId::TdQe);
        built_in.issued = td.issued;
        built_in.source = td.source.clone();
        assert_eq!(td, built_in);
        // The QE identity of the same day (testdata/sgx collateral).
        let c: serde_json::Value = serde_json::from_slice(&vouch_testkit::read_testdata(
            "sgx/dcapqvl_sgx_quote_collateral.json",
        ))
        .unwrap_or_default();
        let signed: SignedQeIdentity = serde_json::from_value(c).unwrap_or_else(|e| panic!("{e}"));
        let qe = signed.verify(&root).unwrap_or_else(|e| panic!("{e}"));
        let mut built_in = QeIdentity::built_in(QeId::Qe);
        built_in.issued = qe.issued;
        built_in.source = qe.source.clone();
        assert_eq!(qe, built_in);
    }
}

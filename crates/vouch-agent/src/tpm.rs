//! The agent's TPM 2.0 side, through `tss-esapi`: EK (and its certificate from NV), an AK under
//! the EK whose blobs persist across restarts, quotes over chosen PCRs with a nonce binding, and
//! credential activation. Every operation opens its own ESAPI context on a blocking thread and
//! flushes every transient object before returning (swtpm has no resource manager).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, DefaultKey, ak, ek, pcr};
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, PcrSelectionListBuilder, PcrSlot, Private, Public,
    SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use vouch_tpm::{HashAlg, PcrValues};

use crate::AgentError;

/// How the agent reaches and uses its TPM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmConfig {
    /// TCTI: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, `tabrmd`.
    pub tcti: String,
    /// EK and AK algorithm: `rsa` (RSA-2048, RSASSA-SHA256) or `ecc` (P-256, ECDSA-SHA256).
    pub key_alg: String,
    /// SHA-256 PCRs to quote.
    pub pcrs: Vec<u8>,
    /// The IMA measurement list to send with quotes (PCR 10 must be quoted); the kernel's is
    /// `/sys/kernel/security/ima/ascii_runtime_measurements`.
    pub ima_log: Option<PathBuf>,
    /// The firmware event log to send with quotes; skipped when the file does not exist.
    pub eventlog: Option<PathBuf>,
    /// A persistent EK handle to use instead of creating the EK from its template. When unset,
    /// the TCG default for RSA (`0x81010001`) is used if it holds a key.
    #[serde(default)]
    pub ek_handle: Option<u32>,
}

impl Default for TpmConfig {
    fn default() -> Self {
        Self {
            tcti: "device:/dev/tpmrm0".into(),
            key_alg: "rsa".into(),
            pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14],
            ima_log: None,
            eventlog: Some(PathBuf::from(DEFAULT_EVENTLOG)),
            ek_handle: None,
        }
    }
}

/// Where Linux exposes the firmware's TCG event log.
pub const DEFAULT_EVENTLOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// TCG EK Credential Profile: the persistent handle of the RSA 2048 EK.
const RSA_EK_PERSISTENT: u32 = 0x8101_0001;

/// What enrollment needs from the TPM.
#[derive(Debug, Clone)]
pub struct TpmIdentity {
    /// EK public area (`TPM2B_PUBLIC`).
    pub ek_public: Vec<u8>,
    /// EK certificate (DER) from NV, when the manufacturer provisioned one.
    pub ek_cert: Option<Vec<u8>>,
    /// AK public area (`TPM2B_PUBLIC`).
    pub ak_public: Vec<u8>,
}

/// A quote and the PCR values it covers.
#[derive(Debug, Clone)]
pub struct TpmQuote {
    /// Marshalled `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// Marshalled `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// The PCR values read with the quote.
    pub pcrs: PcrValues,
}

fn tpm_err(what: &str) -> impl FnOnce(tss_esapi::Error) -> AgentError + '_ {
    move |e| AgentError::Config(format!("TPM: {what}: {e}"))
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { what, source }
}

/// The TPM of this machine, with the agent's AK blobs kept in `state_dir`.
#[derive(Debug, Clone)]
pub struct Tpm {
    cfg: TpmConfig,
    state_dir: PathBuf,
}

struct Loaded {
    ctx: Context,
    ek: KeyHandle,
    /// A persistent EK is closed, never flushed (flushing would not apply to it).
    ek_persistent: bool,
    ak: KeyHandle,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = self.ctx.flush_context(ObjectHandle::from(self.ak));
        if self.ek_persistent {
            let mut h = ObjectHandle::from(self.ek);
            let _ = self.ctx.tr_close(&mut h);
        } else {
            let _ = self.ctx.flush_context(ObjectHandle::from(self.ek));
        }
    }
}

fn tpm2b(inner: Vec<u8>) -> Vec<u8> {
    let mut v = (inner.len() as u16).to_be_bytes().to_vec();
    v.extend(inner);
    v
}

impl Tpm {
    /// A TPM handle; nothing is opened until an operation runs.
    pub fn new(cfg: TpmConfig, state_dir: &Path) -> Self {
        Self {
            cfg,
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// The EK: RSA-2048, or ECC P-384 (the curve whose EK certificate swtpm and most
    /// manufacturers provision, at NV index 0x01c00016).
    fn ek_selection(&self) -> AsymmetricAlgorithmSelection {
        match self.cfg.key_alg.as_str() {
            "ecc" => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
            _ => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        }
    }

    /// The AK: RSA-2048 RSASSA-SHA256, or ECC P-256 ECDSA-SHA256.
    fn ak_selection(&self) -> AsymmetricAlgorithmSelection {
        match self.cfg.key_alg.as_str() {
            "ecc" => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            _ => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        }
    }

    fn scheme(&self) -> SignatureSchemeAlgorithm {
        match self.cfg.key_alg.as_str() {
            "ecc" => SignatureSchemeAlgorithm::EcDsa,
            _ => SignatureSchemeAlgorithm::RsaSsa,
        }
    }

    fn context(&self) -> Result<Context, AgentError> {
        let tcti = TctiNameConf::from_str(&self.cfg.tcti)
            .map_err(|e| AgentError::Config(format!("TPM TCTI {:?}: {e}", self.cfg.tcti)))?;
        Context::new(tcti).map_err(tpm_err("opening the TPM"))
    }

    fn ak_paths(&self) -> (PathBuf, PathBuf) {
        let tag = &self.cfg.key_alg;
        (
            self.state_dir.join(format!("ak-{tag}.pub")),
            self.state_dir.join(format!("ak-{tag}.priv")),
        )
    }

    /// The persistent EK, when configured or present at the TCG default handle.
    fn persistent_ek(&self, ctx: &mut Context) -> Result<Option<KeyHandle>, AgentError> {
        use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
        let (handle, explicit) = match (self.cfg.ek_handle, self.cfg.key_alg.as_str()) {
            (Some(h), _) => (h, true),
            (None, "rsa") => (RSA_EK_PERSISTENT, false),
            (None, _) => return Ok(None),
        };
        let tpm_handle = PersistentTpmHandle::new(handle)
            .map(TpmHandle::Persistent)
            .map_err(tpm_err("persistent EK handle"))?;
        match ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle)) {
            Ok(h) => Ok(Some(KeyHandle::from(h))),
            Err(e) if explicit => Err(tpm_err("opening the configured persistent EK")(e)),
            Err(_) => Ok(None),
        }
    }

    /// Open the TPM, take the persistent EK or create it from its template, and load
    /// (creating once) the AK.
    fn load(&self) -> Result<Loaded, AgentError> {
        let mut ctx = self.context()?;
        let persistent = self.persistent_ek(&mut ctx)?;
        let ek_persistent = persistent.is_some();
        let ek = match persistent {
            Some(h) => h,
            None => ek::create_ek_object_2(&mut ctx, self.ek_selection(), DefaultKey)
                .map_err(tpm_err("creating the EK"))?,
        };
        let (pub_path, priv_path) = self.ak_paths();
        let (public, private) = match (std::fs::read(&pub_path), std::fs::read(&priv_path)) {
            (Ok(p), Ok(s)) => (
                Public::unmarshall(&p).map_err(tpm_err("reading the stored AK public area"))?,
                Private::try_from(s).map_err(tpm_err("reading the stored AK private blob"))?,
            ),
            _ => {
                let r = ak::create_ak_2(
                    &mut ctx,
                    ek,
                    HashingAlgorithm::Sha256,
                    self.ak_selection(),
                    self.scheme(),
                    None,
                    DefaultKey,
                );
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ctx.flush_context(ObjectHandle::from(ek));
                        return Err(tpm_err("creating the AK")(e));
                    }
                };
                std::fs::create_dir_all(&self.state_dir)
                    .map_err(io_err(format!("creating {}", self.state_dir.display())))?;
                let p = r
                    .out_public
                    .marshall()
                    .map_err(tpm_err("marshalling the AK"))?;
                std::fs::write(&pub_path, &p)
                    .map_err(io_err(format!("writing {}", pub_path.display())))?;
                std::fs::write(&priv_path, r.out_private.value())
                    .map_err(io_err(format!("writing {}", priv_path.display())))?;
                (r.out_public, r.out_private)
            }
        };
        match ak::load_ak(&mut ctx, ek, None, private, public) {
            Ok(ak) => Ok(Loaded {
                ctx,
                ek,
                ek_persistent,
                ak,
            }),
            Err(e) => {
                let _ = ctx.flush_context(ObjectHandle::from(ek));
                Err(tpm_err("loading the AK")(e))
            }
        }
    }

    /// EK public, EK certificate and AK public, for enrollment.
    pub fn identity(&self) -> Result<TpmIdentity, AgentError> {
        let mut l = self.load()?;
        let (ek_pub, _, _) = l.ctx.read_public(l.ek).map_err(tpm_err("reading the EK"))?;
        let (ak_pub, _, _) = l.ctx.read_public(l.ak).map_err(tpm_err("reading the AK"))?;
        let ek_cert = ek::retrieve_ek_pubcert(&mut l.ctx, self.ek_selection()).ok();
        Ok(TpmIdentity {
            ek_public: tpm2b(ek_pub.marshall().map_err(tpm_err("marshalling the EK"))?),
            ek_cert,
            ak_public: tpm2b(ak_pub.marshall().map_err(tpm_err("marshalling the AK"))?),
        })
    }

    /// The IMA log lines from entry `start` on (read after the quote: entries appended in
    /// between are left for the next round by the verifier's prefix replay).
    pub fn ima_slice(&self, start: u64) -> Result<Option<vouch_core::ImaSlice>, AgentError> {
        let Some(path) = &self.cfg.ima_log else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(io_err(format!("reading the IMA log {}", path.display())))?;
        let log: String = text
            .lines()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .flat_map(|l| [l, "\n"])
            .collect();
        Ok(Some(vouch_core::ImaSlice { start, log }))
    }

    /// The firmware event log, when configured and present.
    pub fn eventlog(&self) -> Result<Option<Vec<u8>>, AgentError> {
        let Some(path) = &self.cfg.eventlog else {
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(b) if b.len() > vouch_tpm::MAX_EVENT_LOG => Err(AgentError::Config(format!(
                "event log {} is {} bytes, more than the verifier accepts ({})",
                path.display(),
                b.len(),
                vouch_tpm::MAX_EVENT_LOG
            ))),
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading the event log {}", path.display()))(
                e,
            )),
        }
    }

    /// Quote the configured SHA-256 PCRs with `extra_data` and read their values.
    pub fn quote(&self, extra_data: &[u8]) -> Result<TpmQuote, AgentError> {
        let slots: Vec<PcrSlot> = self
            .cfg
            .pcrs
            .iter()
            .map(|i| {
                PcrSlot::try_from(1u32 << i)
                    .map_err(|e| AgentError::Config(format!("PCR {i}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let sel = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(tpm_err("PCR selection"))?;
        let mut l = self.load()?;
        let data = Data::try_from(extra_data.to_vec()).map_err(tpm_err("qualifying data"))?;
        let ak = l.ak;
        let (attest, sig) = l
            .ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.quote(ak, data, SignatureScheme::Null, sel.clone())
            })
            .map_err(tpm_err("quoting"))?;
        let read = pcr::read_all(&mut l.ctx, sel).map_err(tpm_err("reading PCRs"))?;
        let mut values = PcrValues::default();
        if let Some(bank) = read.pcr_bank(HashingAlgorithm::Sha256) {
            let b = values.0.entry(HashAlg::Sha256).or_default();
            for (slot, digest) in bank {
                let idx = (u32::from(*slot)).trailing_zeros() as u8;
                b.insert(idx, digest.value().to_vec());
            }
        }
        Ok(TpmQuote {
            attest: attest
                .marshall()
                .map_err(tpm_err("marshalling the quote"))?,
            signature: sig
                .marshall()
                .map_err(tpm_err("marshalling the signature"))?,
            pcrs: values,
        })
    }

    /// `TPM2_ActivateCredential` with the AK and the EK (authorised by PolicySecret on the
    /// endorsement hierarchy): returns the secret the verifier encrypted.
    pub fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, AgentError> {
        let strip = |b: &[u8]| -> Result<Vec<u8>, AgentError> {
            let n = b
                .get(..2)
                .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
                .ok_or_else(|| AgentError::Protocol("credential blob too short".into()))?;
            b.get(2..2 + n)
                .filter(|_| b.len() == 2 + n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| AgentError::Protocol("credential blob size mismatch".into()))
        };
        let id = IdObject::try_from(strip(id_object)?).map_err(tpm_err("credential blob"))?;
        let secret = EncryptedSecret::try_from(strip(encrypted_secret)?)
            .map_err(tpm_err("encrypted secret"))?;
        let mut l = self.load()?;
        // The EK's policy decides the session: the low-range templates use PolicyA
        // (PolicySecret(TPM_RH_ENDORSEMENT)) under SHA-256; the high-range ones (swtpm's and most
        // manufacturers' P-384 EK) use PolicyB = PolicyOR(PolicyA, PolicyC) under the EK's name
        // algorithm (TCG EK Credential Profile 2.5).
        let (ek_pub, _, _) = l.ctx.read_public(l.ek).map_err(tpm_err("reading the EK"))?;
        let hash = ek_pub.name_hashing_algorithm();
        let or_branches = ek_policy_or_branches(hash, ek_pub.auth_policy().value())?;
        let session = l
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                tss_esapi::constants::SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                hash,
            )
            .map_err(tpm_err("starting a policy session"))?
            .ok_or_else(|| AgentError::Config("TPM returned no session".into()))?;
        let policy = PolicySession::try_from(session).map_err(tpm_err("policy session"))?;
        let (ak, ek) = (l.ak, l.ek);
        let result = l
            .ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(tpm_err("PolicySecret(endorsement)"))
            .and_then(|_| match &or_branches {
                None => Ok(()),
                Some(list) => l
                    .ctx
                    .policy_or(policy, list.clone())
                    .map_err(tpm_err("PolicyOR(PolicyA, PolicyC)")),
            })
            .and_then(|_| {
                l.ctx
                    .execute_with_sessions(
                        (Some(AuthSession::Password), Some(session), None),
                        |ctx| ctx.activate_credential(ak, ek, id, secret),
                    )
                    .map_err(tpm_err("activating the credential"))
            });
        let _ = l.ctx.flush_context(SessionHandle::from(session).into());
        Ok(result?.value().to_vec())
    }
}

/// PolicyA (PolicySecret(TPM_RH_ENDORSEMENT)) and PolicyC (PolicyAuthorizeNV) digests for
/// SHA-384, from the TCG EK Credential Profile; PolicyB_SHA384 is their PolicyOR.
const POLICY_A_SHA384: [u8; 48] = [
    0x8b, 0xbf, 0x22, 0x66, 0x53, 0x7c, 0x17, 0x1c, 0xb5, 0x6e, 0x40, 0x3c, 0x4d, 0xc1, 0xd4, 0xb6,
    0x4f, 0x43, 0x26, 0x11, 0xdc, 0x38, 0x6e, 0x6f, 0x53, 0x20, 0x50, 0xc3, 0x27, 0x8c, 0x93, 0x0e,
    0x14, 0x3e, 0x8b, 0xb1, 0x13, 0x38, 0x24, 0xcc, 0xb4, 0x31, 0x05, 0x38, 0x71, 0xc6, 0xdb, 0x53,
];
const POLICY_C_SHA384: [u8; 48] = [
    0xd6, 0x03, 0x2c, 0xe6, 0x1f, 0x2f, 0xb3, 0xc2, 0x40, 0xeb, 0x3c, 0xf6, 0xa3, 0x32, 0x37, 0xef,
    0x2b, 0x6a, 0x16, 0xf4, 0x29, 0x3c, 0x22, 0xb4, 0x55, 0xe2, 0x61, 0xcf, 0xfd, 0x21, 0x7a, 0xd5,
    0xb4, 0x94, 0x7c, 0x2d, 0x73, 0xe6, 0x30, 0x05, 0xee, 0xd2, 0xdc, 0x2b, 0x35, 0x93, 0xd1, 0x65,
];

/// The PolicyOR branches an EK's policy needs after PolicySecret, or `None` when PolicySecret
/// alone satisfies it. The OR is derived, not assumed: PolicyOR over the two branches must
/// reproduce the EK's `authPolicy`, else the EK's policy is one this agent cannot satisfy.
fn ek_policy_or_branches(
    hash: HashingAlgorithm,
    auth_policy: &[u8],
) -> Result<Option<tss_esapi::structures::DigestList>, AgentError> {
    use sha2::Digest as _;
    const TPM_CC_POLICY_SECRET: [u8; 4] = 0x0000_0151u32.to_be_bytes();
    const TPM_CC_POLICY_OR: [u8; 4] = 0x0000_0171u32.to_be_bytes();
    const RH_ENDORSEMENT: [u8; 4] = 0x4000_000Bu32.to_be_bytes();
    let secret_sha256 = {
        let d =
            sha2::Sha256::digest([&[0u8; 32][..], &TPM_CC_POLICY_SECRET, &RH_ENDORSEMENT].concat());
        sha2::Sha256::digest(d).to_vec()
    };
    if hash == HashingAlgorithm::Sha256 && auth_policy == secret_sha256.as_slice() {
        return Ok(None);
    }
    if hash == HashingAlgorithm::Sha384 {
        let or = sha2::Sha384::digest(
            [
                &[0u8; 48][..],
                &TPM_CC_POLICY_OR,
                &POLICY_A_SHA384,
                &POLICY_C_SHA384,
            ]
            .concat(),
        );
        if auth_policy == or.as_slice() {
            let mut list = tss_esapi::structures::DigestList::new();
            for d in [POLICY_A_SHA384, POLICY_C_SHA384] {
                list.add(
                    tss_esapi::structures::Digest::try_from(d.to_vec())
                        .map_err(tpm_err("policy digest"))?,
                )
                .map_err(tpm_err("policy digest list"))?;
            }
            return Ok(Some(list));
        }
    }
    Err(AgentError::Config(format!(
        "the EK's authPolicy {} ({hash:?}) is not one of the TCG EK templates' policies",
        hex::encode(auth_policy)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ek_policies_of_the_tcg_templates_are_recognised() {
        // PolicyA_SHA256 (low-range templates): PolicySecret alone.
        let a256 = hex::decode("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
            .unwrap_or_default();
        assert!(matches!(
            ek_policy_or_branches(HashingAlgorithm::Sha256, &a256),
            Ok(None)
        ));
        // PolicyB_SHA384 (high-range P-384): the OR of PolicyA and PolicyC.
        let b384 = hex::decode(
            "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12",
        )
        .unwrap_or_default();
        assert!(matches!(
            ek_policy_or_branches(HashingAlgorithm::Sha384, &b384),
            Ok(Some(l)) if l.len() == 2
        ));
        // Anything else is refused with the policy named.
        let e = ek_policy_or_branches(HashingAlgorithm::Sha384, &[0u8; 48]);
        assert!(matches!(e, Err(AgentError::Config(m)) if m.contains("authPolicy")));
    }
}

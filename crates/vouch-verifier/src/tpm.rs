//! Per-node TPM state for appraisal: the context `tpm` and `composite` evidence is verified
//! with (the activated AK, the last accepted clock, the IMA replay position and lists), and the
//! rule that a TPM-bound node attests with its TPM.

use vouch_core::{ErrorKind, EvidenceKind};
use vouch_evidence::TpmContext;
use vouch_policy::ReferenceValues;
use vouch_tpm::{Ak, HashAlg, QuotePolicy, RH_ENDORSEMENT, TpmtPublic, qualified_name};

use crate::{Verifier, VerifyError};

impl Verifier {
    /// A TPM-bound node (`bound`) attests with its TPM: evidence of another kind (`software`, `tee`,
    /// `sample`) is refused unless a `tpm_fallback` reference value, keyed by the node id or
    /// `*`, names that kind.
    pub fn require_tpm(
        bound: bool,
        node_id: &str,
        kind: EvidenceKind,
        refs: &ReferenceValues,
    ) -> Result<(), VerifyError> {
        let allowed = || {
            refs.values.iter().any(|v| {
                v.kind == "tpm_fallback"
                    && (v.key == node_id || v.key == "*")
                    && v.value == kind.as_str()
            })
        };
        if !bound || allowed() {
            return Ok(());
        }
        Err(VerifyError::new(
            ErrorKind::TpmRequired,
            format!(
                "node {node_id} is bound to a TPM: it attests with `tpm` or `composite` \
                 evidence, not `{kind}` (to accept `{kind}` from it, add the reference value \
                 `tpm_fallback {node_id} {kind}`)",
                kind = kind.as_str()
            ),
        ))
    }

    /// The TPM context for `tpm` evidence from `node_id`: only an activated AK counts.
    pub async fn tpm_context(
        &self,
        node_id: &str,
        refs: &ReferenceValues,
    ) -> Result<Option<TpmContext>, VerifyError> {
        let rec = match self.store.tpm_key(node_id).await? {
            Some(r) if r.activated_at.is_some() => r,
            _ => return Ok(None),
        };
        let bad = |e: vouch_tpm::TpmError| {
            VerifyError::new(ErrorKind::Internal, format!("stored TPM key: {e}"))
        };
        let ek = TpmtPublic::from_tpm2b(&rec.ek_public).map_err(bad)?;
        let ak_public = TpmtPublic::from_tpm2b(&rec.ak_public).map_err(bad)?;
        let parent = qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name());
        let ak = Ak::from_public(&ak_public, &parent).map_err(bad)?;
        let mut policy = QuotePolicy::default();
        if self.cfg.tpm_allow_sha1 {
            policy.allowed_hashes.push(HashAlg::Sha1);
        }
        let mut ima_allow = std::collections::BTreeMap::<String, Vec<String>>::new();
        let mut ima_deny = std::collections::BTreeMap::new();
        for v in &refs.values {
            match v.kind.as_str() {
                "ima_allow" => ima_allow
                    .entry(v.key.clone())
                    .or_default()
                    .push(v.value.to_ascii_lowercase()),
                "ima_deny" => {
                    ima_deny.insert(v.key.to_ascii_lowercase(), v.value.clone());
                }
                _ => {}
            }
        }
        Ok(Some(TpmContext {
            ak,
            ak_name: ak_public.name(),
            last_clock: rec
                .last_clock
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
            policy,
            ek_issuer: rec.ek_issuer,
            ima_state: rec
                .ima_state
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok()),
            ima_allow,
            ima_deny,
        }))
    }
}

//! TPM enrollment: EK certificate, AK attributes, and credential activation binding the AK to
//! the EK; and the per-node TPM context `tpm` evidence is verified with.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use vouch_core::ErrorKind;
use vouch_core::wire::{
    TpmActivateRequest, TpmActivateResponse, TpmEnrollRequest, TpmEnrollResponse,
    tpm_enroll_signing_input,
};
use vouch_evidence::{TpmContext, verify_ed25519};
use vouch_store::{AgentKeyRecord, TpmKeyRecord};
use vouch_tpm::{Ak, HashAlg, QuotePolicy, RH_ENDORSEMENT, TpmtPublic, qualified_name};

use crate::ApiError;
use crate::keys::random_bytes;
use crate::state::{State, unix_now};

/// Seconds a credential-activation challenge stays open.
const CHALLENGE_TTL: u64 = 300;

fn enroll_err(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::TpmEnrollment, m)
}

fn b64(s: &str, what: &str, limit: usize) -> Result<Vec<u8>, ApiError> {
    if s.len() > limit.div_ceil(3) * 4 {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            format!("{what} larger than {limit} bytes"),
        ));
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|_| {
        ApiError::new(
            ErrorKind::MalformedRequest,
            format!("{what} is not base64url"),
        )
    })
}

fn parent_qn(ek: &TpmtPublic) -> Vec<u8> {
    qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name())
}

impl State {
    async fn tpm_caller(
        &self,
        key_id: &str,
        msg: &[u8],
        sig: &str,
    ) -> Result<AgentKeyRecord, ApiError> {
        let key = self.store.agent_key(key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!(
                    "key {:?} is not enrolled; enroll the agent with a join token first",
                    vouch_core::clip(key_id, 64)
                ),
            )
        })?;
        if !verify_ed25519(&key.public_key, msg, sig) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "TPM enrollment request is not signed by the agent key it names",
            ));
        }
        Ok(key)
    }

    /// Validate a TPM and answer with a credential only it can activate.
    pub(crate) async fn enroll_tpm(
        &self,
        req: TpmEnrollRequest,
    ) -> Result<TpmEnrollResponse, ApiError> {
        let msg = tpm_enroll_signing_input(
            &req.key_id,
            &[
                &req.ek_public,
                req.ek_cert.as_deref().unwrap_or(""),
                &req.ak_public,
            ],
        );
        let key = self.tpm_caller(&req.key_id, &msg, &req.signature).await?;
        let ek = TpmtPublic::from_tpm2b(&b64(&req.ek_public, "ek_public", 1024)?)
            .map_err(|e| enroll_err(format!("EK public area: {e}")))?;
        let ak = TpmtPublic::from_tpm2b(&b64(&req.ak_public, "ak_public", 1024)?)
            .map_err(|e| enroll_err(format!("AK public area: {e}")))?;
        ak.check_ak_attributes()
            .map_err(|e| enroll_err(e.to_string()))?;
        let now = unix_now();
        let cert = match &req.ek_cert {
            Some(c) => Some(b64(c, "ek_cert", 16 * 1024)?),
            None => None,
        };
        let ek_issuer = match (&self.ek_trust, &cert) {
            (Some(trust), Some(c)) => Some(
                trust
                    .verify(c, &ek, now)
                    .map_err(|e| enroll_err(e.to_string()))?
                    .issuer,
            ),
            _ if self.cfg.tpm_allow_uncertified_ek => None,
            (None, _) => {
                return Err(enroll_err(
                    "no trusted TPM manufacturer CA is configured (tpm_ca_dir), so no EK can be validated",
                ));
            }
            (Some(_), None) => {
                return Err(enroll_err(
                    "the TPM presented no EK certificate; it cannot be tied to a manufacturer",
                ));
            }
        };
        let secret = random_bytes::<32>();
        let made = vouch_tpm::make_credential(&ek, &ak.name(), &secret, &random_bytes::<32>())
            .map_err(|e| enroll_err(e.to_string()))?;
        let ak_qn = qualified_name(ak.name_alg, &parent_qn(&ek), &ak.name());
        self.store
            .put_tpm_enrollment(&TpmKeyRecord {
                node_id: key.node_id.clone(),
                ek_public: b64(&req.ek_public, "ek_public", 1024)?,
                ek_cert: cert,
                ek_issuer,
                ak_public: b64(&req.ak_public, "ak_public", 1024)?,
                ak_qualified_name: ak_qn,
                challenge_hash: Some(hex::encode(Sha256::digest(secret))),
                challenge_expires: Some(now + CHALLENGE_TTL),
                activated_at: None,
                last_clock: None,
                ima_state: None,
                created_at: now,
            })
            .await?;
        tracing::info!(node = %key.node_id, "TPM enrollment: credential challenge issued");
        Ok(TpmEnrollResponse {
            credential_blob: URL_SAFE_NO_PAD.encode(&made.id_object),
            encrypted_secret: URL_SAFE_NO_PAD.encode(&made.encrypted_secret),
            expires_at: now + CHALLENGE_TTL,
        })
    }

    /// Complete credential activation: the AK is bound to the EK from now on.
    pub(crate) async fn activate_tpm(
        &self,
        req: TpmActivateRequest,
    ) -> Result<TpmActivateResponse, ApiError> {
        let msg = tpm_enroll_signing_input(&req.key_id, &[&req.secret]);
        let key = self.tpm_caller(&req.key_id, &msg, &req.signature).await?;
        let rec = self.store.tpm_key(&key.node_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::TpmNotEnrolled,
                "no TPM enrollment in progress for this node",
            )
        })?;
        let (Some(hash), Some(expires)) = (&rec.challenge_hash, rec.challenge_expires) else {
            return Err(enroll_err(
                "no credential challenge is open; enroll the TPM again",
            ));
        };
        if unix_now() > expires {
            return Err(enroll_err(
                "the credential challenge expired; enroll the TPM again",
            ));
        }
        let secret = b64(&req.secret, "secret", 64)?;
        let got = hex::encode(Sha256::digest(&secret));
        if verify_slices_are_equal(got.as_bytes(), hash.as_bytes()).is_err() {
            return Err(enroll_err(
                "credential activation failed: the secret is wrong (not the TPM holding this EK, or not this AK)",
            ));
        }
        self.store.activate_tpm(&key.node_id, unix_now()).await?;
        let ak = TpmtPublic::from_tpm2b(&rec.ak_public).map_err(|e| enroll_err(e.to_string()))?;
        tracing::info!(node = %key.node_id, "TPM AK activated");
        Ok(TpmActivateResponse {
            ak_name: hex::encode(ak.name()),
        })
    }

    /// The TPM context for `tpm` evidence from `node_id`: only an activated AK counts.
    pub(crate) async fn tpm_context(
        &self,
        node_id: &str,
        refs: &vouch_policy::ReferenceValues,
    ) -> Result<Option<TpmContext>, ApiError> {
        let rec = match self.store.tpm_key(node_id).await? {
            Some(r) if r.activated_at.is_some() => r,
            _ => return Ok(None),
        };
        let bad = |e: vouch_tpm::TpmError| {
            ApiError::new(ErrorKind::Internal, format!("stored TPM key: {e}"))
        };
        let ek = TpmtPublic::from_tpm2b(&rec.ek_public).map_err(bad)?;
        let ak_public = TpmtPublic::from_tpm2b(&rec.ak_public).map_err(bad)?;
        let ak = Ak::from_public(&ak_public, &parent_qn(&ek)).map_err(bad)?;
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

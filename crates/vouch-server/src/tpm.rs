//! TPM enrollment: EK certificate, AK attributes, and credential activation binding the AK to
//! the EK; the node's TPM binding, which is sticky (another EK or AK only through an admin
//! re-enrolment, one EK for one node, no fallback to evidence without a quote unless the policy
//! allows it); and the per-node TPM context `tpm` evidence is verified with.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use vouch_core::ErrorKind;
use vouch_core::wire::{
    TpmActivateRequest, TpmActivateResponse, TpmEnrollRequest, TpmEnrollResponse,
    tpm_enroll_signing_input,
};
use vouch_evidence::verify_ed25519;
use vouch_store::{AgentKeyRecord, Store, StoreError, TpmKeyRecord, TpmReenrollment};
use vouch_tpm::{RH_ENDORSEMENT, TpmtPublic, qualified_name};

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

/// What binds an EK to one node: the SHA-256 of its key material (hex), the same however its
/// public area is written.
fn ek_key(ek: &TpmtPublic) -> String {
    hex::encode(ek.key_fingerprint())
}

/// The AK's TPM name (hex), for messages and the record; empty when the stored area is bad.
fn ak_name_hex(ak_public: &[u8]) -> String {
    TpmtPublic::from_tpm2b(ak_public)
        .map(|ak| hex::encode(ak.name()))
        .unwrap_or_default()
}

/// Let the TPM-bound node `node_id` enroll another EK or AK until `now + ttl` (or until an AK is
/// activated under it), and record who decided it and why: `vouch node reenroll` and
/// `POST /v1/nodes/{id}/tpm/reenroll`. A node with no TPM binding needs none.
pub async fn allow_tpm_reenrollment(
    store: &dyn Store,
    node_id: &str,
    reason: &str,
    by: &str,
    ttl: u64,
    now: u64,
) -> Result<TpmReenrollment, ApiError> {
    if reason.trim().is_empty() || reason.len() > 1024 || by.len() > 256 {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            "a re-enrolment needs a reason (at most 1024 bytes) and a decider (at most 256)",
        ));
    }
    let rec = store
        .tpm_key(node_id)
        .await?
        .filter(|r| r.bound_at.is_some())
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "node {:?} is not bound to a TPM; its agent enrolls one without a re-enrolment",
                    vouch_core::clip(node_id, 64)
                ),
            )
        })?;
    let grant = TpmReenrollment {
        id: uuid::Uuid::new_v4().to_string(),
        node_id: node_id.to_string(),
        reason: reason.to_string(),
        requested_by: by.to_string(),
        created_at: now,
        expires_at: now.saturating_add(ttl),
        previous_ek: rec.ek_key.clone(),
        previous_ak: Some(ak_name_hex(&rec.ak_public)).filter(|n| !n.is_empty()),
        used_at: None,
        ek_key: None,
    };
    store.add_tpm_reenrollment(&grant).await?;
    tracing::warn!(
        node = %node_id, by = %by, reason = %reason, until = grant.expires_at,
        "TPM re-enrolment allowed: the node may enroll another EK or AK"
    );
    Ok(grant)
}

/// Record the EK key of enrollments made before it was recorded, so that they count for "one
/// EK, one node". One that cannot be recorded (its EK is bound to another node too) is
/// logged and left out.
pub(crate) async fn record_missing_ek_keys(store: &dyn Store) -> Result<(), StoreError> {
    for rec in store.tpm_keys_without_ek_key().await? {
        let Ok(ek) = TpmtPublic::from_tpm2b(&rec.ek_public) else {
            tracing::error!(node = %rec.node_id, "stored EK public area does not parse");
            continue;
        };
        if let Err(e) = store.set_tpm_ek_key(&rec.node_id, &ek_key(&ek)).await {
            tracing::error!(node = %rec.node_id, "recording the EK of an earlier enrollment: {e}");
        }
    }
    Ok(())
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
        let ek_public = b64(&req.ek_public, "ek_public", 1024)?;
        let ak_public = b64(&req.ak_public, "ak_public", 1024)?;
        let ek = TpmtPublic::from_tpm2b(&ek_public)
            .map_err(|e| enroll_err(format!("EK public area: {e}")))?;
        let ak = TpmtPublic::from_tpm2b(&ak_public)
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
        let ek_key = ek_key(&ek);
        self.check_tpm_binding(&key.node_id, &ek_key, &ek_public, &ak_public, now)
            .await?;
        let secret = random_bytes::<32>();
        let made = vouch_tpm::make_credential(&ek, &ak.name(), &secret, &random_bytes::<32>())
            .map_err(|e| enroll_err(e.to_string()))?;
        let ak_qn = qualified_name(ak.name_alg, &parent_qn(&ek), &ak.name());
        self.store
            .put_tpm_enrollment(&TpmKeyRecord {
                node_id: key.node_id.clone(),
                ek_public,
                ek_cert: cert,
                ek_issuer,
                ak_public,
                ak_qualified_name: ak_qn,
                challenge_hash: Some(hex::encode(Sha256::digest(secret))),
                challenge_expires: Some(now + CHALLENGE_TTL),
                activated_at: None,
                last_clock: None,
                ima_state: None,
                created_at: now,
                ek_key: Some(ek_key),
                bound_at: None,
            })
            .await?;
        tracing::info!(node = %key.node_id, "TPM enrollment: credential challenge issued");
        Ok(TpmEnrollResponse {
            credential_blob: URL_SAFE_NO_PAD.encode(&made.id_object),
            encrypted_secret: URL_SAFE_NO_PAD.encode(&made.encrypted_secret),
            expires_at: now + CHALLENGE_TTL,
        })
    }

    /// The binding rules an enrollment of `ek_key` (public area `ek_public`) and `ak_public`
    /// for `node_id` must keep: a TPM-bound node enrolls its own EK and AK again, anything
    /// else only under an open admin re-enrolment; an EK bound to another node is refused
    /// (the store enforces that too, at enrollment and at activation).
    async fn check_tpm_binding(
        &self,
        node_id: &str,
        ek_key: &str,
        ek_public: &[u8],
        ak_public: &[u8],
        now: u64,
    ) -> Result<(), ApiError> {
        if let Some(cur) = self.store.tpm_key(node_id).await?
            && cur.bound_at.is_some()
        {
            let same_ek = match &cur.ek_key {
                Some(k) => k == ek_key,
                None => cur.ek_public == ek_public,
            };
            let same = same_ek && cur.ak_public == ak_public;
            let allowed = || self.store.open_tpm_reenrollment(node_id, now);
            if !same && allowed().await?.is_none() {
                let what = if same_ek { "AK" } else { "TPM (EK)" };
                return Err(ApiError::new(
                    ErrorKind::TpmBound,
                    format!(
                        "node {node_id} is bound to its TPM (EK key {}, AK {}); another {what} \
                         needs an admin re-enrolment first: `vouch node reenroll {node_id} --reason …`",
                        cur.ek_key.as_deref().unwrap_or("unrecorded"),
                        ak_name_hex(&cur.ak_public),
                    ),
                ));
            }
        }
        if let Some(holder) = self.store.tpm_node_for_ek(ek_key).await?
            && holder != node_id
        {
            return Err(ApiError::new(
                ErrorKind::TpmEkInUse,
                format!(
                    "this TPM's EK is bound to node {holder}; one TPM attests for one node \
                     (revoking node {holder} frees it)"
                ),
            ));
        }
        Ok(())
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
}

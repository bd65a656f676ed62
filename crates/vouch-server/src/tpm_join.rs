//! Zero-touch TPM node attestation (issue 14, node attestation method `tpm`): a node whose TPM
//! holds an EK certificate chaining to a trusted manufacturer CA (`tpm_ca_dir`) joins without a
//! join token.
//!
//! `POST /v1/tpm/join` carries the agent's new key, the EK public area, the EK certificate
//! (required: an uncertified EK never joins without a token, whatever
//! `tpm_allow_uncertified_ek` says) and the AK public area, signed by the new key. The verifier
//! checks the certificate chain and that it certifies this EK, derives the node id from the EK
//! (`node_id_for("tpm:ek:<ek_key>")`) and answers with `TPM2_MakeCredential` for the AK's name.
//! Nothing of the node is written then: the challenge is held in the store's `tpm_joins` (at
//! most [`MAX_OPEN`], one per EK, each until it expires after the verifier's `nonce_ttl`), so
//! any replica sharing the store can complete it. `POST /v1/tpm/join/activate` brings the
//! secret back; a correct secret proves the AK lives in the TPM that holds the EK, and only then
//! are the node, its agent key and its TPM binding written, in one transaction
//! ([`vouch_store::Store::enroll_attested_tpm`]). A challenge is taken by its first activation,
//! right or wrong. The same machine joining again (re-installed) is the same node: its new key
//! takes over and the old one is revoked, since possession of the TPM is proven live each
//! time.

use std::sync::atomic::Ordering;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use vouch_core::ErrorKind;
use vouch_core::wire::{
    TpmJoinActivateRequest, TpmJoinActivateResponse, TpmJoinRequest, TpmJoinResponse,
    tpm_join_signing_input,
};
use vouch_evidence::verify_ed25519;
use vouch_store::{AttestedNode, TpmJoinRecord, TpmKeyRecord};
use vouch_tpm::{RH_ENDORSEMENT, TpmtPublic, qualified_name};

use crate::ApiError;
use crate::keys::random_bytes;
use crate::state::{State, unix_now};

/// The most TPM joins the verifiers of one store hold open at once; more are refused as
/// overloaded until some are activated or expire.
pub(crate) const MAX_OPEN: u64 = 1024;

/// The node attestation method's name in `node_attestors`.
pub(crate) const METHOD: &str = "tpm";

fn join_err(m: impl Into<String>) -> ApiError {
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

/// The EK issuer's name as a selector value: the DN as the certificate writes it (RFC 4514),
/// with whitespace, control characters and `%` percent-encoded, since selector values hold no
/// spaces (`CN=Infineon OPTIGA(TM) RSA Manufacturing CA 003,...` becomes
/// `CN=Infineon%20OPTIGA(TM)%20RSA...`); `None` when longer than a selector value may be.
pub(crate) fn issuer_selector_value(dn: &str) -> Option<String> {
    let mut out = String::with_capacity(dn.len());
    for c in dn.chars() {
        if c.is_whitespace() || c.is_control() || c == '%' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    (!out.is_empty() && out.len() <= 256).then_some(out)
}

/// The stable key a TPM node's id derives from: its EK's key fingerprint.
pub(crate) fn node_key(ek_key: &str) -> String {
    format!("tpm:ek:{ek_key}")
}

impl State {
    fn check_tpm_join_accepted(&self) -> Result<(), ApiError> {
        if self.cfg.accepts_node_attestor(METHOD) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorKind::NodeAttestation,
            format!(
                "this verifier does not accept TPM joins without a join token (node_attestors: {}; \
                 add \"tpm\" to accept them)",
                self.cfg.node_attestors.join(", ")
            ),
        ))
    }

    /// `POST /v1/tpm/join`: validate the EK certificate and answer with a credential only the
    /// TPM holding that EK can activate, for that AK. Writes nothing.
    pub(crate) async fn tpm_join(&self, req: TpmJoinRequest) -> Result<TpmJoinResponse, ApiError> {
        self.check_tpm_join_accepted()?;
        if req.hostname.len() > 255 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "hostname over 255 bytes",
            ));
        }
        let pk = crate::state::agent_public_key(&req.public_key)?;
        let msg = tpm_join_signing_input(
            "join",
            &req.public_key,
            &[&req.hostname, &req.ek_public, &req.ek_cert, &req.ak_public],
        );
        if !verify_ed25519(&pk, &msg, &req.signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "TPM join request is not signed by the key it enrolls",
            ));
        }
        let ek_public = b64(&req.ek_public, "ek_public", 1024)?;
        let ak_public = b64(&req.ak_public, "ak_public", 1024)?;
        let cert = b64(&req.ek_cert, "ek_cert", 16 * 1024)?;
        if cert.is_empty() {
            return Err(join_err(
                "the TPM presented no EK certificate: an EK that no manufacturer certified never \
                 joins without a join token",
            ));
        }
        let ek = TpmtPublic::from_tpm2b(&ek_public)
            .map_err(|e| join_err(format!("EK public area: {e}")))?;
        let ak = TpmtPublic::from_tpm2b(&ak_public)
            .map_err(|e| join_err(format!("AK public area: {e}")))?;
        ak.check_ak_attributes()
            .map_err(|e| join_err(e.to_string()))?;
        let trust = self.ek_trust.as_ref().ok_or_else(|| {
            join_err(
                "no trusted TPM manufacturer CA is configured (tpm_ca_dir), so no EK can be validated",
            )
        })?;
        let now = unix_now();
        let info = trust
            .verify(&cert, &ek, now)
            .map_err(|e| join_err(e.to_string()))?;
        let ek_key = hex::encode(ek.key_fingerprint());
        let node_id = vouch_nodeattest::node_id_for(&node_key(&ek_key));
        // Refusals the activation would meet anyway, answered before the TPM does any work.
        if self.store.revocation("node", &node_id).await?.is_some() {
            return Err(ApiError::new(
                ErrorKind::Revoked,
                format!("node {node_id} (this TPM's EK) was revoked; it cannot join again"),
            ));
        }
        if let Some(holder) = self.store.tpm_node_for_ek(&ek_key).await?
            && holder != node_id
        {
            return Err(ApiError::new(
                ErrorKind::TpmEkInUse,
                format!(
                    "this TPM's EK is bound to node {holder} (enrolled with a join token); one \
                     TPM attests for one node (revoking node {holder} frees it)"
                ),
            ));
        }
        let secret = random_bytes::<32>();
        let made = vouch_tpm::make_credential(&ek, &ak.name(), &secret, &random_bytes::<32>())
            .map_err(|e| join_err(e.to_string()))?;
        let parent = qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name());
        let expires = now.saturating_add(self.cfg.nonce_ttl);
        let challenge_id = URL_SAFE_NO_PAD.encode(random_bytes::<16>());
        let join = TpmJoinRecord {
            id: challenge_id.clone(),
            ek_key,
            node_id: node_id.clone(),
            public_key: pk,
            hostname: req.hostname,
            ek_public,
            ek_cert: cert,
            ek_issuer: info.issuer,
            ak_public,
            ak_qualified_name: qualified_name(ak.name_alg, &parent, &ak.name()),
            secret_hash: hex::encode(Sha256::digest(secret)),
            expires_at: expires,
        };
        if !self.store.open_tpm_join(&join, MAX_OPEN, now).await? {
            return Err(ApiError::new(
                ErrorKind::Overloaded,
                format!("{MAX_OPEN} TPM joins are waiting for activation; retry later"),
            ));
        }
        tracing::info!(node = %node_id, "TPM join: credential challenge issued");
        Ok(TpmJoinResponse {
            challenge_id,
            node_id,
            credential_blob: URL_SAFE_NO_PAD.encode(&made.id_object),
            encrypted_secret: URL_SAFE_NO_PAD.encode(&made.encrypted_secret),
            expires_at: expires,
        })
    }

    /// `POST /v1/tpm/join/activate`: check the recovered secret; on success create (or take
    /// over) the node, enroll the agent key and bind the TPM, together.
    pub(crate) async fn tpm_join_activate(
        &self,
        req: TpmJoinActivateRequest,
    ) -> Result<TpmJoinActivateResponse, ApiError> {
        self.check_tpm_join_accepted()?;
        let now = unix_now();
        if req.challenge_id.len() > 64 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "challenge_id over 64 bytes",
            ));
        }
        let p = self
            .store
            .take_tpm_join(&req.challenge_id)
            .await?
            .ok_or_else(|| {
                join_err(
                    "no such TPM join challenge: unknown, expired (and swept), already used (each \
                     is taken by its first activation), or replaced by a newer join of the same \
                     TPM; join again",
                )
            })?;
        if now > p.expires_at {
            return Err(join_err("the TPM join challenge expired; join again"));
        }
        let msg = tpm_join_signing_input(
            "activate",
            &URL_SAFE_NO_PAD.encode(&p.public_key),
            &[&req.challenge_id, &req.secret],
        );
        if !verify_ed25519(&p.public_key, &msg, &req.signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "TPM join activation is not signed by the key that joined",
            ));
        }
        let secret = b64(&req.secret, "secret", 64)?;
        let got = hex::encode(Sha256::digest(&secret));
        if verify_slices_are_equal(got.as_bytes(), p.secret_hash.as_bytes()).is_err() {
            tracing::warn!(node = %p.node_id, "TPM join: credential activation failed");
            return Err(join_err(
                "credential activation failed: the secret is wrong (not the TPM holding this EK, \
                 or not this AK); join again",
            ));
        }
        let node = AttestedNode {
            node_id: p.node_id.clone(),
            method: METHOD.into(),
            node_key: node_key(&p.ek_key),
            selectors: std::iter::once(format!("tpm:ek:{}", p.ek_key))
                .chain(issuer_selector_value(&p.ek_issuer).map(|v| format!("tpm:ek_issuer:{v}")))
                .collect(),
            hostname: p.hostname,
            reattestable: true,
        };
        let binding = TpmKeyRecord {
            node_id: p.node_id,
            ek_public: p.ek_public,
            ek_cert: Some(p.ek_cert),
            ek_issuer: Some(p.ek_issuer),
            ak_public: p.ak_public,
            ak_qualified_name: p.ak_qualified_name,
            challenge_hash: None,
            challenge_expires: None,
            activated_at: Some(now),
            last_clock: None,
            ima_state: None,
            created_at: now,
            ek_key: Some(p.ek_key),
            bound_at: Some(now),
        };
        if self
            .store
            .revocation("node", &binding.node_id)
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorKind::Revoked,
                format!("node {} was revoked while it joined", binding.node_id),
            ));
        }
        let ak_name = TpmtPublic::from_tpm2b(&binding.ak_public)
            .map(|ak| hex::encode(ak.name()))
            .map_err(|e| ApiError::new(ErrorKind::Internal, format!("stored AK: {e}")))?;
        let e = self
            .store
            .enroll_attested_tpm(&node, &p.public_key, &binding, now)
            .await?;
        self.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %e.node_id, key = %e.key_id, "node joined through its TPM");
        Ok(TpmJoinActivateResponse {
            node_id: e.node_id,
            key_id: e.key_id,
            ak_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_names_become_selector_values_without_spaces() {
        assert_eq!(
            issuer_selector_value(
                "CN=Infineon OPTIGA(TM) RSA Manufacturing CA 003,O=Infineon Technologies AG"
            )
            .as_deref(),
            Some(
                "CN=Infineon%20OPTIGA(TM)%20RSA%20Manufacturing%20CA%20003,O=Infineon%20Technologies%20AG"
            )
        );
        assert_eq!(
            issuer_selector_value("CN=a%b\tc\u{a0}").as_deref(),
            Some("CN=a%25b%09c%C2%A0")
        );
        assert_eq!(issuer_selector_value(&"x".repeat(257)), None);
        assert_eq!(issuer_selector_value(""), None);
    }
}

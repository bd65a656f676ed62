//! Zero-touch node attestation (`POST /v1/node/attest`): a node joins on a document its
//! platform signed (a Kubernetes projected service-account token, a cloud instance identity
//! document) instead of a join token. Each method is a [`vouch_nodeattest::NodeAttestor`]
//! configured in `[node_attestor.<method>]` and accepted only when listed in
//! `node_attestors`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;
use std::sync::atomic::Ordering;

use vouch_core::ErrorKind;
use vouch_core::wire::{EnrollResponse, NodeAttestRequest, node_attest_signing_input};
use vouch_evidence::verify_ed25519;
use vouch_nodeattest::{NodeAttestation, NodeAttestor};

use crate::ApiError;
use crate::state::{State, unix_now};

/// The document attestors a verifier's configuration accepts, by method.
pub(crate) type NodeAttestors = std::collections::BTreeMap<String, Box<dyn NodeAttestor>>;

/// Build the attestors `cfg.node_attestors` lists (the verifier's own methods, `join_token`
/// and `tpm`, need none); an unknown method or a listed method without settings is a
/// configuration error at start-up, not a refusal at the first node.
pub(crate) fn build(cfg: &crate::ServerConfig) -> Result<NodeAttestors, String> {
    let mut out = NodeAttestors::new();
    for m in &cfg.node_attestors {
        if !vouch_nodeattest::METHODS.contains(&m.as_str()) {
            return Err(format!(
                "node_attestors: unknown method {m:?} (known: {})",
                vouch_nodeattest::METHODS.join(", ")
            ));
        }
        if m == "join_token" || m == "tpm" {
            continue;
        }
        let settings = cfg.node_attestor.get(m).ok_or_else(|| {
            format!("node_attestors lists {m}, but there is no [node_attestor.{m}] table")
        })?;
        let a = vouch_nodeattest::from_config(m, settings).map_err(|e| e.to_string())?;
        out.insert(m.clone(), a);
    }
    for m in cfg.node_attestor.keys() {
        if !cfg.node_attestors.contains(m) {
            tracing::warn!(
                "[node_attestor.{m}] is configured but {m} is not in node_attestors: nodes cannot join with it"
            );
        }
    }
    Ok(out)
}

fn refused(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::NodeAttestation, m)
}

impl State {
    /// `POST /v1/node/attest`: verify the agent's proof of its key and the nonce, the
    /// document with its method's attestor, and enroll the key for the node the document
    /// names.
    pub(crate) async fn attest_node(
        &self,
        req: NodeAttestRequest,
    ) -> Result<EnrollResponse, ApiError> {
        let attestor = self.node_attestors.get(&req.method).ok_or_else(|| {
            refused(format!(
                "this verifier does not accept node attestation method {:?} (node_attestors: {})",
                vouch_core::clip(&req.method, 32),
                self.cfg.node_attestors.join(", ")
            ))
        })?;
        if req.hostname.len() > 255
            || req.data.len() > vouch_nodeattest::MAX_DATA * 4 / 3 + 4
            || req.nonce.len() > 256
        {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                format!(
                    "hostname over 255 bytes, nonce over 256 or data over {} bytes",
                    vouch_nodeattest::MAX_DATA
                ),
            ));
        }
        let pk = crate::state::agent_public_key(&req.public_key)?;
        let data = URL_SAFE_NO_PAD.decode(&req.data).map_err(|_| {
            ApiError::new(
                ErrorKind::MalformedRequest,
                "data must be the document in base64url without padding",
            )
        })?;
        if !verify_ed25519(
            &pk,
            &node_attest_signing_input(
                &req.method,
                &req.data,
                &req.public_key,
                &req.hostname,
                &req.nonce,
            ),
            &req.signature,
        ) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "node attestation signature does not verify: the agent must sign with the key it enrolls",
            ));
        }
        let now = unix_now();
        // The document first (no store write for a forged one), then the nonce is used up.
        let id = attestor
            .attest(
                &NodeAttestation {
                    data: &data,
                    nonce: &req.nonce,
                    audience: &self.cfg.audience,
                },
                now,
            )
            .map_err(|e| refused(e.to_string()))?;
        self.verifier.spend_nonce(&req.nonce, now).await?;
        let node = vouch_store::AttestedNode {
            node_id: vouch_nodeattest::node_id_for(&id.key),
            method: req.method.clone(),
            node_key: id.key.clone(),
            selectors: id.selectors,
            hostname: id.hostname.unwrap_or(req.hostname),
            reattestable: id.reattestable,
        };
        let e = self.store.enroll_attested(&node, &pk, now).await?;
        self.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            node = %e.node_id,
            key = %e.key_id,
            method = %req.method,
            document = %hex::encode(&sha2::Sha256::digest(&data)[..8]),
            "node attested"
        );
        Ok(EnrollResponse {
            node_id: e.node_id,
            key_id: e.key_id,
        })
    }
}

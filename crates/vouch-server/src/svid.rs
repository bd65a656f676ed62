//! Workload identities: X.509-SVIDs only for workloads attested affirming, for the SPIFFE IDs
//! their registration entries grant.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use vouch_core::ErrorKind;
use vouch_core::wire::{IssuedSvid, SvidRequest, SvidResponse, svid_signing_input};
use vouch_evidence::verify_ed25519;
use vouch_identity::{Selector, SpiffeId};

use crate::ApiError;
use crate::state::{State, unix_now};

impl State {
    fn ca(&self) -> Result<&vouch_identity::SvidCa, ApiError> {
        self.svid_ca
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no SPIFFE CA configured"))
    }

    /// `POST /v1/svid`
    pub(crate) async fn issue_svids(&self, req: SvidRequest) -> Result<SvidResponse, ApiError> {
        let key = self.store.agent_key(&req.key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!("key {:?} is not enrolled", req.key_id),
            )
        })?;
        let msg = svid_signing_input(&req.key_id, &req.workload, &req.public_key, &req.selectors);
        if !verify_ed25519(&key.public_key, &msg, &req.signature) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "SVID request is not signed by the agent key it names",
            ));
        }
        if req.selectors.len() > 64 || req.public_key.len() > 2048 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "request too large",
            ));
        }
        let spki = URL_SAFE_NO_PAD.decode(&req.public_key).map_err(|_| {
            ApiError::new(ErrorKind::MalformedRequest, "public_key is not base64url")
        })?;
        let mut available = Vec::new();
        for s in &req.selectors {
            let sel = Selector::parse(s)
                .map_err(|e| ApiError::new(ErrorKind::MalformedRequest, e.to_string()))?;
            if sel.kind != "unix" {
                return Err(ApiError::new(
                    ErrorKind::MalformedRequest,
                    format!("an agent may report unix selectors only, not {sel}"),
                ));
            }
            available.push(sel);
        }
        // The verifier's own word about the node and workload.
        let workload_id = format!("{}/{}", key.node_id, req.workload);
        let w = self.store.workload(&workload_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotAttested,
                format!("workload {workload_id} has never been attested"),
            )
        })?;
        let now = unix_now();
        if w.status != "affirming" || w.deadline.is_some_and(|d| d < now) {
            return Err(ApiError::new(
                ErrorKind::NotAttested,
                format!(
                    "workload {workload_id} is {} ({}); it gets no identity",
                    w.status, w.reason
                ),
            ));
        }
        for s in [
            format!("vouch:node:{}", key.node_id),
            format!("vouch:workload:{}", req.workload),
            "vouch:status:affirming".to_string(),
        ] {
            available.push(
                Selector::parse(&s)
                    .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?,
            );
        }
        let entries = self.store.entries().await?;
        let matched = vouch_identity::matching(&entries, &available);
        if matched.is_empty() {
            return Err(ApiError::new(
                ErrorKind::NoIdentity,
                format!(
                    "no registration entry matches workload {workload_id} with selectors {:?}",
                    req.selectors
                ),
            ));
        }
        let ca = self.ca()?;
        let mut svids = Vec::new();
        for e in matched {
            let id = SpiffeId::parse(&e.spiffe_id)
                .map_err(|err| ApiError::new(ErrorKind::Internal, err.to_string()))?;
            let ttl = e.ttl.min(self.cfg.svid_ttl);
            let der = ca
                .issue(&id, &spki, ttl, now)
                .map_err(|err| ApiError::new(ErrorKind::MalformedRequest, err.to_string()))?;
            svids.push(IssuedSvid {
                spiffe_id: id.to_string(),
                x509_svid: URL_SAFE_NO_PAD.encode(der),
                expires_at: now + ttl,
            });
        }
        tracing::info!(workload = %workload_id, count = svids.len(), "X.509-SVIDs issued");
        Ok(SvidResponse {
            svids,
            bundle: vec![URL_SAFE_NO_PAD.encode(ca.cert_der())],
        })
    }

    /// The SPIFFE bundle of the trust domain.
    pub(crate) fn spiffe_bundle(&self) -> Result<serde_json::Value, ApiError> {
        let ca = self.ca()?;
        Ok(vouch_identity::bundle_jwks(&[ca.cert_der()], &[], 1, 300))
    }
}

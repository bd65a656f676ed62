//! Shared verifier state and the attestation pipeline: verify, check freshness, appraise, sign,
//! record.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use vouch_core::wire::{
    AttestRequest, AttestationResult, ChallengeResponse, EnrollRequest, EnrollResponse,
    enroll_signing_input,
};
use vouch_core::{ArStatus, Ear, ErrorKind, NonceKey};
use vouch_evidence::verify_ed25519;
use vouch_store::Store;
use vouch_verifier::Verifier;

use crate::keys::{Keyring, random_bytes};
use crate::{ApiError, ServerConfig};

pub use vouch_verifier::unix_now;

pub(crate) use crate::telemetry::Metrics;

/// An agent's Ed25519 public key as enrollment requests carry it: base64url, raw 32 bytes.
pub(crate) fn agent_public_key(b64: &str) -> Result<Vec<u8>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::MalformedRequest,
                "public_key must be a base64url raw 32-byte Ed25519 key",
            )
        })
}

/// Everything a request handler needs.
pub struct State {
    pub(crate) cfg: ServerConfig,
    pub(crate) store: Arc<dyn Store>,
    /// The appraisal pipeline.
    pub(crate) verifier: Verifier,
    pub(crate) keyring: RwLock<Arc<Keyring>>,
    pub(crate) keys_dir: PathBuf,
    /// The ML-DSA-65 key that co-signs results (`pq_signatures`), when on.
    pub(crate) pq_key: Option<Arc<crate::keys::PqKey>>,
    /// Bundles of federated trust domains, by trust domain SPIFFE ID.
    pub(crate) federated:
        RwLock<std::collections::BTreeMap<String, crate::federation::FederatedBundle>>,
    /// Bearer token of the management API.
    pub(crate) admin_token: String,
    /// The bearer credential of the read-only views.
    pub(crate) read_token: String,
    /// The tenant this state serves (`default` for the verifier's own data directory).
    pub(crate) tenant: String,
    /// Every tenant's scoped API tokens (one table, shared by the tenants' states).
    pub(crate) api_tokens: Arc<crate::auth::ApiTokens>,
    pub(crate) metrics: Metrics,
    pub(crate) ek_trust: Option<vouch_tpm::EkTrustStore>,
    pub(crate) svid_ca: Option<std::sync::RwLock<vouch_identity::CaSet>>,
    /// This replica's certificate for its active signing key (`x5c` of what it signs).
    pub(crate) replica_cert: Mutex<Option<crate::revocation::ReplicaCert>>,
    /// Revocation records as signed for the feed under `replica_cert`, kept.
    pub(crate) signed_records: crate::revocation::SignedRecords,
    pub(crate) jwt_signer: Option<vouch_identity::JwtSvidSigner>,
    /// This verifier's share of the trust domain's quorum key, when results need a quorum.
    pub(crate) quorum: Option<crate::quorum::Quorum>,
    /// Registration entries, indexed, kept current from the store's change log.
    pub(crate) entries: crate::entries::Entries,
    /// The zero-touch node attestors `node_attestors` accepts, by method.
    pub(crate) node_attestors: crate::node::NodeAttestors,
    /// The fleet anomaly detector (issue 16 item 5).
    pub(crate) anomalies: Arc<crate::anomaly::Anomalies>,
    /// The image signature checker (`[image_signatures]`), for the admission webhook.
    pub(crate) images: Option<Arc<crate::images::ImageSignatures>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("audience", &self.cfg.audience)
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn new(
        cfg: ServerConfig,
        store: Arc<dyn Store>,
        nonce_keys: Vec<NonceKey>,
        tee_roots: Option<vouch_tee::TeeRoots>,
        keyring: Keyring,
        keys_dir: PathBuf,
    ) -> Self {
        let verifier = Verifier::new(cfg.verifier_config(), store.clone(), nonce_keys, tee_roots);
        Self {
            cfg,
            store,
            verifier,
            keyring: RwLock::new(Arc::new(keyring)),
            keys_dir,
            pq_key: None,
            admin_token: String::new(),
            read_token: String::new(),
            tenant: crate::auth::DEFAULT_TENANT.to_string(),
            api_tokens: Arc::default(),
            federated: RwLock::new(std::collections::BTreeMap::new()),
            metrics: Metrics::default(),
            ek_trust: None,
            svid_ca: None,
            replica_cert: Mutex::new(None),
            signed_records: Default::default(),
            jwt_signer: None,
            quorum: None,
            entries: crate::entries::Entries::default(),
            node_attestors: crate::node::NodeAttestors::new(),
            anomalies: Arc::new(crate::anomaly::Anomalies::new(Default::default())),
            images: None,
        }
    }

    pub(crate) fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn reload_keys(&self) {
        match Keyring::load(&self.keys_dir) {
            Ok(k) if k.active().is_some() => {
                *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(k);
                tracing::info!("result-signing keys reloaded");
            }
            Ok(_) => {
                tracing::error!("key reload found no active signing key; keeping the old keys")
            }
            Err(e) => tracing::error!("key reload failed, keeping the old keys: {e}"),
        }
    }

    /// Issue a nonce.
    pub(crate) fn challenge(&self) -> ChallengeResponse {
        self.metrics.challenges.fetch_add(1, Ordering::Relaxed);
        self.verifier.challenge(unix_now(), random_bytes::<32>())
    }

    /// Enroll an agent key with a join token.
    pub(crate) async fn enroll(&self, req: EnrollRequest) -> Result<EnrollResponse, ApiError> {
        if !self.cfg.accepts_node_attestor("join_token") {
            return Err(ApiError::new(
                ErrorKind::NodeAttestation,
                format!(
                    "this verifier does not accept join tokens (node_attestors: {})",
                    self.cfg.node_attestors.join(", ")
                ),
            ));
        }
        let pk = agent_public_key(&req.public_key)?;
        if req.hostname.len() > 255 || req.join_token.len() > 256 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "hostname or join_token too long",
            ));
        }
        if !verify_ed25519(
            &pk,
            &enroll_signing_input(&req.join_token, &req.public_key),
            &req.signature,
        ) {
            return Err(ApiError::new(
                ErrorKind::EvidenceSignature,
                "enrollment signature does not verify: the agent must sign with the key it enrolls",
            ));
        }
        let token_hash = hex::encode(Sha256::digest(req.join_token.as_bytes()));
        let e = self
            .store
            .enroll(&token_hash, &pk, &req.hostname, unix_now())
            .await?;
        self.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %e.node_id, key = %e.key_id, host = %req.hostname, "agent enrolled");
        Ok(EnrollResponse {
            node_id: e.node_id,
            key_id: e.key_id,
        })
    }

    /// Round one of a quorum result at this verifier: appraise the evidence independently and
    /// commit only when the proposed result is the one its own appraisal gives.
    pub(crate) async fn quorum_commit(
        &self,
        c: crate::quorum::CommitRequest,
    ) -> Result<crate::quorum::CommitResponse, ApiError> {
        let q = self.quorum.as_ref().ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, "this verifier is not a quorum member")
        })?;
        if c.session.is_empty() || c.session.len() > 64 || c.signing_input.len() > 64 * 1024 {
            return Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "session id of 1-64 bytes and a signing input under 64 KiB",
            ));
        }
        let (header, payload) = c.signing_input.split_once('.').ok_or_else(|| {
            ApiError::new(
                ErrorKind::MalformedRequest,
                "signing input is not header.payload",
            )
        })?;
        if header != q.keys.header() {
            return Err(ApiError::new(
                ErrorKind::QuorumDisagrees,
                "the proposed header is not this quorum group's",
            ));
        }
        let proposed: Ear = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::MalformedRequest,
                    "proposed claims are not an EAR",
                )
            })?;
        let now = unix_now();
        let own = self.verifier.appraise(&c.request, now).await?;
        crate::quorum::same_verdict(
            &proposed,
            own.ear(),
            now,
            self.cfg.clock_skew,
            self.cfg.result_ttl,
        )?;
        q.commit(&c.session, own.nonce_id(), &c.signing_input)
    }

    /// Appraise one attestation, sign its result (and gather the quorum's signature when
    /// this trust domain has one), record it.
    pub(crate) async fn attest(&self, req: AttestRequest) -> Result<AttestationResult, ApiError> {
        let kind = req.evidence.kind;
        let r = self.attest_timed(req).await;
        self.metrics
            .attestation(kind, &self.tenant, r.as_ref().ok().map(|r| r.status));
        r
    }

    /// [`State::attest`], each stage timed into the metrics.
    async fn attest_timed(&self, req: AttestRequest) -> Result<AttestationResult, ApiError> {
        use crate::telemetry::Stage;
        let appraised = self.appraise_observed(&req).await?;
        self.metrics.stage(Stage::Verify, appraised.verify_time);
        if let Some(t) = appraised.policy_time {
            self.metrics.stage(Stage::Policy, t);
        }
        let quorum_result = match &self.quorum {
            Some(q) => {
                let signing_input = format!(
                    "{}.{}",
                    q.keys.header(),
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(appraised.ear()).unwrap_or_default())
                );
                match q
                    .coordinate(&req, appraised.nonce_id(), &signing_input)
                    .await
                {
                    Ok(jws) => Some(jws),
                    Err(e) if q.settings.required => return Err(e),
                    Err(e) => {
                        tracing::warn!("no quorum result: {}", e.message);
                        None
                    }
                }
            }
            None => None,
        };
        let started = std::time::Instant::now();
        let jwt = self.sign_result(appraised.ear())?;
        self.metrics.stage(Stage::Sign, started.elapsed());
        let started = std::time::Instant::now();
        let result = self.verifier.record(appraised, jwt).await?;
        self.metrics.stage(Stage::Store, started.elapsed());
        let result_pq = self.cosign_pq(&result.result)?;
        let quorum_result_pq = match &quorum_result {
            Some(q) => self.cosign_pq(q)?,
            None => None,
        };
        Ok(AttestationResult {
            quorum_result,
            quorum_result_pq,
            result_pq,
            next_nonce: Some(self.challenge()),
            entries_revision: self
                .store
                .revision(vouch_store::ENTRIES_REVISION)
                .await
                .ok(),
            ..result
        })
    }

    /// With `pq_signatures`: the result `compact` with this verifier's ML-DSA-65 signature
    /// added (JWS JSON, [`vouch_core::jws`]).
    pub(crate) fn cosign_pq(&self, compact: &str) -> Result<Option<String>, ApiError> {
        match &self.pq_key {
            Some(k) => k
                .cosign(compact)
                .map(Some)
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string())),
            None => Ok(None),
        }
    }

    /// Sign result claims with the active key, its replica certificate in `x5c`.
    fn sign_result(&self, ear: &Ear) -> Result<String, ApiError> {
        let keyring = self.keyring();
        let signing = keyring
            .active()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no active result-signing key"))?;
        let cert = self.replica_cert(signing)?;
        signing
            .sign_jws("JWT", &cert.chain, ear)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
    }

    /// Look up a recorded result and say whether it still stands.
    pub(crate) async fn result(&self, id: &str) -> Result<AttestationResult, ApiError> {
        let rec =
            self.store.attestation(id).await?.ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("no attestation {id}"))
            })?;
        let status = ArStatus::parse(&rec.status).unwrap_or(ArStatus::None);
        let workload = self.store.workload(&rec.workload_id).await?;
        let now = unix_now();
        let latest = workload
            .as_ref()
            .is_some_and(|w| w.last_attestation_id.as_deref() == Some(id));
        let standing = workload
            .as_ref()
            .is_some_and(|w| w.status != ArStatus::Contraindicated.as_str())
            && self.store.revocation("result", id).await?.is_none();
        let result_pq = self.cosign_pq(&rec.result)?;
        Ok(AttestationResult {
            result_pq,
            attestation_id: rec.id,
            workload_id: rec.workload_id,
            status,
            result: rec.result,
            issued_at: rec.created_at,
            expires_at: rec.expires_at,
            policy: format!("policy:{}/v{}", rec.policy_id, rec.policy_version),
            reasons: rec.reasons,
            valid: status != ArStatus::Contraindicated
                && latest
                && standing
                && now < rec.expires_at,
            ima_position: None,
            quorum_result: None,
            quorum_result_pq: None,
            entries_revision: None,
            held_parts: Default::default(),
            next_nonce: None,
        })
    }
}

/// The trust domain's CA set under `data_dir/spiffe`: file keys, or the active key in a
/// PKCS#11 token.
pub(crate) fn open_ca_set(
    cfg: &crate::ServerConfig,
    td: &vouch_identity::TrustDomain,
    now: u64,
) -> Result<vouch_identity::CaSet, vouch_identity::IdentityError> {
    let dir = cfg.spiffe_dir();
    match &cfg.svid_ca_pkcs11 {
        Some(p) => {
            let active = vouch_identity::SvidCa::open_pkcs11(p, &dir, td, cfg.svid_ca_ttl, now)?;
            vouch_identity::CaSet::around(&dir, td, active)
        }
        None => vouch_identity::CaSet::load_or_create(&dir, td, cfg.svid_ca_ttl, now),
    }
}

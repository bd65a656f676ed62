//! Shared verifier state and the attestation pipeline: verify, check freshness, appraise, sign,
//! record.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use vouch_core::wire::{
    AttestRequest, AttestationResult, ChallengeResponse, EnrollRequest, EnrollResponse,
    enroll_signing_input,
};
use vouch_core::{
    ArStatus, EAR_PROFILE, Ear, ErrorKind, Nonce, NonceKey, SUBMOD_NAME, Submod, VerifierId,
};
use vouch_evidence::{Signer, VerifyContext, verifier_for, verify_ed25519};
use vouch_policy::{DEFAULT_POLICY_ID, PolicyCache, PolicySource, ReferenceValues};
use vouch_store::{AttestationRecord, Store};

use crate::keys::{Keyring, random_bytes};
use crate::{ApiError, ServerConfig};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub challenges: AtomicU64,
    pub enrollments: AtomicU64,
    pub results: [AtomicU64; 4],
    pub refusals: Mutex<BTreeMap<&'static str, u64>>,
    pub overdue: AtomicU64,
    /// Connections accepted (and given a slot).
    pub connections: AtomicU64,
    /// Connections closed at once because the server, or their client, held its maximum.
    pub connections_refused: AtomicU64,
}

impl Metrics {
    pub fn refused(&self, kind: ErrorKind) {
        let mut m = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(kind.as_str()).or_default() += 1;
    }

    pub fn result(&self, s: ArStatus) {
        let i = match s {
            ArStatus::None => 0,
            ArStatus::Affirming => 1,
            ArStatus::Warning => 2,
            ArStatus::Contraindicated => 3,
        };
        self.results[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Evidence checked and appraised, with the claims of its result, not yet signed or recorded.
pub(crate) struct Appraised {
    key: vouch_store::AgentKeyRecord,
    tpm: Option<vouch_evidence::TpmContext>,
    verified: vouch_evidence::VerifiedEvidence,
    nonce: Nonce,
    pub(crate) nonce_id: String,
    appraisal: vouch_policy::Appraisal,
    pub(crate) ear: Ear,
    id: String,
    workload_id: String,
    expires_at: u64,
    policy_ref: String,
    reasons: Vec<String>,
}

/// Everything a request handler needs.
pub struct State {
    pub(crate) cfg: ServerConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) nonce_keys: Vec<NonceKey>,
    pub(crate) keyring: RwLock<Arc<Keyring>>,
    pub(crate) keys_dir: PathBuf,
    /// Bundles of federated trust domains, by trust domain SPIFFE ID.
    pub(crate) federated:
        RwLock<std::collections::BTreeMap<String, crate::federation::FederatedBundle>>,
    /// Bearer token of the management API.
    pub(crate) admin_token: String,
    /// The bearer credential of the read-only views.
    pub(crate) read_token: String,
    pub(crate) policies: PolicyCache,
    pub(crate) metrics: Metrics,
    /// Trusted signers, derived from the reference values of one revision.
    signers: RevisionCache<Vec<Signer>>,
    pub(crate) ek_trust: Option<vouch_tpm::EkTrustStore>,
    pub(crate) svid_ca: Option<std::sync::RwLock<vouch_identity::CaSet>>,
    /// This replica's certificate for its active signing key (`x5c` of what it signs).
    pub(crate) replica_cert: Mutex<Option<crate::revocation::ReplicaCert>>,
    pub(crate) jwt_signer: Option<vouch_identity::JwtSvidSigner>,
    /// Vendor roots for TEE evidence (`tee_roots_dir`).
    pub(crate) tee_roots: Option<vouch_tee::TeeRoots>,
    /// This verifier's share of the trust domain's quorum key, when results need a quorum.
    pub(crate) quorum: Option<crate::quorum::Quorum>,
    /// Reference values as last read, with their revision.
    refs_cache: RevisionCache<ReferenceValues>,
    /// Registration entries as last read, with their revision.
    entries_cache: RevisionCache<Vec<vouch_identity::Entry>>,
}

/// A table as last read from the store, with the revision it was read at: read again only when
/// the store's one-row revision counter for it moved (another replica or the CLI changed it).
struct RevisionCache<T>(Mutex<Option<(u64, Arc<T>)>>);

impl<T> Default for RevisionCache<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> RevisionCache<T> {
    /// The cached value, if it was read at `revision`.
    fn at(&self, revision: u64) -> Option<Arc<T>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(r, _)| *r == revision)
            .map(|(_, v)| v.clone())
    }

    /// Remember `value`, read at `revision`.
    fn put(&self, revision: u64, value: T) -> Arc<T> {
        let v = Arc::new(value);
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((revision, v.clone()));
        v
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("audience", &self.cfg.audience)
            .finish_non_exhaustive()
    }
}

fn valid_workload_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl State {
    pub(crate) fn new(
        cfg: ServerConfig,
        store: Arc<dyn Store>,
        nonce_keys: Vec<NonceKey>,
        keyring: Keyring,
        keys_dir: PathBuf,
    ) -> Self {
        Self {
            cfg,
            store,
            nonce_keys,
            keyring: RwLock::new(Arc::new(keyring)),
            keys_dir,
            admin_token: String::new(),
            read_token: String::new(),
            federated: RwLock::new(std::collections::BTreeMap::new()),
            policies: PolicyCache::new(),
            metrics: Metrics::default(),
            signers: RevisionCache::default(),
            ek_trust: None,
            svid_ca: None,
            replica_cert: Mutex::new(None),
            jwt_signer: None,
            quorum: None,
            tee_roots: None,
            refs_cache: RevisionCache::default(),
            entries_cache: RevisionCache::default(),
        }
    }

    /// The reference values: a one-row revision read per call, the table itself only when
    /// the revision moved (another replica or the CLI changed it).
    pub(crate) async fn reference_values(&self) -> Result<Arc<ReferenceValues>, ApiError> {
        let rev = self.store.revision(vouch_store::REFVALUES_REVISION).await?;
        if let Some(r) = self.refs_cache.at(rev) {
            return Ok(r);
        }
        let fresh = self.store.reference_values().await?;
        Ok(self.refs_cache.put(fresh.revision, fresh))
    }

    /// The registration entries, read again only when their revision moved.
    pub(crate) async fn entries(&self) -> Result<Arc<Vec<vouch_identity::Entry>>, ApiError> {
        let rev = self.store.revision(vouch_store::ENTRIES_REVISION).await?;
        if let Some(e) = self.entries_cache.at(rev) {
            return Ok(e);
        }
        let (r, entries) = self.store.entries_at_revision().await?;
        Ok(self.entries_cache.put(r, entries))
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
        let now = unix_now();
        self.metrics.challenges.fetch_add(1, Ordering::Relaxed);
        let Some(key) = self.nonce_keys.first() else {
            // Construction guarantees at least one key; an empty list would only refuse nonces.
            return ChallengeResponse {
                nonce: String::new(),
                audience: self.cfg.audience.clone(),
                expires_at: now,
            };
        };
        ChallengeResponse {
            nonce: Nonce::issue(key, now, random_bytes::<32>(), &self.cfg.audience),
            audience: self.cfg.audience.clone(),
            expires_at: now + self.cfg.nonce_ttl,
        }
    }

    /// Enroll an agent key with a join token.
    pub(crate) async fn enroll(&self, req: EnrollRequest) -> Result<EnrollResponse, ApiError> {
        let pk = URL_SAFE_NO_PAD
            .decode(&req.public_key)
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::MalformedRequest,
                    "public_key must be a base64url raw 32-byte Ed25519 key",
                )
            })?;
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

    fn signers(&self, refs: &ReferenceValues) -> Arc<Vec<Signer>> {
        if let Some(s) = self.signers.at(refs.revision) {
            return s;
        }
        let list = refs
            .values
            .iter()
            .filter(|v| v.kind == "signer")
            .filter_map(|v| {
                let pk = URL_SAFE_NO_PAD.decode(v.value.trim()).ok()?;
                Some(Signer {
                    name: v.key.clone(),
                    public_key: pk,
                })
            })
            .collect();
        self.signers.put(refs.revision, list)
    }

    /// Verify, appraise, sign and record one attestation.
    /// Check evidence and appraise it, up to the claims of the result, without signing or
    /// recording anything (the nonce is checked, not spent): what a quorum member does with
    /// the evidence another verifier proposes a result for.
    pub(crate) async fn appraise_request(
        &self,
        req: &AttestRequest,
        now: u64,
    ) -> Result<Appraised, ApiError> {
        let ev = &req.evidence;
        let verifier = verifier_for(ev.kind).ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnsupportedEvidence,
                format!("evidence kind {} is not supported", ev.kind.as_str()),
            )
        })?;
        let sample = ev.kind == vouch_core::EvidenceKind::Sample;
        if sample && !self.cfg.allow_sample_evidence {
            // Unsigned: accepting it would let anyone who knows a key id record results for
            // that key's node.
            return Err(ApiError::new(
                ErrorKind::UnsupportedEvidence,
                "sample evidence is off on this verifier: it carries no signature \
                 (allow_sample_evidence, for development only)",
            ));
        }
        let key = self.store.agent_key(&ev.key_id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnknownKey,
                format!(
                    "evidence names key {:?}, which is not enrolled here (or was revoked); \
                     enroll the agent with a join token from `vouch token create`",
                    vouch_core::clip(&ev.key_id, 64)
                ),
            )
        })?;
        let refs = self.reference_values().await?;
        let signers = self.signers(&refs);
        let tpm = if matches!(
            ev.kind,
            vouch_core::EvidenceKind::Tpm | vouch_core::EvidenceKind::Composite
        ) {
            self.tpm_context(&key.node_id, &refs).await?
        } else {
            None
        };
        let verified = verifier.verify(
            ev,
            &VerifyContext {
                public_key: &key.public_key,
                signers: &signers,
                tpm: tpm.as_ref(),
                tee: self.tee_roots.as_ref(),
                now,
            },
        )?;
        // A TPM-bound node cannot fall back to evidence without its quote (issue 12).
        if tpm.is_none() {
            self.require_tpm(&key.node_id, ev.kind, &refs).await?;
        }
        let cfg = &self.cfg;
        let nonce = Nonce::check(
            &verified.nonce,
            &self.nonce_keys,
            &cfg.audience,
            now,
            cfg.nonce_ttl,
            cfg.clock_skew,
        )?;
        if !valid_workload_name(&verified.workload_name) {
            return Err(ApiError::new(
                ErrorKind::EvidenceMalformed,
                "workload name must be 1-128 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        // Early, read-only replay check: a replay is refused before it costs an appraisal.
        // The authoritative single-use check is the insert in the recording transaction.
        let nonce_id = nonce.id();
        if self.store.nonce_used(&nonce_id).await? {
            return Err(ApiError::new(
                ErrorKind::NonceReused,
                "this nonce was already used; ask for a new challenge for every attestation",
            ));
        }

        let policy_id = self
            .store
            .active_policy_id()
            .await?
            .unwrap_or_else(|| DEFAULT_POLICY_ID.to_string());
        let policy = self.store.policy(&policy_id, None).await?.ok_or_else(|| {
            ApiError::new(
                ErrorKind::PolicyError,
                format!(
                    "active policy {policy_id} has no version; add one with `vouch policy add`"
                ),
            )
        })?;
        let compiled = self.policies.get(
            &PolicySource {
                id: policy.id.clone(),
                version: policy.version,
                rego: policy.rego,
            },
            &refs,
        )?;
        // Composite evidence: each component appraised as if it had come alone, one submodule
        // each; the attester as a whole is as bad as its worst component.
        let (appraisal, components) =
            compiled.appraise_components(&verified.claims, &verified.components)?;

        let id = uuid::Uuid::new_v4().to_string();
        // Sample results never stand for the enrolled workload: they are kept apart.
        let workload_id = if sample {
            format!("{}/sample:{}", key.node_id, verified.workload_name)
        } else {
            format!("{}/{}", key.node_id, verified.workload_name)
        };
        let expires_at = now + cfg.result_ttl;
        let policy_ref = format!(
            "policy:{}/v{}",
            appraisal.policy_id, appraisal.policy_version
        );
        let reasons = appraisal.reasons();
        let mut ext = BTreeMap::new();
        ext.insert(
            "vouch.evidence-kind".to_string(),
            serde_json::json!(ev.kind.as_str()),
        );
        ext.insert("vouch.node-id".to_string(), serde_json::json!(key.node_id));
        if !reasons.is_empty() {
            ext.insert("vouch.reasons".to_string(), serde_json::json!(reasons));
        }
        let mut submods = BTreeMap::new();
        submods.insert(
            SUBMOD_NAME.to_string(),
            Submod {
                status: appraisal.status,
                trust_vector: appraisal.trust_vector.clone(),
                policy_id: Some(policy_ref.clone()),
                extensions: ext,
            },
        );
        for (name, a) in components {
            let mut ext = BTreeMap::new();
            let reasons = a.reasons();
            if !reasons.is_empty() {
                ext.insert("vouch.reasons".to_string(), serde_json::json!(reasons));
            }
            submods.insert(
                name,
                Submod {
                    status: a.status,
                    trust_vector: a.trust_vector,
                    policy_id: Some(policy_ref.clone()),
                    extensions: ext,
                },
            );
        }
        let ear = Ear {
            eat_profile: EAR_PROFILE.to_string(),
            iat: now,
            exp: Some(expires_at),
            nbf: None,
            jti: Some(id.clone()),
            aud: req.result_audience.clone(),
            sub: Some(workload_id.clone()),
            verifier_id: VerifierId {
                build: format!("vouch {}", env!("CARGO_PKG_VERSION")),
                developer: "https://vouch.invalid".to_string(),
            },
            eat_nonce: Some(verified.nonce.clone()),
            raw_evidence: None,
            submods,
            policy_version: Some(appraisal.policy_version),
        };
        Ok(Appraised {
            key,
            tpm,
            verified,
            nonce,
            nonce_id,
            appraisal,
            ear,
            id,
            workload_id,
            expires_at,
            policy_ref,
            reasons,
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
        let own = self.appraise_request(&c.request, now).await?;
        crate::quorum::same_verdict(
            &proposed,
            &own.ear,
            now,
            self.cfg.clock_skew,
            self.cfg.result_ttl,
        )?;
        q.commit(&c.session, &own.nonce_id, &c.signing_input)
    }

    pub(crate) async fn attest(&self, req: AttestRequest) -> Result<AttestationResult, ApiError> {
        let now = unix_now();
        let Appraised {
            key,
            tpm,
            verified,
            nonce,
            nonce_id,
            appraisal,
            ear,
            id,
            workload_id,
            expires_at,
            policy_ref,
            reasons,
        } = self.appraise_request(&req, now).await?;
        let cfg = &self.cfg;
        let quorum_result = match &self.quorum {
            Some(q) => {
                let signing_input = format!(
                    "{}.{}",
                    q.keys.header(),
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ear).unwrap_or_default())
                );
                match q.coordinate(&req, &nonce_id, &signing_input).await {
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

        let keyring = self.keyring();
        let signing = keyring
            .active()
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "no active result-signing key"))?;
        let cert = self.replica_cert(signing)?;
        let jwt = signing
            .sign_jws("JWT", &cert.chain, &ear)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;

        let verified_tpm_clock = verified.tpm_clock;
        let verified_ima = verified.tpm_ima.clone();
        let ima_position = verified_ima.as_ref().map(|s| s.position).or_else(|| {
            tpm.as_ref()
                .and_then(|t| t.ima_state.as_ref())
                .map(|s| s.position)
        });
        let rec = AttestationRecord {
            id: id.clone(),
            workload_id: workload_id.clone(),
            node_id: key.node_id.clone(),
            key_id: key.id.clone(),
            evidence_kind: req.evidence.kind.as_str().to_string(),
            evidence_sha256: verified.evidence_sha256,
            claims: verified.claims,
            status: appraisal.status.as_str().to_string(),
            trust_vector: serde_json::to_value(&appraisal.trust_vector)
                .unwrap_or(serde_json::Value::Null),
            reasons: reasons.clone(),
            policy_id: appraisal.policy_id.clone(),
            policy_version: appraisal.policy_version,
            result: jwt.clone(),
            created_at: now,
            expires_at,
        };
        self.store
            .record_attestation(
                &rec,
                // A sample result sets no deadline: nothing is expected to follow it.
                if rec.evidence_kind == vouch_core::EvidenceKind::Sample.as_str() {
                    i64::MAX as u64
                } else {
                    now + cfg.deadline_secs()
                },
                Some((&nonce_id, nonce.expires_at(cfg.nonce_ttl) + cfg.clock_skew)),
            )
            .await?;
        if let Some(clock) = &verified_tpm_clock {
            let json = serde_json::to_string(clock).unwrap_or_default();
            let ima = verified_ima
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default());
            self.store
                .set_tpm_state(&key.node_id, &json, ima.as_deref())
                .await?;
        }
        self.metrics.result(appraisal.status);
        tracing::info!(
            workload = %workload_id, status = %appraisal.status, attestation = %id,
            "appraised"
        );
        Ok(AttestationResult {
            attestation_id: id,
            workload_id,
            status: appraisal.status,
            result: jwt,
            issued_at: now,
            expires_at,
            policy: policy_ref,
            reasons,
            valid: appraisal.status != ArStatus::Contraindicated,
            ima_position,
            quorum_result,
            entries_revision: self
                .store
                .revision(vouch_store::ENTRIES_REVISION)
                .await
                .ok(),
        })
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
        Ok(AttestationResult {
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
            entries_revision: None,
        })
    }

    /// Snapshot of refusal counters.
    pub(crate) fn refusals(&self) -> HashMap<&'static str, u64> {
        self.metrics
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
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

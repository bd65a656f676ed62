//! The Vouch appraisal pipeline as a library.
//!
//! [`Verifier::appraise`] takes one attestation request and does everything that decides its
//! result: the evidence kind's verifier (signature, quote, TEE report), the node's per-kind
//! state (the TPM binding, the last TPM clock, the IMA replay position), the nonce (this
//! verifier's, for this audience, fresh, not used), the active Rego policy over the claims with
//! the current reference values, and the claims of the result (an EAR). [`Verifier::record`]
//! then records the signed result and the node's new state in one durable write. Signing keys,
//! HTTP, TLS and identity issuance stay with the caller (`vouch-server`): this crate has no
//! HTTP and no async runtime in its API, and its tests run without either server.
//!
//! Work that did not change is not done again: an appraisal (the policy over the claims) is
//! reused when the claims, the policy version and the reference-value revision are all
//! byte-identical to an appraisal already made ([`cache`]); the signature, the nonce and every
//! freshness check run on every request.
#![deny(missing_docs)]

pub mod bench;
pub mod cache;
mod error;
pub mod parts;
mod tpm;

pub use cache::{AppraisalCache, CacheStats};
pub use error::{MAX_MESSAGE, VerifyError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use vouch_core::wire::{AttestRequest, AttestationResult, ChallengeResponse};
use vouch_core::{
    ArStatus, EAR_PROFILE, Ear, ErrorKind, EvidenceKind, Nonce, NonceKey, SUBMOD_NAME, Submod,
    VerifierId,
};
use vouch_evidence::{PartSource as _, Signer, VerifyContext, verifier_for};
use vouch_policy::{DEFAULT_POLICY_ID, PolicyCache, PolicySource, ReferenceValues};
use vouch_store::{AgentKeyRecord, AttestationRecord, Store};

/// What a verifier needs to know beyond its store and keys.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The audience nonces are bound to (this verifier's trust domain or URL).
    pub audience: String,
    /// Seconds a nonce stays valid.
    pub nonce_ttl: u64,
    /// Seconds of clock skew tolerated on either side.
    pub clock_skew: u64,
    /// Seconds a result stays valid.
    pub result_ttl: u64,
    /// Seconds after an attestation at which its workload is overdue.
    pub deadline_secs: u64,
    /// Accept unsigned `sample` evidence (development only).
    pub allow_sample_evidence: bool,
    /// Accept SHA-1 PCR banks in TPM quotes.
    pub tpm_allow_sha1: bool,
    /// Appraisals kept for reuse (0: none).
    pub appraisal_cache_entries: usize,
    /// Bytes of measurement parts kept so agents may send unchanged ones by digest (0: none).
    pub parts_cache_bytes: usize,
    /// The tenant results are made for (their `vouch.tenant` claim), if any.
    pub tenant: Option<String>,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            audience: "vouch".into(),
            nonce_ttl: 60,
            clock_skew: 5,
            result_ttl: 90,
            deadline_secs: 90,
            allow_sample_evidence: false,
            tpm_allow_sha1: false,
            appraisal_cache_entries: cache::DEFAULT_ENTRIES,
            parts_cache_bytes: parts::DEFAULT_BYTES,
            tenant: None,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A table as last read from the store, with the revision it was read at: read again only when
/// the store's one-row revision counter for it moved (another replica or the CLI changed it).
pub struct RevisionCache<T>(Mutex<Option<(u64, Arc<T>)>>);

impl<T> Default for RevisionCache<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> std::fmt::Debug for RevisionCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionCache").finish_non_exhaustive()
    }
}

impl<T> RevisionCache<T> {
    /// The cached value, if it was read at `revision`.
    pub fn at(&self, revision: u64) -> Option<Arc<T>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(r, _)| *r == revision)
            .map(|(_, v)| v.clone())
    }

    /// Remember `value`, read at `revision`.
    pub fn put(&self, revision: u64, value: T) -> Arc<T> {
        let v = Arc::new(value);
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((revision, v.clone()));
        v
    }
}

/// The appraisal pipeline of one verifier replica.
pub struct Verifier {
    cfg: VerifierConfig,
    store: Arc<dyn Store>,
    nonce_keys: Vec<NonceKey>,
    policies: PolicyCache,
    /// Trusted signers, derived from the reference values of one revision.
    signers: RevisionCache<Vec<Signer>>,
    /// Reference values as last read, with their revision.
    refs: RevisionCache<ReferenceValues>,
    tee_roots: Option<vouch_tee::TeeRoots>,
    appraisals: AppraisalCache,
    parts: parts::PartStore,
    /// Policy versions as read (a version's text never changes), by id and version.
    policy_sources: Mutex<HashMap<(String, u32), Arc<PolicySource>>>,
    /// Sees every verified attestation before its policy runs (fleet anomaly flags).
    anomaly_hook: std::sync::OnceLock<Arc<dyn AnomalyHook>>,
    /// Appraises the container image digests attestations report (`input.images`).
    image_hook: std::sync::OnceLock<Arc<dyn ImageHook>>,
}

/// Most distinct image digests of one attestation the [`ImageHook`] is asked about; the rest
/// are listed unsigned, "not checked".
pub const MAX_IMAGES_APPRAISED: usize = 64;

/// The distinct image digests a workload's claims report, in order (its declared
/// `image_digest`, then each running container's), each with the ids of the containers that
/// run it (none for the declared digest alone).
fn image_digests(workload: &serde_json::Value) -> (Vec<String>, Vec<Vec<String>>) {
    let mut digests: Vec<String> = Vec::new();
    let mut containers: Vec<Vec<String>> = Vec::new();
    let mut add = |d: &str, id: Option<&str>| {
        let i = match digests.iter().position(|x| x == d) {
            Some(i) => i,
            None => {
                digests.push(d.to_string());
                containers.push(Vec::new());
                digests.len() - 1
            }
        };
        if let Some(id) = id
            && !containers[i].iter().any(|x| x == id)
        {
            containers[i].push(id.to_string());
        }
    };
    if let Some(d) = workload["image_digest"].as_str() {
        add(d, None);
    }
    for c in workload["containers"].as_array().into_iter().flatten() {
        let id = c["id"].as_str();
        for d in c["image_digests"].as_array().into_iter().flatten() {
            if let Some(d) = d.as_str() {
                add(d, id);
            }
        }
    }
    (digests, containers)
}

/// Appraises the container image digests an attestation reports (the workload's declared
/// `image_digest` and the digests of its running containers, as the attested agent observed
/// them in its container runtime) before the policy runs: its answer is the policy's
/// `input.images`, one object per distinct digest, in order (`digest`, `signed_by`: the ids of
/// the trusted keys whose signature verified, `reason` when none did, `provenance` when
/// checked); the verifier adds `containers`, the ids of the containers running it. The
/// verifier's image signature checker (`vouch-server`, `[image_signatures]`) is one.
pub trait ImageHook: Send + Sync {
    /// The `input.images` entries for `digests`.
    fn images<'a>(
        &'a self,
        digests: &'a [String],
        now: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<serde_json::Value>> + Send + 'a>>;
}

/// Sees every attestation whose evidence verified, before the policy runs, and answers the
/// anomaly flags active on its node: the policy's `input.anomalies` (left out when there are
/// none). The verifier's fleet anomaly detector (`vouch-server`) is one.
pub trait AnomalyHook: Send + Sync {
    /// Observe `verified` (from `evidence`, by `node_id`, about `workload_id`) at `now`.
    fn assess(
        &self,
        node_id: &str,
        workload_id: &str,
        verified: &vouch_evidence::VerifiedEvidence,
        evidence: &vouch_core::Evidence,
        now: u64,
    ) -> Vec<serde_json::Value>;
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("audience", &self.cfg.audience)
            .finish_non_exhaustive()
    }
}

/// Evidence checked and appraised, with the claims of its result: not yet signed or recorded.
#[derive(Debug)]
pub struct Appraised {
    key: AgentKeyRecord,
    kind: EvidenceKind,
    verified: vouch_evidence::VerifiedEvidence,
    /// IMA position the verifier held before this evidence (for the answer).
    prior_ima_position: Option<u64>,
    nonce_id: String,
    nonce_expires_at: u64,
    appraisal: Arc<cache::CachedAppraisal>,
    ear: Ear,
    now: u64,
    /// Whether the appraisal was reused from one already made.
    pub cached: bool,
    /// How long checking the evidence took: its signatures (quote, report) and the nonce.
    pub verify_time: std::time::Duration,
    /// How long the policy took, when it was evaluated (`None`: the appraisal was reused).
    pub policy_time: Option<std::time::Duration>,
}

impl Appraised {
    /// The claims of the result, to be signed.
    pub fn ear(&self) -> &Ear {
        &self.ear
    }

    /// The nonce's single-use id.
    pub fn nonce_id(&self) -> &str {
        &self.nonce_id
    }

    /// The appraisal's overall status.
    pub fn status(&self) -> ArStatus {
        self.appraisal.whole.status
    }

    /// The node the evidence came from.
    pub fn node_id(&self) -> &str {
        &self.key.node_id
    }

    /// The HPKE public key the evidence's measurements bound (`release_key`, base64url), when
    /// the evidence asks for a secret.
    pub fn release_key(&self) -> Option<&str> {
        self.verified.release_key.as_deref()
    }

    /// The workload the evidence is about (its name on the node).
    pub fn workload_name(&self) -> &str {
        &self.verified.workload_name
    }

    /// The verified claims (the appraisal policy's input).
    pub fn claims(&self) -> &serde_json::Value {
        &self.verified.claims
    }

    /// The nonce the evidence answers.
    pub fn nonce(&self) -> &str {
        &self.verified.nonce
    }

    /// The kind of the evidence appraised.
    pub fn kind(&self) -> EvidenceKind {
        self.kind
    }
}

fn valid_workload_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Verifier {
    /// A verifier over `store`, accepting nonces made with any of `nonce_keys` (the first one
    /// issues), with vendor roots for TEE evidence when given.
    pub fn new(
        cfg: VerifierConfig,
        store: Arc<dyn Store>,
        nonce_keys: Vec<NonceKey>,
        tee_roots: Option<vouch_tee::TeeRoots>,
    ) -> Self {
        let appraisals = AppraisalCache::new(cfg.appraisal_cache_entries);
        let parts = parts::PartStore::new(cfg.parts_cache_bytes);
        Self {
            parts,
            policy_sources: Mutex::default(),
            anomaly_hook: std::sync::OnceLock::new(),
            image_hook: std::sync::OnceLock::new(),
            cfg,
            store,
            nonce_keys,
            policies: PolicyCache::new(),
            signers: RevisionCache::default(),
            refs: RevisionCache::default(),
            tee_roots,
            appraisals,
        }
    }

    /// Have `hook` see every verified attestation before its policy (once; `false` when one
    /// was set already).
    pub fn set_anomaly_hook(&self, hook: Arc<dyn AnomalyHook>) -> bool {
        self.anomaly_hook.set(hook).is_ok()
    }

    /// Have `hook` appraise the image digests attestations report (once; `false` when one
    /// was set already).
    pub fn set_image_hook(&self, hook: Arc<dyn ImageHook>) -> bool {
        self.image_hook.set(hook).is_ok()
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// How often appraisals were reused and made.
    pub fn cache_stats(&self) -> CacheStats {
        self.appraisals.stats()
    }

    /// Measurement parts held for agents to send by digest, and their estimated bytes.
    pub fn parts_held(&self) -> (usize, usize) {
        self.parts.usage()
    }

    /// A new nonce, bound to this verifier's audience; `random` must be 32 fresh random bytes.
    pub fn challenge(&self, now: u64, random: [u8; 32]) -> ChallengeResponse {
        let Some(key) = self.nonce_keys.first() else {
            // Construction guarantees a key; without one every nonce would be refused anyway.
            return ChallengeResponse {
                nonce: String::new(),
                audience: self.cfg.audience.clone(),
                expires_at: now,
            };
        };
        ChallengeResponse {
            nonce: Nonce::issue(key, now, random, &self.cfg.audience),
            audience: self.cfg.audience.clone(),
            expires_at: now + self.cfg.nonce_ttl,
        }
    }

    /// Check that `nonce` is one of this verifier's, for its audience and still fresh, and use
    /// it up (in the store's replay table, shared by every replica): for requests other than
    /// attestations that must be fresh and used once (a node attestation).
    pub async fn spend_nonce(&self, nonce: &str, now: u64) -> Result<(), VerifyError> {
        let cfg = &self.cfg;
        let n = Nonce::check(
            nonce,
            &self.nonce_keys,
            &cfg.audience,
            now,
            cfg.nonce_ttl,
            cfg.clock_skew,
        )?;
        self.store
            .use_nonce(&n.id(), n.expires_at(cfg.nonce_ttl) + cfg.clock_skew)
            .await?;
        Ok(())
    }

    /// The reference values: a one-row revision read per call, the table itself only when
    /// the revision moved (another replica or the CLI changed it).
    pub async fn reference_values(&self) -> Result<Arc<ReferenceValues>, VerifyError> {
        let rev = self.store.revision(vouch_store::REFVALUES_REVISION).await?;
        self.reference_values_at(rev).await
    }

    /// The reference values at revision `rev` (as the store said a moment ago), read again
    /// only when the cached ones are of another revision.
    async fn reference_values_at(&self, rev: u64) -> Result<Arc<ReferenceValues>, VerifyError> {
        if let Some(r) = self.refs.at(rev) {
            return Ok(r);
        }
        let fresh = self.store.reference_values().await?;
        Ok(self.refs.put(fresh.revision, fresh))
    }

    /// Version `version` of policy `id`, read once.
    async fn policy_source(
        &self,
        id: &str,
        version: u32,
    ) -> Result<Arc<PolicySource>, VerifyError> {
        let key = (id.to_string(), version);
        if let Some(p) = self
            .policy_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let p = self.store.policy(id, Some(version)).await?.ok_or_else(|| {
            VerifyError::new(
                ErrorKind::PolicyError,
                format!("policy {id} v{version} is gone from the store"),
            )
        })?;
        let source = Arc::new(PolicySource {
            id: p.id,
            version: p.version,
            rego: p.rego,
        });
        let mut map = self
            .policy_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Older versions are dead weight once a newer one is in use.
        map.retain(|(i, v), _| i != id || *v > version);
        map.insert(key, source.clone());
        Ok(source)
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

    /// Check evidence and appraise it, up to the claims of the result, without signing or
    /// recording anything: the nonce is checked, not spent (the record spends it). What a
    /// quorum member does with the evidence another verifier proposes a result for, too.
    pub async fn appraise(&self, req: &AttestRequest, now: u64) -> Result<Appraised, VerifyError> {
        let ev = &req.evidence;
        let verifier = verifier_for(ev.kind).ok_or_else(|| {
            VerifyError::new(
                ErrorKind::UnsupportedEvidence,
                format!("evidence kind {} is not supported", ev.kind.as_str()),
            )
        })?;
        let sample = ev.kind == EvidenceKind::Sample;
        if sample && !self.cfg.allow_sample_evidence {
            // Unsigned: accepting it would let anyone who knows a key id record results for
            // that key's node.
            return Err(VerifyError::new(
                ErrorKind::UnsupportedEvidence,
                "sample evidence is off on this verifier: it carries no signature \
                 (allow_sample_evidence, for development only)",
            ));
        }
        // One round trip to the store for everything a repeat attestation reads.
        let context = self
            .store
            .appraisal_context(&ev.key_id, DEFAULT_POLICY_ID)
            .await?;
        let context = context.ok_or_else(|| {
            VerifyError::new(
                ErrorKind::UnknownKey,
                format!(
                    "evidence names key {:?}, which is not enrolled here (or was revoked); \
                     enroll the agent with a join token from `vouch token create`",
                    vouch_core::clip(&ev.key_id, 64)
                ),
            )
        })?;
        let key = context.key;
        let refs = self.reference_values_at(context.refvalues_revision).await?;
        let signers = self.signers(&refs);
        let tpm = if context.tpm_activated
            && matches!(ev.kind, EvidenceKind::Tpm | EvidenceKind::Composite)
        {
            self.tpm_context(&key.node_id, &refs).await?
        } else {
            None
        };
        let verify_started = std::time::Instant::now();
        let mut verified = verifier.verify(
            ev,
            &VerifyContext {
                public_key: &key.public_key,
                signers: &signers,
                tpm: tpm.as_ref(),
                tee: self.tee_roots.as_ref(),
                now,
                parts: Some(&self.parts),
            },
        )?;
        // A TPM-bound node cannot fall back to evidence without its quote.
        if tpm.is_none() {
            Self::require_tpm(context.tpm_bound, &key.node_id, ev.kind, &refs)?;
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
            return Err(VerifyError::new(
                ErrorKind::EvidenceMalformed,
                "workload name must be 1-128 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let nonce_id = nonce.id();
        if let Some(hook) = self.anomaly_hook.get() {
            let workload_id = format!("{}/{}", key.node_id, verified.workload_name);
            let active = hook.assess(&key.node_id, &workload_id, &verified, ev, now);
            if !active.is_empty()
                && let Some(claims) = verified.claims.as_object_mut()
            {
                claims.insert("anomalies".into(), serde_json::Value::Array(active));
            }
        }
        if let Some(hook) = self.image_hook.get() {
            let (digests, containers) = image_digests(&verified.claims["workload"]);
            if !digests.is_empty() {
                let checked = digests.len().min(MAX_IMAGES_APPRAISED);
                let mut images = hook.images(&digests[..checked], now).await;
                images.extend(digests[checked..].iter().map(|d| {
                    serde_json::json!({
                        "digest": d,
                        "signed_by": [],
                        "reason": format!(
                            "not checked: more than {MAX_IMAGES_APPRAISED} image digests in one attestation"
                        ),
                    })
                }));
                for (img, ids) in images.iter_mut().zip(containers) {
                    if let Some(o) = img.as_object_mut() {
                        o.insert("containers".into(), serde_json::json!(ids));
                    }
                }
                if let Some(claims) = verified.claims.as_object_mut() {
                    claims.insert("images".into(), serde_json::Value::Array(images));
                }
            }
        }
        let verify_time = verify_started.elapsed();
        // Signed, bound to a nonce of ours: hold its parts, so that the agent may send the
        // unchanged ones by digest next time.
        for (digest, part) in &verified.parts {
            self.parts.put(digest, part);
        }

        let policy_id = &context.policy_id;
        let version = context.policy_version.ok_or_else(|| {
            VerifyError::new(
                ErrorKind::PolicyError,
                format!(
                    "active policy {policy_id} has no version; add one with `vouch policy add`"
                ),
            )
        })?;
        let source = self.policy_source(policy_id, version).await?;
        // Composite evidence: each component appraised as if it had come alone, one submodule
        // each; the attester as a whole is as bad as its worst component.
        let key_digest = source
            .is_deterministic()
            .then(|| cache::key(&source, refs.revision, &verified));
        let hit = match &key_digest {
            Some(k) => self.appraisals.get(k),
            None => {
                self.appraisals.count_uncached();
                None
            }
        };
        let mut policy_time = None;
        let (appraisal, cached) = match hit {
            Some(a) => (a, true),
            None => {
                // Early, read-only replay check: a replay is refused before it costs an
                // appraisal (a cached one costs nothing). The authoritative single-use check
                // is the insert in the recording transaction.
                if self.store.nonce_used(&nonce_id).await? {
                    return Err(VerifyError::new(
                        ErrorKind::NonceReused,
                        "this nonce was already used; ask for a new challenge for every \
                         attestation",
                    ));
                }
                let policy_started = std::time::Instant::now();
                let compiled = self.policies.get(&source, &refs)?;
                let (whole, components) =
                    compiled.appraise_components(&verified.claims, &verified.components)?;
                policy_time = Some(policy_started.elapsed());
                let a = Arc::new(cache::CachedAppraisal { whole, components });
                if let Some(k) = key_digest {
                    self.appraisals.put(k, a.clone());
                }
                (a, false)
            }
        };

        let id = uuid::Uuid::new_v4().to_string();
        // Sample results never stand for the enrolled workload: they are kept apart.
        let workload_id = if sample {
            format!("{}/sample:{}", key.node_id, verified.workload_name)
        } else {
            format!("{}/{}", key.node_id, verified.workload_name)
        };
        let ear = result_claims(
            &appraisal,
            ev.kind,
            &key.node_id,
            id,
            workload_id,
            req.result_audience.clone(),
            verified.nonce.clone(),
            now,
            now + cfg.result_ttl,
            cfg.tenant.clone(),
        );
        let prior_ima_position = tpm
            .as_ref()
            .and_then(|t| t.ima_state.as_ref())
            .map(|s| s.position);
        Ok(Appraised {
            key,
            kind: ev.kind,
            verified,
            prior_ima_position,
            nonce_id,
            nonce_expires_at: nonce.expires_at(cfg.nonce_ttl) + cfg.clock_skew,
            appraisal,
            ear,
            now,
            cached,
            verify_time,
            policy_time,
        })
    }

    /// Record an appraisal with its signed result (`result`, the compact JWS over
    /// [`Appraised::ear`]): the attestation, the workload's new status and deadline, the spent
    /// nonce, and the node's TPM state. Refused when the nonce was spent meanwhile or the
    /// workload, node or agent key was revoked. The answer carries no quorum result and no
    /// entries revision: those are the caller's.
    pub async fn record(
        &self,
        a: Appraised,
        result: String,
    ) -> Result<AttestationResult, VerifyError> {
        let Appraised {
            key,
            kind,
            verified,
            prior_ima_position,
            nonce_id,
            nonce_expires_at,
            appraisal,
            ear,
            now,
            cached: _,
            verify_time: _,
            policy_time: _,
        } = a;
        let whole = &appraisal.whole;
        let reasons = whole.reasons();
        let held_parts = verified
            .parts
            .iter()
            .filter(|(d, p)| self.parts.part(p.name(), d).is_some())
            .map(|(d, p)| (p.name().to_string(), d.clone()))
            .collect();
        let id = ear.jti.clone().unwrap_or_default();
        let workload_id = ear.sub.clone().unwrap_or_default();
        let expires_at = ear.exp.unwrap_or(now);
        let ima_position = verified
            .tpm_ima
            .as_ref()
            .map(|s| s.position)
            .or(prior_ima_position);
        let rec = AttestationRecord {
            id: id.clone(),
            workload_id: workload_id.clone(),
            node_id: key.node_id.clone(),
            key_id: key.id.clone(),
            evidence_kind: kind.as_str().to_string(),
            evidence_sha256: verified.evidence_sha256,
            claims: verified.claims,
            status: whole.status.as_str().to_string(),
            trust_vector: serde_json::to_value(&whole.trust_vector)
                .unwrap_or(serde_json::Value::Null),
            reasons: reasons.clone(),
            policy_id: whole.policy_id.clone(),
            policy_version: whole.policy_version,
            result: result.clone(),
            created_at: now,
            expires_at,
        };
        // A sample result sets no deadline: nothing is expected to follow it.
        let deadline = if kind == EvidenceKind::Sample {
            i64::MAX as u64
        } else {
            now + self.cfg.deadline_secs
        };
        self.store
            .record_attestation(&rec, deadline, Some((&nonce_id, nonce_expires_at)))
            .await?;
        if let Some(clock) = &verified.tpm_clock {
            let json = serde_json::to_string(clock).unwrap_or_default();
            let ima = verified
                .tpm_ima
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default());
            self.store
                .set_tpm_state(&key.node_id, &json, ima.as_deref())
                .await?;
        }
        tracing::info!(
            workload = %workload_id, status = %whole.status, attestation = %id,
            "appraised"
        );
        Ok(AttestationResult {
            attestation_id: id,
            workload_id,
            status: whole.status,
            result,
            issued_at: now,
            expires_at,
            policy: format!("policy:{}/v{}", whole.policy_id, whole.policy_version),
            reasons,
            valid: whole.status != ArStatus::Contraindicated,
            ima_position,
            quorum_result: None,
            result_pq: None,
            quorum_result_pq: None,
            entries_revision: None,
            held_parts,
            next_nonce: None,
        })
    }
}

/// The claims of a result (an EAR) for an appraisal.
#[allow(clippy::too_many_arguments)]
fn result_claims(
    appraisal: &cache::CachedAppraisal,
    kind: EvidenceKind,
    node_id: &str,
    id: String,
    workload_id: String,
    audience: Option<String>,
    nonce: String,
    now: u64,
    expires_at: u64,
    tenant: Option<String>,
) -> Ear {
    let whole = &appraisal.whole;
    let policy_ref = format!("policy:{}/v{}", whole.policy_id, whole.policy_version);
    let reasons = whole.reasons();
    let mut ext = BTreeMap::new();
    ext.insert(
        "vouch.evidence-kind".to_string(),
        serde_json::json!(kind.as_str()),
    );
    ext.insert("vouch.node-id".to_string(), serde_json::json!(node_id));
    if !reasons.is_empty() {
        ext.insert("vouch.reasons".to_string(), serde_json::json!(reasons));
    }
    let mut submods = BTreeMap::new();
    submods.insert(
        SUBMOD_NAME.to_string(),
        Submod {
            status: whole.status,
            trust_vector: whole.trust_vector.clone(),
            policy_id: Some(policy_ref.clone()),
            extensions: ext,
        },
    );
    for (name, a) in &appraisal.components {
        let mut ext = BTreeMap::new();
        let reasons = a.reasons();
        if !reasons.is_empty() {
            ext.insert("vouch.reasons".to_string(), serde_json::json!(reasons));
        }
        submods.insert(
            name.clone(),
            Submod {
                status: a.status,
                trust_vector: a.trust_vector.clone(),
                policy_id: Some(policy_ref.clone()),
                extensions: ext,
            },
        );
    }
    Ear {
        eat_profile: EAR_PROFILE.to_string(),
        iat: now,
        exp: Some(expires_at),
        nbf: None,
        jti: Some(id),
        aud: audience,
        sub: Some(workload_id),
        verifier_id: VerifierId {
            build: format!("vouch {}", env!("CARGO_PKG_VERSION")),
            developer: "https://vouch.invalid".to_string(),
        },
        eat_nonce: Some(vouch_core::eat_nonce(&nonce)),
        raw_evidence: None,
        submods,
        policy_version: Some(whole.policy_version),
        tenant,
    }
}

#[cfg(test)]
mod image_digest_tests {
    #![allow(clippy::unwrap_used)]
    use super::image_digests;

    #[test]
    fn declared_and_running_digests_once_each_with_their_containers() {
        let (a, b, c) = ("sha256:aa", "sha256:bb", "sha256:cc");
        let w = serde_json::json!({
            "image_digest": a,
            "containers": [
                {"id": "c1", "image_digests": [b, a]},
                {"id": "c2", "image_digests": [b]},
                {"id": "c2", "image_digests": [c]},
                {"image_digests": [c]},
            ],
        });
        let (digests, containers) = image_digests(&w);
        assert_eq!(digests, vec![a, b, c]);
        assert_eq!(
            containers,
            vec![vec!["c1"], vec!["c1", "c2"], vec!["c2"]]
                .into_iter()
                .map(|v| v.into_iter().map(str::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
        // An older agent's workload: only the declared digest, or nothing.
        let (d, c) = image_digests(&serde_json::json!({"image_digest": a}));
        assert_eq!((d, c), (vec![a.to_string()], vec![vec![]]));
        assert!(
            image_digests(&serde_json::json!({"image_digest": null}))
                .0
                .is_empty()
        );
    }
}

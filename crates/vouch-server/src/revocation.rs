//! Revocation on the verifier side: each replica's signing certificate (its result key
//! certified by the trust domain's CA as `spiffe://<td>/vouch/verifier/<kid>`), signed
//! revocation records appended to the store's gap-free log, signed heads, and the incremental
//! feed that publishes both to the gossip cluster.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vouch_core::ErrorKind;
use vouch_core::revocation::{
    REVOCATION_HEAD_TYP, REVOCATION_TYP, RevocationClaims, RevocationHead, RevocationKind,
    VERIFIER_ID_PREFIX, normalize_target,
};
use vouch_identity::{CaSet, SpiffeId};
use vouch_store::{RevocationRecord, Store, StoreError};

use crate::keys::SigningKey;
use crate::state::{State, unix_now};
use crate::{ApiError, ServerConfig, ServerError};

/// Lifetime of a replica's signing certificate (capped by the CA's own).
const REPLICA_CERT_TTL: u64 = 7 * 86_400;
/// Attempts at the next epoch when other replicas keep taking it.
const APPEND_ATTEMPTS: usize = 16;

/// A replica's certificate for one signing key.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaCert {
    kid: String,
    /// The replica's SPIFFE ID (the `iss` of what it signs).
    pub(crate) id: SpiffeId,
    /// `x5c`: the certificate (DER). The CA is the trust bundle's, so it is not repeated.
    pub(crate) chain: Vec<Vec<u8>>,
    refresh_at: u64,
}

/// Certify `key` with the active CA of `ca`.
pub(crate) fn certify(ca: &CaSet, key: &SigningKey, now: u64) -> Result<ReplicaCert, String> {
    let active = ca.active();
    let id = SpiffeId::new(
        active.trust_domain(),
        &format!("{VERIFIER_ID_PREFIX}{}", key.kid()),
    )
    .map_err(|e| e.to_string())?;
    let der = active
        .issue_verifier(&id, &key.spki_der(), REPLICA_CERT_TTL, now)
        .map_err(|e| format!("certifying the signing key: {e}"))?;
    let until = (now + REPLICA_CERT_TTL).min(active.validity().1);
    Ok(ReplicaCert {
        kid: key.kid().to_string(),
        id,
        chain: vec![der],
        refresh_at: now + until.saturating_sub(now) / 2,
    })
}

/// A record as the feed serves it: the compact JWS under this replica's certificate and, with
/// `pq_signatures`, the same as JWS JSON with its ML-DSA-65 signature beside.
#[derive(Debug, Clone)]
pub(crate) struct SignedRecord {
    /// The compact JWS.
    pub(crate) compact: String,
    /// The co-signed JWS JSON, when `pq_signatures` is on.
    pub(crate) pq: Option<String>,
}

/// Most records whose signed forms are held: about 9 KiB each with an ML-DSA-65 signature and
/// the certificate in `x5c`, so at most ~18 MiB. Evicted lowest epoch first: relying parties
/// poll for what follows the newest record they hold, so the newest are asked for most.
const SIGNED_RECORDS_HELD: usize = 2048;

/// The signed forms of records this replica served, valid while its certificate is the one they
/// were signed under (any other empties the map), each kept with the SHA-256 of the stored
/// record it was made from so a record that is not byte for byte the same is signed afresh.
#[derive(Debug, Default)]
pub(crate) struct SignedRecords {
    held: std::sync::Mutex<HeldRecords>,
}

#[derive(Debug, Default)]
struct HeldRecords {
    cert: Vec<u8>,
    by_epoch: std::collections::BTreeMap<u64, ([u8; 32], SignedRecord)>,
}

impl SignedRecords {
    fn get(&self, cert: &[u8], epoch: u64, digest: &[u8; 32]) -> Option<SignedRecord> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.cert != cert {
            return None;
        }
        held.by_epoch
            .get(&epoch)
            .filter(|(d, _)| d == digest)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, cert: &[u8], epoch: u64, digest: [u8; 32], signed: SignedRecord) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.cert != cert {
            held.by_epoch.clear();
            held.cert = cert.to_vec();
        }
        held.by_epoch.insert(epoch, (digest, signed));
        while held.by_epoch.len() > SIGNED_RECORDS_HELD {
            held.by_epoch.pop_first();
        }
    }

    /// How many signed records are held (for tests and metrics).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_epoch
            .len()
    }
}

/// SHA-256 of everything a stored record is, its epoch aside.
fn record_digest(r: &RevocationRecord) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [&r.kind, &r.target, &r.reason, &r.by, &r.record] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(r.created_at.to_be_bytes());
    h.finalize().into()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

impl State {
    /// The certificate of `key`, issued once and again at half its life or after the key
    /// rotates.
    pub(crate) fn replica_cert(&self, key: &SigningKey) -> Result<ReplicaCert, ApiError> {
        let now = unix_now();
        let mut held = self.replica_cert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = held.as_ref()
            && c.kid == key.kid()
            && now < c.refresh_at
        {
            return Ok(c.clone());
        }
        let cert = self.with_ca(|set| certify(set, key, now).map_err(internal))?;
        *held = Some(cert.clone());
        Ok(cert)
    }

    /// Sign `claims` with the active key and its certificate.
    fn sign_certified(
        &self,
        typ: &str,
        claims: impl FnOnce(&SpiffeId) -> serde_json::Value,
    ) -> Result<String, ApiError> {
        let keyring = self.keyring();
        let key = keyring
            .active()
            .ok_or_else(|| internal("no active signing key"))?;
        let cert = self.replica_cert(key)?;
        key.sign_jws(typ, &cert.chain, &claims(&cert.id))
            .map_err(internal)
    }

    /// Revoke `target` of `kind`: sign the record at the next epoch and append it to the log.
    pub(crate) async fn revoke(
        &self,
        kind: RevocationKind,
        target: &str,
        reason: &str,
        by: &str,
    ) -> Result<RevocationRecord, ApiError> {
        append(self.store.as_ref(), kind, target, reason, by, |claims| {
            self.sign_certified(REVOCATION_TYP, |id| {
                let mut c = claims.clone();
                c.iss = id.to_string();
                serde_json::to_value(c).unwrap_or_default()
            })
        })
        .await
    }

    /// `rec` signed again with this replica's current certificate. Relying parties check a
    /// record's signer as of when the record reaches them, not as of its `iat`, so every record
    /// a replica hands out (gossip, the feed) is signed under a certificate valid now: one that
    /// has not expired and, unlike the original signer's perhaps, has not been revoked. The
    /// claims but `iss` are the record's own, `iat` included.
    pub(crate) fn sign_record_now(&self, rec: &RevocationRecord) -> Result<String, ApiError> {
        let claims = stored_claims(&rec.record)?;
        self.sign_certified(REVOCATION_TYP, |id| {
            let mut c = claims;
            c.iss = id.to_string();
            serde_json::to_value(c).unwrap_or_default()
        })
    }

    /// `rows` as the feed hands them out: each signed again under this replica's current
    /// certificate ([`State::sign_record_now`]) and, with `pq_signatures`, co-signed with
    /// ML-DSA-65. A record never changes once appended, so what was signed for it under the
    /// current certificate is kept ([`SignedRecords`]) and served again: the feed is public,
    /// and without this every request for a page of 1,000 records cost 1,000 classical and
    /// 1,000 ML-DSA-65 signatures.
    pub(crate) fn feed_records(
        &self,
        rows: &[RevocationRecord],
    ) -> Result<Vec<SignedRecord>, ApiError> {
        let cert = self.signing_certificate()?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let digest = record_digest(r);
            if let Some(s) = self.signed_records.get(&cert, r.epoch, &digest) {
                out.push(s);
                continue;
            }
            let compact = self.sign_record_now(r)?;
            let pq = self.cosign_pq(&compact)?;
            let s = SignedRecord { compact, pq };
            self.signed_records.put(&cert, r.epoch, digest, s.clone());
            out.push(s);
        }
        Ok(out)
    }

    /// The certificate (DER) this replica signs with now.
    fn signing_certificate(&self) -> Result<Vec<u8>, ApiError> {
        let keyring = self.keyring();
        let key = keyring
            .active()
            .ok_or_else(|| internal("no active signing key"))?;
        Ok(self
            .replica_cert(key)?
            .chain
            .first()
            .cloned()
            .unwrap_or_default())
    }

    /// A signed head for `epoch`, as of now.
    pub(crate) fn sign_head(&self, epoch: u64) -> Result<String, ApiError> {
        self.sign_certified(REVOCATION_HEAD_TYP, |id| {
            serde_json::to_value(RevocationHead {
                iss: id.to_string(),
                epoch,
                iat: unix_now(),
            })
            .unwrap_or_default()
        })
    }
}

/// The claims of a record from this trust domain's own store (signed when it was appended).
fn stored_claims(jws: &str) -> Result<RevocationClaims, ApiError> {
    use base64::Engine as _;
    let payload = jws
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .ok_or_else(|| internal("a stored revocation record is not a compact JWS"))?;
    serde_json::from_slice(&payload)
        .map_err(|e| internal(format!("a stored revocation record's claims: {e}")))
}

/// Validate, sign (with `sign`, given the claims with `iss` still empty) and append a
/// revocation at the next epoch, signing again when another writer took that epoch first.
async fn append(
    store: &dyn Store,
    kind: RevocationKind,
    target: &str,
    reason: &str,
    by: &str,
    sign: impl Fn(&RevocationClaims) -> Result<String, ApiError>,
) -> Result<RevocationRecord, ApiError> {
    let target = normalize_target(kind, target)
        .map_err(|m| ApiError::new(ErrorKind::MalformedRequest, m))?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            "a revocation needs a reason",
        ));
    }
    if reason.len() > vouch_core::revocation::MAX_REASON
        || by.is_empty()
        || by.len() > vouch_core::revocation::MAX_TARGET
    {
        return Err(ApiError::new(
            ErrorKind::MalformedRequest,
            "reason (up to 512 bytes) or author (1-256 bytes) out of bounds",
        ));
    }
    for _ in 0..APPEND_ATTEMPTS {
        let now = unix_now();
        let claims = RevocationClaims {
            iss: String::new(),
            epoch: store.revocation_epoch().await? + 1,
            kind,
            target: target.clone(),
            reason: reason.to_string(),
            by: by.to_string(),
            iat: now,
        };
        let rec = RevocationRecord {
            epoch: claims.epoch,
            kind: kind.as_str().into(),
            target: target.clone(),
            reason: reason.into(),
            by: by.into(),
            created_at: now,
            record: sign(&claims)?,
        };
        match store.append_revocation(&rec).await {
            Ok(()) => {
                tracing::warn!(epoch = rec.epoch, %kind, target = %rec.target, by, "revoked: {reason}");
                return Ok(rec);
            }
            Err(StoreError::EpochTaken(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        ErrorKind::StoreUnavailable,
        "other writers kept taking the next revocation epoch; try again",
    ))
}

/// Revoke from the command line, with the replica's key material in `cfg.data_dir` and its
/// store, and no running verifier needed.
pub async fn revoke_offline(
    cfg: &ServerConfig,
    store: &dyn Store,
    kind: RevocationKind,
    target: &str,
    reason: &str,
    by: &str,
) -> Result<RevocationRecord, ServerError> {
    let now = unix_now();
    let keyring =
        crate::keys::Keyring::load_or_create(&cfg.data_dir.join("keys"), cfg.signing_alg, now)?;
    let key = keyring
        .active()
        .ok_or_else(|| ServerError::Config("no active signing key".into()))?;
    let td = vouch_identity::TrustDomain::parse(&cfg.trust_domain)
        .map_err(|e| ServerError::Config(format!("trust_domain: {e}")))?;
    let ca = crate::state::open_ca_set(cfg, &td, now)
        .map_err(|e| ServerError::Config(format!("SPIFFE CA: {e}")))?;
    let cert = certify(&ca, key, now).map_err(ServerError::Config)?;
    append(store, kind, target, reason, by, |claims| {
        let mut c = claims.clone();
        c.iss = cert.id.to_string();
        key.sign_jws(REVOCATION_TYP, &cert.chain, &c)
            .map_err(internal)
    })
    .await
    .map_err(|e| ServerError::Config(e.message))
}

/// Publish the log and a fresh head to the gossip cluster every `interval`: only records
/// above the last published epoch are read (an index range scan), never the whole log, except
/// when this replica's certificate changes (reissued at half its life, or after a key
/// rotation): every record is then signed again under the new one and published again, so
/// what this replica gossips stays acceptable to relying parties, who check a record's signer
/// when it arrives.
pub(crate) async fn publish(
    state: Arc<State>,
    gossip: Arc<vouch_rp::gossip::Gossip>,
    interval: Duration,
) {
    let mut published = 0u64;
    let mut signed_with: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let peers = gossip.live_members().await.len();
        let m = &state.metrics;
        m.gossip_peers.store(peers as u64, Ordering::Relaxed);
        m.gossip_dropped
            .store(gossip.dropped_datagrams(), Ordering::Relaxed);
        match state.signing_certificate() {
            Ok(c) if signed_with.as_ref() != Some(&c) => {
                if signed_with.is_some() && published > 0 {
                    tracing::info!(
                        records = published,
                        "new replica certificate: publishing the revocation log signed again"
                    );
                }
                published = 0;
                signed_with = Some(c);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("revocation feed: {}", e.message),
        }
        loop {
            match state.store.revocations_since(published, 256).await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    for r in &batch {
                        let jws = state.sign_record_now(r).unwrap_or_else(|e| {
                            tracing::warn!(
                                epoch = r.epoch,
                                "signing a revocation record: {}",
                                e.message
                            );
                            r.record.clone()
                        });
                        gossip.publish_record(r.epoch, &jws).await;
                        state
                            .metrics
                            .revocation_published(r.epoch, r.created_at, unix_time());
                        published = r.epoch;
                    }
                }
                Err(e) => {
                    state.metrics.store_error();
                    tracing::warn!("revocation feed: {e}");
                    break;
                }
            }
        }
        // The head names only what this replica has published, so a member that takes the
        // head from it can take the records from it too.
        match state.sign_head(published) {
            Ok(h) => gossip.publish_head(&h).await,
            Err(e) => tracing::warn!("signing the revocation head: {}", e.message),
        }
    }
}

/// The time now since the Unix epoch, to the microsecond (revocation lag).
fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(tag: &str) -> SignedRecord {
        SignedRecord {
            compact: tag.to_string(),
            pq: Some(format!("{tag}-pq")),
        }
    }

    #[test]
    fn signed_records_are_served_only_under_their_certificate_and_for_the_same_record() {
        let held = SignedRecords::default();
        let (a, b) = (b"certificate a".as_slice(), b"certificate b".as_slice());
        held.put(a, 1, [1; 32], signed("one"));
        assert_eq!(
            held.get(a, 1, &[1; 32]).map(|s| s.compact),
            Some("one".into())
        );
        // Another stored record at the same epoch (a store swapped underneath): signed afresh.
        assert!(held.get(a, 1, &[2; 32]).is_none());
        // Another certificate (renewed, or the key rotated): nothing held is served.
        assert!(held.get(b, 1, &[1; 32]).is_none());
        held.put(b, 2, [2; 32], signed("two"));
        assert!(
            held.get(a, 1, &[1; 32]).is_none(),
            "a new certificate empties the map"
        );
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn signed_records_are_bounded_dropping_the_oldest_epochs() {
        let held = SignedRecords::default();
        for e in 1..=(SIGNED_RECORDS_HELD as u64 + 10) {
            held.put(b"c", e, [0; 32], signed("r"));
        }
        assert_eq!(held.len(), SIGNED_RECORDS_HELD);
        assert!(held.get(b"c", 10, &[0; 32]).is_none());
        assert!(held.get(b"c", 11, &[0; 32]).is_some());
    }
}

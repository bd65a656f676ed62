//! A relying party's local revocation set: signed revocation records and the newest signed
//! head, each checked against the trust bundle before it is kept, so revocation is checked with
//! no network and the set says how complete and how stale it is.
//!
//! A record is kept only if its signer's certificate chains to the trust bundle *now*, when
//! the record arrives (not as of the record's own `iat`, which its signer chose), names a
//! verifier replica, and has not itself been revoked by a record already held; heads are
//! checked the same way. Two validly signed records for one epoch that say different things
//! are both kept, and both revoke: the second is evidence that a replica misbehaved
//! ([`RevocationSet::conflicts`]), saved with the set and reported.
//!
//! Checks fail closed: [`RevocationSet::check_result`] and [`RevocationSet::check_svid`] refuse
//! everything while the set lacks a record its newest head announces, has no head, or its head
//! is older than [`RevocationSet::max_age`] (5 minutes unless set): a relying party cut off
//! from gossip, or fed a stale set, cannot tell a revoked workload from a good one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vouch_rp::{RevocationKind, RevocationSet, SpiffeVerifier};
//! fn check(bundle: Arc<SpiffeVerifier>, record: &str, head: &str, now: u64) -> Result<(), vouch_rp::RpError> {
//!     let mut set = RevocationSet::new(bundle);
//!     set.insert_record(record, now)?; // from gossip, a saved file or GET /v1/revocations
//!     set.insert_head(head, now)?;
//!     let view = set.check_current(now)?; // complete, and its head at most max_age old
//!     println!("complete through {}, {:?} s old", view.complete_through, view.staleness(now));
//!     if let Some(r) = set.revoked(RevocationKind::Node, "node-1") {
//!         println!("node-1 revoked: {}", r.reason);
//!     }
//!     Ok(())
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vouch_core::revocation::{
    REVOCATION_HEAD_TYP, REVOCATION_TYP, RevocationClaims, RevocationHead, RevocationKind,
};

use crate::pq::PqKeyMap;
use crate::{RpError, SignatureMode, SpiffeVerifier, VerifiedResult, x5c};

/// How old the newest signed head may be before checks refuse, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Most conflicting records kept (each is validly signed, so only a replica's key makes them).
const MAX_CONFLICTS: usize = 256;

/// A checked record as held: its claims, the JWS, and when its signer's certificate expires.
#[derive(Debug, Clone)]
struct Held {
    claims: RevocationClaims,
    jws: String,
    not_after: u64,
}

/// The records and head a relying party holds.
#[derive(Debug, Clone)]
pub struct RevocationSet {
    bundle: Arc<SpiffeVerifier>,
    /// The first record accepted for each epoch.
    records: BTreeMap<u64, Held>,
    /// Later records for an epoch already held that say something else.
    conflicts: Vec<Held>,
    /// The claims that revoked each target (the first to arrive).
    by_target: HashMap<(RevocationKind, String), RevocationClaims>,
    head: Option<(RevocationHead, String)>,
    max_age: Duration,
    /// Which signatures records and heads must carry ([`RevocationSet::with_signatures`]).
    signatures: SignatureMode,
    /// The verifiers' ML-DSA-65 keys, for [`SignatureMode::PostQuantum`] and
    /// [`SignatureMode::Both`].
    pq_keys: Arc<PqKeyMap>,
}

/// Whether `a` and `b` are one revocation, perhaps signed by different replicas: every claim
/// but `iss` equal.
fn same_revocation(a: &RevocationClaims, b: &RevocationClaims) -> bool {
    (a.epoch, a.kind, &a.target, &a.reason, &a.by, a.iat)
        == (b.epoch, b.kind, &b.target, &b.reason, &b.by, b.iat)
}

fn describe(c: &RevocationClaims) -> String {
    format!("{} {} by {} (signed by {})", c.kind, c.target, c.by, c.iss)
}

/// How complete and how fresh a revocation set is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationView {
    /// Every record from 1 to this epoch is held.
    pub complete_through: u64,
    /// The highest epoch held (records above `complete_through` are held but have gaps below).
    pub highest: u64,
    /// The newest head's epoch, if any head was received.
    pub head_epoch: Option<u64>,
    /// When the newest head was signed.
    pub head_iat: Option<u64>,
    /// Records held as evidence because another record for their epoch said something else.
    pub conflicts: usize,
}

impl RevocationView {
    /// Whether every record the newest head announces is held.
    pub fn is_complete(&self) -> bool {
        self.head_epoch.is_some_and(|e| self.complete_through >= e)
    }

    /// Seconds since the view was known complete: `now` minus the newest head's time when the
    /// set holds everything it announces; `None` when the set is incomplete or has no head.
    pub fn staleness(&self, now: u64) -> Option<u64> {
        if self.is_complete() {
            self.head_iat.map(|t| now.saturating_sub(t))
        } else {
            None
        }
    }
}

fn invalid(m: impl Into<String>) -> RpError {
    RpError::Malformed(m.into())
}

impl RevocationSet {
    /// An empty set that accepts records signed by verifier replicas certified by `bundle`,
    /// and whose checks refuse once its head is older than [`DEFAULT_MAX_AGE`].
    pub fn new(bundle: Arc<SpiffeVerifier>) -> Self {
        Self {
            bundle,
            records: BTreeMap::new(),
            conflicts: Vec::new(),
            by_target: HashMap::new(),
            head: None,
            max_age: DEFAULT_MAX_AGE,
            signatures: SignatureMode::Classical,
            pq_keys: Arc::default(),
        }
    }

    /// Require post-quantum signatures on every record and head from now on: `mode`
    /// [`SignatureMode::PostQuantum`] or [`SignatureMode::Both`] accepts only statements in
    /// the JWS JSON form (`records_pq`, `head_pq` of `GET /v1/revocations`) whose ML-DSA-65
    /// signature verifies under a key of `jwks` (the verifiers' JWKS, its `AKP` keys) and
    /// names the statement's `typ`. The classical signature and its certificate chain are
    /// checked in every mode: they say which replica signed and let one replica's certificate
    /// be revoked, so for revocations `PostQuantum` means both. [`SignatureMode::Classical`]
    /// (the default) accepts either form and checks the classical signature only.
    ///
    /// Refused: a `jwks` that is not a JWKS or holds no ML-DSA-65 key while `mode` needs one.
    pub fn with_signatures(mut self, mode: SignatureMode, jwks: &str) -> Result<Self, RpError> {
        let keys = crate::pq::keys_from_jwks(jwks)?;
        if keys.is_empty() && mode != SignatureMode::Classical {
            return Err(RpError::Keys(
                "no ML-DSA-65 key in the set, which post-quantum revocation checks need".into(),
            ));
        }
        self.signatures = mode;
        self.pq_keys = Arc::new(keys);
        Ok(self)
    }

    /// Which signatures records and heads must carry.
    pub fn signatures(&self) -> SignatureMode {
        self.signatures
    }

    /// `jws` (compact, or JWS JSON with an ML-DSA-65 signature) as its compact classical
    /// form, once its post-quantum signature is checked when the set requires one.
    fn classical_form(&self, jws: &str, typ: &str) -> Result<String, RpError> {
        let (compact, general) = crate::pq::split(jws)?;
        if self.signatures != SignatureMode::Classical {
            crate::pq::verify(&self.pq_keys, general.as_ref(), Some(typ))?;
        }
        Ok(compact)
    }

    /// How old the newest signed head may be (whole seconds) before checks refuse. Verifiers
    /// publish a head every gossip round, so this bounds how long a relying party that hears
    /// nothing (cut off, or silenced) keeps accepting what may have been revoked since.
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    /// As [`RevocationSet::set_max_age`], by value.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.set_max_age(max_age);
        self
    }

    /// How old the newest signed head may be before checks refuse.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The view, if the set can answer at `now`: it has a head, holds every record the head
    /// announces, and the head is at most [`RevocationSet::max_age`] old. Otherwise
    /// [`RpError::RevocationsIncomplete`] or [`RpError::RevocationsStale`].
    pub fn check_current(&self, now: u64) -> Result<RevocationView, RpError> {
        let view = self.view();
        if !view.is_complete() {
            return Err(RpError::RevocationsIncomplete {
                complete_through: view.complete_through,
                head_epoch: view.head_epoch,
            });
        }
        let age = view.staleness(now).unwrap_or(u64::MAX);
        if age > self.max_age.as_secs() {
            return Err(RpError::RevocationsStale {
                age,
                max_age: self.max_age.as_secs(),
            });
        }
        Ok(view)
    }

    /// Check a signed record and keep it. Returns `true` when it revokes something new,
    /// `false` when this revocation was already held (the same record, or the same claims
    /// signed by another replica: the signature whose certificate lasts longer is kept).
    ///
    /// Refused: a record whose signer's certificate does not chain to the trust bundle `now`
    /// (an expired replica certificate, whatever `iat` the record gives itself), names no
    /// verifier replica, or whose serial a held record revoked; a bad signature, or claims
    /// that do not check. A validly signed record for an epoch already held that says
    /// something else is kept as evidence and revokes too, and is reported as
    /// [`RpError::RevocationConflict`].
    pub fn insert_record(&mut self, jws: &str, now: u64) -> Result<bool, RpError> {
        let original = jws;
        let (compact, general) = crate::pq::split(jws)?;
        let jws = compact.as_str();
        let claims: RevocationClaims = peek_claims(jws)?;
        let known = |h: &Held| h.jws == original;
        if self.records.get(&claims.epoch).is_some_and(known) || self.conflicts.iter().any(known) {
            return Ok(false);
        }
        if self.signatures != SignatureMode::Classical {
            crate::pq::verify(&self.pq_keys, general.as_ref(), Some(REVOCATION_TYP))?;
        }
        if claims.iat > now.saturating_add(300) {
            return Err(invalid(format!(
                "revocation record from the future (iat {})",
                claims.iat
            )));
        }
        let signed = x5c::verify(jws, REVOCATION_TYP, &self.bundle, now)?;
        if signed.signer.to_string() != claims.iss {
            return Err(invalid(format!(
                "record says it was issued by {} but is signed by {}",
                claims.iss, signed.signer
            )));
        }
        self.refuse_revoked_signer(&signed.serial)?;
        claims.check().map_err(invalid)?;
        let held = Held {
            claims,
            jws: original.to_string(),
            not_after: signed.not_after,
        };
        let epoch = held.claims.epoch;
        let Some(first) = self.records.get_mut(&epoch) else {
            self.revoke(&held.claims);
            self.records.insert(epoch, held);
            return Ok(true);
        };
        if same_revocation(&first.claims, &held.claims) {
            if held.not_after > first.not_after {
                *first = held;
            }
            return Ok(false);
        }
        let first = first.claims.clone();
        if let Some(c) = self
            .conflicts
            .iter_mut()
            .find(|c| same_revocation(&c.claims, &held.claims))
        {
            if held.not_after > c.not_after {
                *c = held;
            }
            return Ok(false);
        }
        let err = RpError::RevocationConflict {
            epoch,
            held: describe(&first),
            other: describe(&held.claims),
        };
        if self.conflicts.len() < MAX_CONFLICTS {
            self.revoke(&held.claims);
            self.conflicts.push(held);
        }
        Err(err)
    }

    /// Record that `claims` revoke their target (the first record to do so is remembered).
    fn revoke(&mut self, claims: &RevocationClaims) {
        self.by_target
            .entry((claims.kind, claims.target.clone()))
            .or_insert_with(|| claims.clone());
    }

    /// Refuse a statement signed by a replica certificate whose serial a held record revoked.
    fn refuse_revoked_signer(&self, serial: &str) -> Result<(), RpError> {
        match self
            .by_target
            .get(&(RevocationKind::Svid, serial.to_string()))
        {
            Some(c) => Err(RpError::Revoked {
                kind: "svid".into(),
                target: serial.into(),
                epoch: c.epoch,
            }),
            None => Ok(()),
        }
    }

    /// Check a signed head and keep it when it is newer than the one held. The signer's
    /// certificate must be valid `now` and not itself revoked.
    pub fn insert_head(&mut self, jws: &str, now: u64) -> Result<bool, RpError> {
        let compact = self.classical_form(jws, REVOCATION_HEAD_TYP)?;
        let signed = x5c::verify(&compact, REVOCATION_HEAD_TYP, &self.bundle, now)?;
        let head: RevocationHead = serde_json::from_slice(&signed.payload)
            .map_err(|e| invalid(format!("revocation head claims: {e}")))?;
        if signed.signer.to_string() != head.iss {
            return Err(invalid(format!(
                "head says it was issued by {} but is signed by {}",
                head.iss, signed.signer
            )));
        }
        self.refuse_revoked_signer(&signed.serial)?;
        if head.iat > now.saturating_add(300) {
            return Err(invalid(format!("head from the future (iat {})", head.iat)));
        }
        let newer = match &self.head {
            None => true,
            Some((h, _)) => (head.epoch, head.iat) > (h.epoch, h.iat) && head.iat >= h.iat,
        };
        if newer {
            self.head = Some((head, jws.to_string()));
        }
        Ok(newer)
    }

    /// The revocation of `target` of `kind`, if held (from a conflicting record too).
    pub fn revoked(&self, kind: RevocationKind, target: &str) -> Option<&RevocationClaims> {
        self.by_target.get(&(kind, target.to_string()))
    }

    fn refuse(&self, kind: RevocationKind, target: &str) -> Result<(), RpError> {
        match self.revoked(kind, target) {
            Some(c) => Err(RpError::Revoked {
                kind: kind.as_str().into(),
                target: target.into(),
                epoch: c.epoch,
            }),
            None => Ok(()),
        }
    }

    /// Refuse a verified result whose result id (`jti`), workload (`sub`), node (the part of
    /// `sub` before `/`) or signing replica certificate was revoked, and every result while
    /// the set is not current at `now` ([`RevocationSet::check_current`]).
    pub fn check_result(&self, result: &VerifiedResult, now: u64) -> Result<(), RpError> {
        self.check_current(now)?;
        if let Some(jti) = &result.ear.jti {
            self.refuse(RevocationKind::Result, jti)?;
        }
        if let Some(sub) = &result.subject {
            self.refuse(RevocationKind::Workload, sub)?;
            if let Some((node, _)) = sub.split_once('/') {
                self.refuse(RevocationKind::Node, node)?;
            }
        }
        if let Some(serial) = &result.signer_serial {
            self.refuse(RevocationKind::Svid, serial)?;
        }
        Ok(())
    }

    /// Refuse an X.509-SVID (DER) whose serial number was revoked, and every SVID while the
    /// set is not current at `now` ([`RevocationSet::check_current`]).
    pub fn check_svid(&self, der: &[u8], now: u64) -> Result<(), RpError> {
        self.check_current(now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| invalid(format!("certificate does not parse: {e}")))?;
        self.refuse(
            RevocationKind::Svid,
            &vouch_core::revocation::serial_target(cert.raw_serial()),
        )
    }

    /// How complete and fresh the set is.
    pub fn view(&self) -> RevocationView {
        let mut complete = 0;
        for e in self.records.keys() {
            if *e == complete + 1 {
                complete = *e;
            } else {
                break;
            }
        }
        RevocationView {
            complete_through: complete,
            highest: self.records.keys().next_back().copied().unwrap_or(0),
            head_epoch: self.head.as_ref().map(|(h, _)| h.epoch),
            head_iat: self.head.as_ref().map(|(h, _)| h.iat),
            conflicts: self.conflicts.len(),
        }
    }

    /// The claims of the records held, by epoch (the first for each epoch).
    pub fn records(&self) -> impl Iterator<Item = &RevocationClaims> {
        self.records.values().map(|h| &h.claims)
    }

    /// The claims of records kept as evidence: validly signed, for an epoch whose first record
    /// says something else. They revoke too; any is a sign that a replica misbehaved.
    pub fn conflicts(&self) -> impl Iterator<Item = &RevocationClaims> {
        self.conflicts.iter().map(|h| &h.claims)
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The signed records held, by epoch, and the newest head: what [`RevocationSet::save`]
    /// writes (with the conflicting records) and what a relying party can pass on.
    pub fn signed(&self) -> (Vec<&str>, Option<&str>) {
        (
            self.records.values().map(|h| h.jws.as_str()).collect(),
            self.head.as_ref().map(|(_, j)| j.as_str()),
        )
    }

    /// Write the signed records, the conflicting ones and the head to `path` (JSON, replaced
    /// atomically).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let (records, head) = self.signed();
        let conflicts: Vec<&str> = self.conflicts.iter().map(|h| h.jws.as_str()).collect();
        let json = serde_json::json!({ "records": records, "conflicts": conflicts, "head": head });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())?;
        std::fs::rename(&tmp, path)
    }

    /// Read records, conflicting records and a head written by [`RevocationSet::save`] (or a
    /// `GET /v1/revocations` response saved as is, whose `records_pq`/`head_pq` are taken when
    /// present), checking each again as of `now`. Returns how many records were kept that revoke
    /// something new (conflicting ones included).
    ///
    /// A record that no longer passes (its signer's certificate expired, or was revoked,
    /// since it arrived) is left out, as is a head that no longer passes: the set is then
    /// incomplete, and its checks refuse, until gossip brings a current copy (verifier
    /// replicas sign what they publish with their current certificate).
    pub fn load(&mut self, path: &Path, now: u64) -> Result<usize, RpError> {
        let bytes =
            std::fs::read(path).map_err(|e| invalid(format!("reading {}: {e}", path.display())))?;
        self.load_json(&bytes, now)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))
    }

    /// [`RevocationSet::load`] of JSON already read: a saved set, or a `GET /v1/revocations`
    /// answer (every page's records in one `records` array, as `vouch verify --revocations
    /// URL` fetches them).
    pub fn load_json(&mut self, bytes: &[u8], now: u64) -> Result<usize, RpError> {
        #[derive(serde::Deserialize)]
        struct Saved {
            records: Vec<String>,
            #[serde(default)]
            conflicts: Vec<String>,
            head: Option<String>,
            #[serde(default)]
            records_pq: Vec<String>,
            #[serde(default)]
            head_pq: Option<String>,
        }
        let mut saved: Saved = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a revocation feed: {e}")))?;
        // A `GET /v1/revocations` answer's post-quantum forms are taken instead when present
        // (every mode accepts them).
        if !saved.records_pq.is_empty() {
            saved.records = std::mem::take(&mut saved.records_pq);
        }
        if saved.head_pq.is_some() {
            saved.head = saved.head_pq.take();
        }
        let mut added = 0;
        for r in saved.records.iter().chain(&saved.conflicts) {
            let conflicts = self.conflicts.len();
            // A conflicting record kept again revokes too (its error is the expected report).
            if matches!(self.insert_record(r, now), Ok(true)) || self.conflicts.len() > conflicts {
                added += 1;
            }
        }
        if let Some(h) = &saved.head {
            let _ = self.insert_head(h, now);
        }
        Ok(added)
    }
}

/// The claims of a record, read before its signature is checked (to pick the time the signer's
/// certificate must have been valid at); nothing is trusted until `x5c::verify` passes.
fn peek_claims(jws: &str) -> Result<RevocationClaims, RpError> {
    use base64::Engine as _;
    if jws.len() > x5c::MAX_JWS {
        return Err(invalid("revocation record too long"));
    }
    let p = jws
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid("revocation record is not a compact JWS"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| invalid("revocation record payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("revocation record claims: {e}")))
}

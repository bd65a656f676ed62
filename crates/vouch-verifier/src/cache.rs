//! Appraisals already made, reused when nothing they depend on changed.
//!
//! An appraisal is a pure function of the claims it was made over (and, for `composite`
//! evidence, the component views), the policy (id and version: a version's text never
//! changes) and the reference values (their revision, which moves with every change). The key
//! is the SHA-256 of all of them, the claims as the exact JSON bytes the policy was given (the
//! large measurement parts by the SHA-256 of their JSON), so a change of any claim, the policy
//! or a reference value is a different key and a fresh appraisal. A policy that calls a builtin whose answer is not a function of its input (the
//! time, random numbers, HTTP) is never cached ([`vouch_policy::PolicySource::is_deterministic`]).
//!
//! The cache is bounded: past its capacity the oldest entry goes first.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vouch_evidence::VerifiedEvidence;
use vouch_policy::{Appraisal, PolicySource};

/// Appraisals kept by default: with one workload per node, a fleet of this many nodes whose
/// claims repeat is appraised once per change.
pub const DEFAULT_ENTRIES: usize = 16_384;

/// The digest of everything an appraisal depends on.
pub type Key = [u8; 32];

/// One appraisal: the attester's, and each component's for `composite` evidence.
#[derive(Debug)]
pub struct CachedAppraisal {
    /// The whole attester's appraisal (its status raised to the worst component's).
    pub whole: Appraisal,
    /// Each component's appraisal, by submodule name.
    pub components: Vec<(String, Appraisal)>,
}

/// How the cache has been used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Appraisals answered from the cache.
    pub hits: u64,
    /// Appraisals made (not in the cache, or not cacheable).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// A bounded map from [`Key`] to appraisal.
#[derive(Debug)]
pub struct AppraisalCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Arc<CachedAppraisal>>,
    order: VecDeque<Key>,
}

/// The key of an appraisal of `verified` by `policy` with reference values at `refs_revision`.
pub fn key(policy: &PolicySource, refs_revision: u64, verified: &VerifiedEvidence) -> Key {
    let mut h = Sha256::new();
    h.update(b"vouch-appraisal-v1\0");
    h.update((policy.id.len() as u64).to_be_bytes());
    h.update(policy.id.as_bytes());
    h.update(policy.version.to_be_bytes());
    h.update(refs_revision.to_be_bytes());
    // The claims, but each measurement part by the SHA-256 of its JSON instead of its bytes:
    // the same commitment (a part's claims are a function of the part and, for `files`, of the
    // signers in the reference values, whose revision is in the key), without serialising
    // ~30 KB of package lists and process tables per attestation. Serialising into the hash
    // cannot fail: the values are already JSON.
    match verified.claims.as_object() {
        Some(claims) if verified.parts.len() == vouch_core::MEASUREMENT_PARTS.len() => {
            for (k, v) in claims {
                if vouch_core::MEASUREMENT_PARTS.contains(&k.as_str()) {
                    continue;
                }
                h.update((k.len() as u64).to_be_bytes());
                h.update(k.as_bytes());
                let _ = serde_json::to_writer(&mut h, v);
                h.update(b"\0");
            }
            h.update(b"\0parts");
            for (digest, part) in &verified.parts {
                h.update(part.name().as_bytes());
                h.update(b"=");
                h.update(digest.as_bytes());
                h.update(b"\0");
            }
        }
        _ => {
            h.update(b"\0whole");
            let _ = serde_json::to_writer(&mut h, &verified.claims);
        }
    }
    h.update(b"\0components");
    h.update((verified.components.len() as u64).to_be_bytes());
    for c in &verified.components {
        for s in std::iter::once(&c.name)
            .chain(std::iter::once(&c.kind.as_str().to_string()))
            .chain(c.without.iter())
        {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        h.update(b"\0");
    }
    let _ = h.flush();
    h.finalize().into()
}

impl AppraisalCache {
    /// A cache of at most `capacity` appraisals (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The appraisal made under `key`, if held; counts a hit or a miss.
    pub fn get(&self, key: &Key) -> Option<Arc<CachedAppraisal>> {
        let found = self.lock().map.get(key).cloned();
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Hold `appraisal` under `key`, dropping the oldest entries past the capacity.
    pub fn put(&self, key: Key, appraisal: Arc<CachedAppraisal>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.map.insert(key, appraisal).is_none() {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Count an appraisal made without looking in the cache (a policy that is not cacheable).
    pub fn count_uncached(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Hits, misses and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().map.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appraisal(v: u32) -> Arc<CachedAppraisal> {
        Arc::new(CachedAppraisal {
            whole: Appraisal {
                status: vouch_core::ArStatus::Affirming,
                trust_vector: Default::default(),
                findings: Vec::new(),
                policy_id: "p".into(),
                policy_version: v,
            },
            components: Vec::new(),
        })
    }

    #[test]
    fn bounded_oldest_first() {
        let c = AppraisalCache::new(2);
        c.put([1; 32], appraisal(1));
        c.put([2; 32], appraisal(2));
        c.put([3; 32], appraisal(3));
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(c.get(&[3; 32]).map(|a| a.whole.policy_version), Some(3));
        assert_eq!(c.stats().entries, 2);
        assert_eq!((c.stats().hits, c.stats().misses), (1, 1));
        let none = AppraisalCache::new(0);
        none.put([1; 32], appraisal(1));
        assert!(none.get(&[1; 32]).is_none());
    }
}

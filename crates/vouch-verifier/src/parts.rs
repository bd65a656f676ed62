//! The measurement parts this verifier holds, so agents may send unchanged ones by digest.
//!
//! Content-addressed: a part is held under the SHA-256 of its JSON as this verifier computed
//! it from a payload it verified, never under a digest an agent claimed; so any agent naming
//! that digest gets exactly that content back, which it could as well have sent in full.
//! Bounded by an estimate of the bytes held; past it the oldest parts go first, and an agent
//! that names a part no longer held is told `parts_unknown` and sends it in full.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use vouch_evidence::{HeldPart, PartSource};

/// Bytes of parts held by default.
pub const DEFAULT_BYTES: usize = 64 * 1024 * 1024;

/// Parts by (name, digest).
#[derive(Debug)]
pub struct PartStore {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(&'static str, String), (HeldPart, usize)>,
    order: VecDeque<(&'static str, String)>,
    bytes: usize,
}

impl PartStore {
    /// A store holding at most about `budget` bytes of parts (0: none).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold `part` under `digest` (the SHA-256 this verifier computed for it).
    pub fn put(&self, digest: &str, part: &HeldPart) {
        let size = part.approx_bytes() + 128;
        if size > self.budget {
            return;
        }
        let key = (part.name(), digest.to_string());
        let mut inner = self.lock();
        if inner.map.contains_key(&key) {
            return;
        }
        inner.map.insert(key.clone(), (part.clone(), size));
        inner.order.push_back(key);
        inner.bytes += size;
        while inner.bytes > self.budget {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, s)) = inner.map.remove(&old) {
                inner.bytes -= s;
            }
        }
    }

    /// Parts held and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes)
    }
}

impl PartSource for PartStore {
    fn part(&self, name: &str, digest: &str) -> Option<HeldPart> {
        let inner = self.lock();
        let name = vouch_core::MEASUREMENT_PARTS.iter().find(|n| **n == name)?;
        inner
            .map
            .get(&(*name, digest.to_string()))
            .map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_by_bytes_oldest_first() {
        let part = |n: usize| {
            HeldPart::Packages(Arc::new(
                (0..n).map(|i| (format!("p{i}"), "1.0".into())).collect(),
            ))
        };
        let one = part(10).approx_bytes() + 128;
        let s = PartStore::new(one * 2);
        s.put("a", &part(10));
        s.put("b", &part(10));
        s.put("c", &part(10));
        assert!(s.part("packages", "a").is_none());
        assert!(s.part("packages", "c").is_some());
        assert!(
            s.part("processes", "c").is_none(),
            "held under its own name only"
        );
        assert_eq!(s.usage().0, 2);
        // Larger than the whole budget: not held at all.
        s.put("d", &part(1000));
        assert!(s.part("packages", "d").is_none());
    }
}

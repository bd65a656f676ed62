//! Attestation claims stored deduplicated (issue 13, durable writes): the large members of a
//! claims object, its top-level [`MEASUREMENT_PARTS`] (`files`, `processes`, `listening`,
//! `packages`: ~30 KB on a real machine, and the same package list on many nodes, the same
//! process table in many attestations of one node), are each stored once in `claim_parts`
//! under the SHA-256 of their JSON; the record's `attestations.claims` holds the rest of the
//! object, and `attestations.claims_parts` names the parts taken out (`{"packages": "<hex>",
//! …}`).
//!
//! The references live in their own column, not in the claims text, so no claim value can be
//! mistaken for one: a row whose `claims_parts` is NULL (every row written before migration
//! 0009, and claims with no large part) is read back as it is. Decoding is strict: only the
//! four part names, each a 64-character lowercase hex digest, each absent from the stored rest;
//! a part's body must hash to its digest; a missing part row is
//! [`StoreError::ClaimPartMissing`] naming the digest. Reading back gives exactly the claims
//! written (the same `serde_json::Value`, so the same JSON text: object keys are sorted).
//!
//! The store remembers (bounded, in memory) which digests a committed transaction put in the
//! table, and does not send those bodies again; it marks them only after the commit, so a
//! rolled-back transaction leaves nothing marked. Another replica on one PostgreSQL may insert
//! a part first: `ON CONFLICT DO NOTHING` makes that harmless. Part rows are never deleted
//! (attestations are append-only), which is what makes the memory sound.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use vouch_core::MEASUREMENT_PARTS;

use crate::{Result, StoreError};

/// Parts whose JSON is shorter than this stay inline in the claims: a reference and a row
/// would cost more than they save.
pub(crate) const MIN_PART_BYTES: usize = 256;

/// Digests remembered as stored, per store (32 bytes each; ~5 MB with the set's overhead).
pub(crate) const KNOWN_PARTS: usize = 65_536;

/// One part taken out of a claims object.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// SHA-256 of `body`.
    pub(crate) digest: [u8; 32],
    /// `digest`, lowercase hex (the table's key).
    pub(crate) hex: String,
    /// The part's JSON.
    pub(crate) body: String,
}

/// A claims object as it is stored.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    /// `attestations.claims`: the claims without the parts taken out.
    pub(crate) claims: String,
    /// `attestations.claims_parts`: part name to digest, `None` when no part was taken out.
    pub(crate) refs: Option<String>,
    /// The parts taken out.
    pub(crate) parts: Vec<Part>,
}

/// Split `claims` for storing: each top-level [`MEASUREMENT_PARTS`] member at least
/// [`MIN_PART_BYTES`] long is taken out and hashed. Anything else (claims that are not an
/// object, or have no large part) is stored whole, as before.
pub(crate) fn split(claims: &Value) -> Split {
    let whole = || Split {
        claims: to_json(claims),
        refs: None,
        parts: Vec::new(),
    };
    let Some(obj) = claims.as_object() else {
        return whole();
    };
    let mut parts = Vec::new();
    let mut refs = Map::new();
    for name in MEASUREMENT_PARTS {
        let Some(v) = obj.get(name) else { continue };
        let body = to_json(v);
        if body.len() < MIN_PART_BYTES {
            continue;
        }
        let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        let hex = hex::encode(digest);
        refs.insert(name.to_string(), Value::String(hex.clone()));
        parts.push(Part { digest, hex, body });
    }
    if parts.is_empty() {
        return whole();
    }
    // A part taken out leaves `null` where it stood, so that joining puts it back in its place:
    // with serde_json's `preserve_order` (which the workspace's regorus turns on) an object's
    // keys keep their order, and claims must read back byte for byte as they were written.
    let rest: Map<String, Value> = obj
        .iter()
        .map(|(k, v)| {
            let v = if refs.contains_key(k.as_str()) {
                Value::Null
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    Split {
        claims: to_json(&Value::Object(rest)),
        refs: Some(to_json(&Value::Object(refs))),
        parts,
    }
}

/// `v`'s JSON, written straight into a buffer (`Value`'s `Display` goes through a formatter
/// that costs more than the writing: 12 % of the samples of a 30 KB-claims bench).
fn to_json(v: &Value) -> String {
    // Writing a `Value` cannot fail (its map keys are strings); were it to, `Display` writes
    // the same text.
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// The references of a stored record (`attestations.claims_parts`), checked: an object whose
/// keys are part names and whose values are lowercase hex SHA-256 digests.
pub(crate) fn parse_refs(id: &str, refs: &str) -> Result<Vec<(&'static str, String)>> {
    let corrupt =
        |why: String| StoreError::Corrupt(format!("claims_parts of attestation {id}: {why}"));
    let v: Value = serde_json::from_str(refs).map_err(|e| corrupt(e.to_string()))?;
    let Value::Object(map) = v else {
        return Err(corrupt("not an object".into()));
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Some(name) = MEASUREMENT_PARTS.iter().find(|p| **p == k) else {
            return Err(corrupt(format!("{k:?} is not a measurement part")));
        };
        match v {
            Value::String(d)
                if d.len() == 64
                    && d.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                out.push((*name, d));
            }
            other => return Err(corrupt(format!("{k}: {other} is not a SHA-256 digest"))),
        }
    }
    Ok(out)
}

/// Put the parts named by `refs` back into `rest` (the stored claims of attestation `id`),
/// their bodies looked up in `bodies` (digest, body), each checked against its digest.
pub(crate) fn join(
    id: &str,
    rest: Value,
    refs: &[(&'static str, String)],
    bodies: &[(String, String)],
) -> Result<Value> {
    let corrupt = |why: String| StoreError::Corrupt(format!("claims of attestation {id}: {why}"));
    let Value::Object(mut obj) = rest else {
        return Err(corrupt(
            "parts are referenced but the claims are not an object".into(),
        ));
    };
    for (name, digest) in refs {
        let Some((_, body)) = bodies.iter().find(|(d, _)| d == digest) else {
            return Err(StoreError::ClaimPartMissing {
                attestation: id.to_string(),
                part: (*name).to_string(),
                digest: digest.clone(),
            });
        };
        if hex::encode(Sha256::digest(body.as_bytes())) != *digest {
            return Err(corrupt(format!(
                "claim part {digest} ({name}) does not hash to its digest"
            )));
        }
        let v: Value = serde_json::from_str(body)
            .map_err(|e| corrupt(format!("claim part {digest} ({name}): {e}")))?;
        match obj.get_mut(*name) {
            // Its place, kept by `split`.
            Some(slot) if slot.is_null() => *slot = v,
            Some(_) => {
                return Err(corrupt(format!(
                    "{name} is both stored inline and referenced"
                )));
            }
            None => {
                obj.insert((*name).to_string(), v);
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Digests of parts a committed transaction of this store put in `claim_parts` (or found
/// there), at most [`KNOWN_PARTS`] of them, the oldest forgotten first. Forgetting one only
/// costs sending its body again (`ON CONFLICT DO NOTHING`).
#[derive(Debug)]
pub(crate) struct KnownParts {
    inner: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Default for KnownParts {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Known::default()),
        }
    }
}

impl KnownParts {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding it leaves a set that is still a set: go on with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The parts of `parts` not known to be stored, each once, in digest order (the order in
    /// which every writer takes their index locks on PostgreSQL).
    pub(crate) fn unknown<'a>(&self, parts: impl Iterator<Item = &'a Part>) -> Vec<&'a Part> {
        let known = self.lock();
        let mut out: Vec<&Part> = parts.filter(|p| !known.set.contains(&p.digest)).collect();
        drop(known);
        out.sort_unstable_by_key(|p| p.digest);
        out.dedup_by_key(|p| p.digest);
        out
    }

    /// Remember `parts` as stored: call only once the transaction that wrote them committed.
    pub(crate) fn committed<'a>(&self, parts: impl Iterator<Item = &'a Part>) {
        let mut known = self.lock();
        for p in parts {
            if known.set.insert(p.digest) {
                known.order.push_back(p.digest);
                if known.order.len() > KNOWN_PARTS
                    && let Some(old) = known.order.pop_front()
                {
                    known.set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn big(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"name": format!("p{i}"), "pid": i}))
                .collect(),
        )
    }

    #[test]
    fn split_then_join_gives_the_same_claims() {
        let c = json!({
            "evidence": {"kind": "software"}, "packages": {"a": "1"}, "processes": big(50),
            "files": {"/etc/x": {"sha256": "00"}}, "listening": big(40), "z": [1.5, null],
        });
        let s = split(&c);
        // `packages` and `files` are small: inline.
        assert_eq!(s.parts.len(), 2);
        let refs = parse_refs("a", s.refs.as_deref().unwrap()).unwrap();
        let bodies: Vec<_> = s
            .parts
            .iter()
            .map(|p| (p.hex.clone(), p.body.clone()))
            .collect();
        let rest: Value = serde_json::from_str(&s.claims).unwrap();
        assert!(rest["processes"].is_null());
        let back = join("a", rest, &refs, &bodies).unwrap();
        // Byte for byte, key order included (serde_json may preserve insertion order).
        assert_eq!(back.to_string(), c.to_string());
    }

    #[test]
    fn claims_without_large_parts_are_stored_whole() {
        for c in [json!({"a": 1}), json!([1, 2]), json!({"packages": {}})] {
            let s = split(&c);
            assert!(s.refs.is_none() && s.parts.is_empty());
            assert_eq!(s.claims, c.to_string());
        }
    }

    #[test]
    fn a_claim_that_looks_like_a_reference_is_kept_as_it_is() {
        let fake = "ab".repeat(32);
        let c = json!({"packages": {"$part": fake}, "processes": {"$part": fake, "pad": "x".repeat(300)}});
        let s = split(&c);
        let rest: Value = serde_json::from_str(&s.claims).unwrap();
        let refs = parse_refs("a", s.refs.as_deref().unwrap()).unwrap();
        let bodies: Vec<_> = s
            .parts
            .iter()
            .map(|p| (p.hex.clone(), p.body.clone()))
            .collect();
        assert_eq!(join("a", rest, &refs, &bodies).unwrap(), c);
    }

    #[test]
    fn bad_references_and_bodies_are_errors_not_panics() {
        for bad in [
            "nope",
            "[]",
            r#"{"kernel": "00"}"#,
            r#"{"files": "XYZ"}"#,
            r#"{"files": 1}"#,
        ] {
            assert!(
                matches!(parse_refs("a", bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
        let d = "ab".repeat(32);
        let refs = vec![("files", d.clone())];
        match join("a", json!({}), &refs, &[]) {
            Err(StoreError::ClaimPartMissing { digest, .. }) => assert_eq!(digest, d),
            other => panic!("{other:?}"),
        }
        // A body that is not the one its digest names.
        let altered = vec![(d.clone(), "[]".to_string())];
        assert!(matches!(
            join("a", json!({}), &refs, &altered),
            Err(StoreError::Corrupt(_))
        ));
        // Both inline and referenced.
        let body = "[1]".to_string();
        let refs = vec![("files", hex::encode(Sha256::digest(body.as_bytes())))];
        let bodies = vec![(refs[0].1.clone(), body)];
        assert!(matches!(
            join("a", json!({"files": []}), &refs, &bodies),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            join("a", json!(1), &refs, &bodies),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn known_parts_are_bounded_and_deduplicated() {
        let part = |b: u8| Part {
            digest: [b; 32],
            hex: String::new(),
            body: String::new(),
        };
        let k = KnownParts::default();
        let ps = [part(2), part(1), part(2)];
        let u = k.unknown(ps.iter());
        assert_eq!(u.iter().map(|p| p.digest[0]).collect::<Vec<_>>(), [1, 2]);
        k.committed(ps.iter());
        assert!(k.unknown(ps.iter()).is_empty());
        let many: Vec<Part> = (0..=KNOWN_PARTS)
            .map(|i| Part {
                digest: Sha256::digest(i.to_le_bytes()).into(),
                hex: String::new(),
                body: String::new(),
            })
            .collect();
        k.committed(many.iter());
        // The two oldest were forgotten; the set stays at its bound.
        assert_eq!(k.unknown(ps.iter()).len(), 2);
        assert_eq!(k.lock().set.len(), KNOWN_PARTS);
    }
}

//! The audit log's Merkle tree (RFC 9162 §2.1, the hashing of RFC 6962) and its signed heads.
//!
//! Every decision, enrollment, change and revocation the verifier makes is one entry of an
//! append-only log: entry `seq` (0, 1, 2 … without gaps) is the UTF-8 JSON of an [`AuditEntry`],
//! and its leaf hash is `SHA-256(0x00 || entry bytes)`; an interior node is
//! `SHA-256(0x01 || left || right)`, the tree over `n` entries splits at the largest power of two
//! below `n`. A tree head says "the log has `size` entries and its root is `root`", signed by a
//! verifier replica like the revocation heads (compact JWS, `x5c` certified by the trust domain's
//! authority). Anyone holding the entries can recompute the root: one modified, removed,
//! inserted or reordered entry changes it. An inclusion proof shows one entry is in a tree of a
//! given head without the others; a consistency proof shows a later head extends an earlier one
//! (nothing before it was rewritten).
//!
//! This module is pure: the verifier builds proofs from the leaf hashes it stores, and the CLI
//! and relying parties check them with the same code.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `typ` of a signed audit tree head.
pub const AUDIT_HEAD_TYP: &str = "vouch-audit-head+jwt";
/// Longest audit entry accepted, bytes (an attestation result's reasons included).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Most hashes a proof may carry (a tree of 2^64 entries needs 64; consistency at most twice).
pub const MAX_PROOF_HASHES: usize = 130;

/// A SHA-256 hash: a leaf, an interior node or a root.
pub type Hash = [u8; 32];

/// One entry of the audit log, as it is hashed: the JSON of this struct, exactly the bytes
/// stored and exported (fields in this order, no insignificant whitespace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its position in the log, from 0, without gaps.
    pub seq: u64,
    /// When it was appended, Unix seconds.
    pub time: u64,
    /// What happened (`attestation`, `enroll`, `policy.add`, `refvalue.remove`, `revoke` …).
    pub kind: String,
    /// Who did it: the admin token's name, a node id, or the verifier itself.
    pub actor: String,
    /// What it was done to: a workload, node, policy, reference value or entry id.
    pub subject: String,
    /// The details, kind-specific.
    pub body: serde_json::Value,
}

impl AuditEntry {
    /// The bytes that are stored, exported and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse entry bytes, bounded ([`MAX_ENTRY_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(ProofError::Malformed(format!(
                "audit entry of {} bytes (at most {MAX_ENTRY_BYTES})",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| ProofError::Malformed(format!("audit entry is not valid JSON: {e}")))
    }
}

/// The claims of a signed tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// The SPIFFE ID of the replica that signed it.
    pub iss: String,
    /// How many entries the tree has.
    pub size: u64,
    /// Its root hash, lower-case hex.
    pub root: String,
    /// When it was signed, Unix seconds.
    pub iat: u64,
}

impl AuditHead {
    /// The root as bytes.
    pub fn root_hash(&self) -> Result<Hash, ProofError> {
        parse_hash(&self.root)
    }
}

/// Why a proof, a head or a log does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The input cannot be read at all.
    #[error("{0}")]
    Malformed(String),
    /// Indices or sizes that no proof can exist for.
    #[error("{0}")]
    Range(String),
    /// The proof has the wrong number of hashes for its indices.
    #[error("proof has {got} hashes, {want} expected")]
    Length {
        /// Hashes given.
        got: usize,
        /// Hashes a proof for these indices has.
        want: usize,
    },
    /// The recomputed root is not the one claimed.
    #[error("root mismatch: computed {computed}, expected {expected}")]
    RootMismatch {
        /// The root the entries or the proof lead to (hex).
        computed: String,
        /// The root of the head (hex).
        expected: String,
    },
}

/// Parse a 32-byte hash from lower- or upper-case hex.
pub fn parse_hash(s: &str) -> Result<Hash, ProofError> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h)
        .map_err(|e| ProofError::Malformed(format!("hash {s:?} is not 64 hex digits: {e}")))?;
    Ok(h)
}

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut d = Sha256::new();
    d.update([0u8]);
    d.update(entry);
    d.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([1u8]);
    d.update(left);
    d.update(right);
    d.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of leaf hashes `leaves` (RFC 9162 §2.1.1 MTH); SHA-256 of nothing for
/// an empty tree.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1 PATH);
/// `None` when `index` is not in the tree.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        if d.len() <= 1 {
            return;
        }
        let k = split(d.len());
        if m < k {
            path(m, &d[..k], out);
            out.push(root(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root(&d[..k]));
        }
    }
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
}

/// The consistency proof between the tree of the first `first` leaves and the tree of all
/// `leaves` (RFC 9162 §2.1.4.1 PROOF); `None` unless `0 < first <= leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], first: usize) -> Option<Vec<Hash>> {
    fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
        let n = d.len();
        if m == n {
            if !whole {
                out.push(root(d));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, &d[..k], whole, out);
            out.push(root(&d[k..]));
        } else {
            subproof(m - k, &d[k..], false, out);
            out.push(root(&d[..k]));
        }
    }
    if first == 0 || first > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(first, leaves, true, &mut out);
    Some(out)
}

fn mismatch(computed: &Hash, expected: &Hash) -> ProofError {
    ProofError::RootMismatch {
        computed: hex::encode(computed),
        expected: hex::encode(expected),
    }
}

/// Check that `leaf` is entry `index` of the tree of `size` entries whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::Range(format!(
            "entry {index} is not in a tree of {size} entries"
        )));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Length {
            got: proof.len(),
            want: MAX_PROOF_HASHES,
        });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::Length {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Length {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    if &r != root {
        return Err(mismatch(&r, root));
    }
    Ok(())
}

/// How many hashes the inclusion proof of `index` in a tree of `size` has.
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut f_n, mut s_n, mut n) = (index, size - 1, 0);
    while s_n != 0 {
        if f_n & 1 == 0 && f_n == s_n {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
        n += 1;
    }
    n
}

/// Check that the tree of `second` entries with root `second_root` extends the tree of `first`
/// entries with root `first_root` (RFC 9162 §2.1.4.2): every entry of the first is in the second,
/// unchanged and in the same place.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::Range(format!(
            "a tree of {first} entries cannot be a prefix of one of {second}"
        )));
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Length {
            got: proof.len(),
            want: MAX_PROOF_HASHES,
        });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::Length {
                got: proof.len(),
                want: 0,
            });
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(mismatch(second_root, first_root))
        };
    }
    if first == 0 {
        // The empty tree is a prefix of every tree; RFC 9162 has no proof for it.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Length {
                got: proof.len(),
                want: 0,
            })
        };
    }
    if proof.is_empty() {
        return Err(ProofError::Malformed(format!(
            "empty consistency proof {first} → {second}"
        )));
    }
    // When `first` is an exact power of two, the first root is the proof's implicit first node.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::Length { got: 0, want: 1 });
    };
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::Malformed(format!(
                "consistency proof {first} → {second} has too many hashes ({})",
                proof.len()
            )));
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Malformed(format!(
            "consistency proof {first} → {second} has too few hashes ({})",
            proof.len()
        )));
    }
    if &fr != first_root {
        return Err(mismatch(&fr, first_root));
    }
    if &sr != second_root {
        return Err(mismatch(&sr, second_root));
    }
    Ok(())
}

/// What checking a whole log found: its size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLog {
    /// Entries read.
    pub size: u64,
    /// The root they hash to.
    pub root: Hash,
}

/// Check a log's entries in order (each the exact stored bytes): every entry parses, its `seq`
/// is its position (a removed, inserted or reordered entry is named here), and the leaf hashes
/// are returned for the root. `progress` is called after each entry.
pub fn check_entries<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Hash>, ProofError> {
    let mut checker = EntryChecker::default();
    for bytes in entries {
        checker.push(bytes)?;
        progress(checker.len());
    }
    Ok(checker.finish())
}

/// [`check_entries`] one entry at a time, for logs read as a stream: only the leaf hashes
/// (32 bytes an entry) are kept, not the entries.
#[derive(Debug, Default)]
pub struct EntryChecker {
    leaves: Vec<Hash>,
}

impl EntryChecker {
    /// Check the next entry (its exact bytes): it parses and its `seq` is its position.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ProofError> {
        let pos = self.leaves.len() as u64;
        let e = AuditEntry::parse(bytes)
            .map_err(|err| ProofError::Malformed(format!("entry {pos}: {err}")))?;
        if e.seq != pos {
            return Err(ProofError::Malformed(format!(
                "entry {pos} says it is entry {} (entries removed, inserted or reordered)",
                e.seq
            )));
        }
        self.leaves.push(leaf_hash(bytes));
        Ok(())
    }

    /// Entries checked so far.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Whether no entry was checked yet.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaf hashes, in order.
    pub fn finish(self) -> Vec<Hash> {
        self.leaves
    }
}

/// Check that `leaves` (from [`check_entries`]) are exactly the tree of `head`: the first
/// `head.size` of them hash to its root. Entries after the head are not covered by it.
pub fn check_against_head(leaves: &[Hash], head: &AuditHead) -> Result<CheckedLog, ProofError> {
    let want = head.root_hash()?;
    let size = usize::try_from(head.size)
        .map_err(|_| ProofError::Range(format!("head size {} too large", head.size)))?;
    if leaves.len() < size {
        return Err(ProofError::Range(format!(
            "the head covers {} entries but the log has only {} (entries removed)",
            head.size,
            leaves.len()
        )));
    }
    let r = root(&leaves[..size]);
    if r != want {
        return Err(mismatch(&r, &want));
    }
    Ok(CheckedLog {
        size: head.size,
        root: r,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    // Test vectors of transparency-dev/merkle (testonly/constants.go and proof/verify_test.go,
    // cited in testdata/SOURCES.md): the leaf inputs, the roots of every prefix, and proofs.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index from 1, tree size, proof)
    const INCLUSION: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            3,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    /// (first size, second size, proof)
    const CONSISTENCY: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    fn hashes(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|h| parse_hash(h).unwrap()).collect()
    }

    #[test]
    fn roots_of_every_prefix_match_the_vectors() {
        let l = leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&l[..n])), *want, "size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_vectors_and_verify() {
        let l = leaves();
        for (leaf, size, proof) in INCLUSION {
            let (i, n) = (*leaf as usize - 1, *size as usize);
            let want = hashes(proof);
            assert_eq!(
                inclusion_proof(&l[..n], i).unwrap(),
                want,
                "{leaf} of {size}"
            );
            let r = parse_hash(ROOTS[n]).unwrap();
            verify_inclusion(*leaf - 1, *size, &l[i], &want, &r).unwrap();
            // Another leaf, another index, a flipped proof byte, a short proof: refused.
            let other = l[(i + 1) % n.max(2)];
            if n > 1 {
                assert!(verify_inclusion(*leaf - 1, *size, &other, &want, &r).is_err());
                let mut bad = want.clone();
                bad[0][5] ^= 1;
                assert!(matches!(
                    verify_inclusion(*leaf - 1, *size, &l[i], &bad, &r),
                    Err(ProofError::RootMismatch { .. })
                ));
                assert!(matches!(
                    verify_inclusion(*leaf - 1, *size, &l[i], &want[1..], &r),
                    Err(ProofError::Length { .. }) | Err(ProofError::RootMismatch { .. })
                ));
            }
            assert!(verify_inclusion(*size, *size, &l[i], &want, &r).is_err());
        }
    }

    #[test]
    fn consistency_proofs_match_the_vectors_and_verify() {
        let l = leaves();
        for (m, n, proof) in CONSISTENCY {
            let want = hashes(proof);
            let (mu, nu) = (*m as usize, *n as usize);
            assert_eq!(consistency_proof(&l[..nu], mu).unwrap(), want, "{m} → {n}");
            let (r1, r2) = (
                parse_hash(ROOTS[mu]).unwrap(),
                parse_hash(ROOTS[nu]).unwrap(),
            );
            verify_consistency(*m, *n, &r1, &r2, &want).unwrap();
            if m != n {
                let mut bad = want.clone();
                bad[0][0] ^= 0x80;
                assert!(verify_consistency(*m, *n, &r1, &r2, &bad).is_err());
                // A different old root (the log was rewritten before the first head).
                let r0 = parse_hash(ROOTS[mu - 1]).unwrap();
                assert!(verify_consistency(*m, *n, &r0, &r2, &want).is_err());
                assert!(verify_consistency(*n, *m, &r2, &r1, &want).is_err());
            }
        }
    }

    #[test]
    fn every_generated_proof_verifies_up_to_40_leaves() {
        let l: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=l.len() {
            let r = root(&l[..n]);
            for i in 0..n {
                let p = inclusion_proof(&l[..n], i).unwrap();
                verify_inclusion(i as u64, n as u64, &l[i], &p, &r).unwrap();
            }
            for m in 1..=n {
                let p = consistency_proof(&l[..n], m).unwrap();
                verify_consistency(m as u64, n as u64, &root(&l[..m]), &r, &p).unwrap();
                if m < n {
                    // The same proof does not tie a different prefix to this tree.
                    let mut other = l[..m].to_vec();
                    other[0] = leaf_hash(b"rewritten");
                    assert!(verify_consistency(m as u64, n as u64, &root(&other), &r, &p).is_err());
                }
            }
        }
    }

    fn entry(seq: u64, subject: &str) -> Vec<u8> {
        AuditEntry {
            seq,
            time: 1_700_000_000 + seq,
            kind: "policy.add".into(),
            actor: "admin".into(),
            subject: subject.into(),
            body: serde_json::json!({ "version": seq }),
        }
        .to_bytes()
    }

    #[test]
    fn a_modified_removed_or_reordered_entry_is_detected() {
        let log: Vec<Vec<u8>> = (0..5).map(|i| entry(i, &format!("p{i}"))).collect();
        let leaves = check_entries(log.iter().map(Vec::as_slice), |_| {}).unwrap();
        let head = AuditHead {
            iss: "spiffe://td/vouch/verifier/a".into(),
            size: 5,
            root: hex::encode(root(&leaves)),
            iat: 1,
        };
        check_against_head(&leaves, &head).unwrap();

        // One byte of one entry's subject changed: it still parses, the root differs.
        let mut modified = log.clone();
        let at = modified[2].iter().position(|b| *b == b'p').unwrap();
        modified[2][at] = b'q';
        let l = check_entries(modified.iter().map(Vec::as_slice), |_| {}).unwrap();
        let e = check_against_head(&l, &head).unwrap_err();
        assert!(matches!(e, ProofError::RootMismatch { .. }), "{e}");

        // Removed: the next entry's seq is wrong.
        let mut removed = log.clone();
        removed.remove(3);
        let e = check_entries(removed.iter().map(Vec::as_slice), |_| {}).unwrap_err();
        assert!(e.to_string().contains("entry 3 says it is entry 4"), "{e}");
        // The last one removed: fewer entries than the head covers.
        let l = check_entries(log[..4].iter().map(Vec::as_slice), |_| {}).unwrap();
        let e = check_against_head(&l, &head).unwrap_err();
        assert!(e.to_string().contains("entries removed"), "{e}");

        // Two swapped.
        let mut swapped = log.clone();
        swapped.swap(1, 2);
        let e = check_entries(swapped.iter().map(Vec::as_slice), |_| {}).unwrap_err();
        assert!(e.to_string().contains("entry 1 says it is entry 2"), "{e}");

        // Swapped with their seq rewritten to match: the root still differs.
        let mut renumbered = [
            log[0].clone(),
            entry(1, "p2"),
            entry(2, "p1"),
            log[3].clone(),
            log[4].clone(),
        ];
        let l = check_entries(renumbered.iter().map(Vec::as_slice), |_| {}).unwrap();
        assert!(check_against_head(&l, &head).is_err());
        // Garbage is an error, not a panic.
        renumbered[0] = b"{\"seq\":0".to_vec();
        assert!(check_entries(renumbered.iter().map(Vec::as_slice), |_| {}).is_err());
    }
}

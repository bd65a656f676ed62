//! The audit log with its proofs checked here, and the revocations.
//!
//! The audit page signs a head for the log's current tree, checks that head's signature the
//! way `vouch audit verify` does (against the trust domain's bundle, `vouch_rp`), and for each
//! entry shown checks an RFC 9162 inclusion proof from the entry's stored bytes (hashed here,
//! not the stored leaf hash) to the signed root. An entry whose bytes were rewritten in the
//! database shows as failing.
//!
//! A rewrite that also replaces the stored leaf hash still leads to the root of a head signed
//! now; what exposes it is an earlier head. The page remembers the last head it checked (in
//! memory, per replica: [`SeenHead`]) and checks a consistency proof from it to the current
//! tree; a failure stays on the page (the remembered head is not replaced by one that does
//! not extend it). Auditors keep their own heads and check them with
//! `vouch audit verify --earlier-head`.

use axum::Extension;
use axum::extract::{Query, State as AxState};
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;
use vouch_core::audit::{
    AuditEntry, Hash, consistency_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion,
};

use super::html::{clip, esc, pager, when};
use super::{PAGE, Viewer, framed, query, store_failed};
use crate::state::{State, unix_now};

type S = Arc<State>;
type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// `?before=<seq>` (audit) or `?page=` (revocations).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    page: u64,
}

/// The tree of one page view with every complete, aligned subtree's hash computed once (about
/// as many hashes as leaves), so that the page's fifty inclusion proofs cost a few hashes each
/// instead of a pass over the whole log each (`vouch_core::audit::inclusion_proof`). The proofs
/// are checked with `vouch_core::audit::verify_inclusion`, so a mistake here shows as a failed
/// proof, never as a false pass.
struct Tree {
    /// `levels[h][i]`: the hash of leaves `i << h .. (i + 1) << h`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    fn new(leaves: &[Hash]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let next = last
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// MTH of leaves `a..b` (`b > a`), as the RFC 9162 recursion splits them.
    fn mth(&self, a: usize, b: usize) -> Hash {
        let n = b - a;
        if n.is_power_of_two() && a.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            if let Some(x) = self.levels.get(h).and_then(|l| l.get(a >> h)) {
                return *x;
            }
        }
        let k = split(n);
        node_hash(&self.mth(a, a + k), &self.mth(a + k, b))
    }

    /// The inclusion proof of leaf `m` in the tree of leaves `a..b` (RFC 9162 PATH).
    fn path(&self, m: usize, a: usize, b: usize, out: &mut Vec<Hash>) {
        if b - a <= 1 {
            return;
        }
        let k = split(b - a);
        if m < a + k {
            self.path(m, a, a + k, out);
            out.push(self.mth(a + k, b));
        } else {
            self.path(m, a + k, b, out);
            out.push(self.mth(a, a + k));
        }
    }

    fn inclusion_proof(&self, m: usize) -> Option<Vec<Hash>> {
        let size = self.levels.first().map_or(0, Vec::len);
        (m < size).then(|| {
            let mut out = Vec::new();
            self.path(m, 0, size, &mut out);
            out
        })
    }
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The last signed head this dashboard checked: its size, root and signing time.
#[derive(Debug, Default)]
pub(crate) struct SeenHead(std::sync::Mutex<Option<(u64, Hash, u64)>>);

impl SeenHead {
    /// Check that the tree of `leaves` (whose root `current` was just signed at `iat`) extends
    /// the head seen before; remember it when it does. `None` the first time.
    fn check(
        &self,
        leaves: &[Hash],
        current: &Hash,
        iat: u64,
    ) -> Option<Result<(u64, u64), String>> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let size = leaves.len() as u64;
        let verdict = match *seen {
            None => None,
            Some((n, _, _)) if n > size => Some(Err(format!(
                "the log has {size} entries, fewer than the {n} of the head checked before"
            ))),
            Some((n, old, at)) if n == 0 || n == size => {
                if n == size && old != *current {
                    Some(Err(format!(
                        "the root of the {n} entries changed since {}",
                        when(at)
                    )))
                } else {
                    Some(Ok((n, at)))
                }
            }
            Some((n, old, at)) => {
                let first = usize::try_from(n).unwrap_or(usize::MAX);
                Some(
                    consistency_proof(leaves, first)
                        .ok_or_else(|| "no consistency proof".to_string())
                        .and_then(|p| {
                            verify_consistency(n, size, &old, current, &p)
                                .map_err(|e| e.to_string())
                        })
                        .map(|()| (n, at)),
                )
            }
        };
        if !matches!(verdict, Some(Err(_))) {
            *seen = Some((size, *current, iat));
        }
        verdict
    }
}

/// The trust domain's bundle as a relying party holds it (`None` without a SPIFFE CA).
fn bundle(st: &State) -> Option<Arc<vouch_rp::SpiffeVerifier>> {
    let td = vouch_identity::TrustDomain::parse(&st.cfg.trust_domain).ok()?;
    let now = unix_now();
    let authorities: Vec<Vec<u8>> = st
        .svid_ca
        .as_ref()?
        .read()
        .ok()?
        .authorities(now)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    vouch_rp::SpiffeVerifier::new(&td, &authorities, vouch_rp::AllowedIds::AnyInTrustDomain).ok()
}

/// `GET /dashboard/audit?before=`: the signed head, checked, and one page of the latest
/// entries, each with its inclusion proof checked against the signed root.
pub(crate) async fn audit(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    Extension(seen): Extension<Arc<SeenHead>>,
    q: Q<PageQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let root_path = super::root(&st);
    let leaves = match async {
        let size = st.store.audit_size().await?;
        st.store.audit_leaf_hashes(size).await
    }
    .await
    {
        Ok(l) => l,
        Err(e) => return store_failed(&st, &v, e),
    };
    let size = leaves.len() as u64;
    let end = q.before.unwrap_or(size).min(size);
    let start = end.saturating_sub(u64::from(PAGE));
    let entries = match st.store.audit_entries(start, end).await {
        Ok(e) => e,
        Err(e) => return store_failed(&st, &v, e),
    };
    let tree_root = root(&leaves);
    let tree = Tree::new(&leaves);
    let mut body = String::new();
    // The head, signed now and checked like an auditor's copy would be.
    let checked_root = match st.sign_audit_head(size, &tree_root) {
        Err(e) => {
            let _ = write!(
                body,
                "<p class=bad id=head-check>No signed head: {}</p>",
                esc(&e.message)
            );
            None
        }
        Ok(jws) => {
            let verdict = match bundle(&st) {
                None => Err("no trust bundle to check it against (no SPIFFE CA)".to_string()),
                Some(b) => vouch_rp::audit::verify_audit_head(&jws, &b, unix_now())
                    .map_err(|e| e.to_string()),
            };
            match verdict {
                Ok(head) => {
                    let earlier = match head.root_hash() {
                        Ok(r) => seen.check(&leaves, &r, head.iat),
                        Err(e) => Some(Err(e.to_string())),
                    };
                    let _ = write!(
                        body,
                        "<p id=consistency class={}>{}</p>",
                        if matches!(earlier, Some(Err(_))) {
                            "bad"
                        } else {
                            "ok"
                        },
                        match &earlier {
                            None =>
                                "first head this dashboard has seen: nothing earlier to compare"
                                    .into(),
                            Some(Ok((n, at))) => format!(
                                "✓ consistent with the head of {n} entries checked at {}",
                                when(*at)
                            ),
                            Some(Err(e)) =>
                                format!("✗ NOT consistent with the head checked before: {}", esc(e)),
                        }
                    );
                    let _ = write!(
                        body,
                        "<table class=head><tr><th>signed tree head</th><td><span class=ok id=head-check>\
                         ✓ signature checked against the trust bundle</span></td></tr>\
                         <tr><th>size</th><td>{}</td></tr><tr><th>root</th><td><code class=root>{}</code></td></tr>\
                         <tr><th>signed by</th><td><code>{}</code> at {}</td></tr></table>",
                        head.size,
                        esc(&head.root),
                        esc(&head.iss),
                        when(head.iat)
                    );
                    head.root_hash().ok()
                }
                Err(e) => {
                    let _ = write!(
                        body,
                        "<p class=bad id=head-check>✗ signed head not verified: {}</p>",
                        esc(&e)
                    );
                    None
                }
            }
        }
    };
    body.push_str(
        "<table class=audit><thead><tr><th>#</th><th>time</th><th>kind</th><th>actor</th>\
         <th>subject</th><th>details</th><th>inclusion proof</th></tr></thead><tbody>",
    );
    let (mut ok, mut bad) = (0u32, 0u32);
    for r in entries.iter().rev() {
        // The bytes as stored, hashed here: a rewritten entry no longer leads to the root.
        let leaf = leaf_hash(r.entry.as_bytes());
        let check = match (
            &checked_root,
            usize::try_from(r.seq)
                .ok()
                .and_then(|i| tree.inclusion_proof(i)),
        ) {
            (None, _) => Err("no verified head".to_string()),
            (_, None) => Err("no proof".to_string()),
            (Some(root_hash), Some(proof)) => {
                verify_inclusion(r.seq, size, &leaf, &proof, root_hash)
                    .map(|()| proof.len())
                    .map_err(|e| e.to_string())
            }
        };
        let verdict = match &check {
            Ok(n) => {
                ok += 1;
                format!("<span class=ok>✓ verified ({n} hashes)</span>")
            }
            Err(e) => {
                bad += 1;
                format!("<span class=bad>✗ {}</span>", esc(e))
            }
        };
        let (time, kind, actor, subject, details) = match AuditEntry::parse(r.entry.as_bytes()) {
            Ok(e) => (when(e.time), e.kind, e.actor, e.subject, e.body.to_string()),
            Err(e) => (
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                e.to_string(),
            ),
        };
        let _ = write!(
            body,
            "<tr data-seq={seq}><td>{seq}</td><td>{time}</td><td>{kind}</td><td>{actor}</td>\
             <td><code>{subject}</code></td><td><code>{details}</code></td><td class=proof>{verdict}</td></tr>",
            seq = r.seq,
            kind = esc(&kind),
            actor = esc(&actor),
            subject = esc(&clip(&subject, 200)),
            details = esc(&clip(&details, 300)),
        );
    }
    if entries.is_empty() {
        body.push_str("<tr><td colspan=7>The log is empty.</td></tr>");
    }
    body.push_str("</tbody></table>");
    let summary = format!(
        "<p class=meta id=proof-summary>{} of {} entries shown verified in the signed tree of {size}{}</p>",
        ok,
        ok + bad,
        if bad > 0 {
            format!(": <b class=bad>{bad} failed</b>")
        } else {
            String::new()
        }
    );
    body.insert_str(0, &summary);
    let _ = write!(body, "<div class=pager>");
    if end < size {
        let _ = write!(
            body,
            "<a href=\"{}\">← newer</a>",
            esc(&format!("{root_path}/audit"))
        );
    }
    if start > 0 {
        let _ = write!(
            body,
            "<a href=\"{}\">older →</a>",
            esc(&format!("{root_path}/audit?before={start}"))
        );
    }
    body.push_str("</div>");
    framed(&st, &v, "audit", "Audit log", &body)
}

/// `GET /dashboard/revocations?page=`: the revocation log, newest first.
pub(crate) async fn revocations(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<PageQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let root_path = super::root(&st);
    let epoch = match st.store.revocation_epoch().await {
        Ok(e) => e,
        Err(e) => return store_failed(&st, &v, e),
    };
    // Epochs count up from 1 without gaps: page p holds the PAGE below `epoch - p * PAGE`.
    let upto = epoch.saturating_sub(q.page.saturating_mul(u64::from(PAGE)));
    let after = upto.saturating_sub(u64::from(PAGE));
    let rows = match st.store.revocations_since(after, PAGE).await {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };
    let mut body = String::from(
        "<table class=revocations><thead><tr><th>epoch</th><th>when</th><th>kind</th><th>target</th>\
         <th>reason</th><th>by</th></tr></thead><tbody>",
    );
    for r in rows.iter().rev().filter(|r| r.epoch <= upto) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            r.epoch,
            when(r.created_at),
            esc(&r.kind),
            esc(&r.target),
            esc(&r.reason),
            esc(&r.by)
        );
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=6>Nothing has been revoked.</td></tr>");
    }
    body.push_str("</tbody></table>");
    body.push_str(&pager(q.page, after > 0, |p| {
        format!("{root_path}/revocations?page={p}")
    }));
    framed(&st, &v, "revocations", "Revocations", &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cached_proofs_are_the_rfc_9162_proofs() {
        for size in [1usize, 2, 3, 5, 8, 13, 64, 100] {
            let leaves: Vec<Hash> = (0..size as u32)
                .map(|i| leaf_hash(&i.to_be_bytes()))
                .collect();
            let t = Tree::new(&leaves);
            assert_eq!(t.mth(0, size), root(&leaves), "size {size}");
            for m in 0..size {
                assert_eq!(
                    t.inclusion_proof(m),
                    vouch_core::audit::inclusion_proof(&leaves, m),
                    "size {size}, leaf {m}"
                );
            }
            assert!(t.inclusion_proof(size).is_none());
        }
    }
}

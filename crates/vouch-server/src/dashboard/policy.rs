//! Policies: each with its versions (never overwritten), one version's text, and the line diff
//! between two versions.

use axum::Extension;
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

use super::html::{enc, esc, when};
use super::{Viewer, framed, framed_with, query, store_failed};
use crate::state::State;

type S = Arc<State>;
type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// Most versions listed on a policy's page.
const MAX_VERSIONS: usize = 200;

/// Most cells of the longest-common-subsequence table a diff may use (the lines both sides
/// share at their start and end are not counted).
const DIFF_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// In both.
    Same(&'a str),
    /// Only in the older.
    Removed(&'a str),
    /// Only in the newer.
    Added(&'a str),
}

/// The line diff of `a` and `b` (a longest common subsequence, bounded: past [`DIFF_CELLS`]
/// the differing middle is shown as removed, then added).
pub(crate) fn diff<'a>(a: &'a str, b: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut out: Vec<Line<'a>> = a[..pre].iter().map(|l| Line::Same(l)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > DIFF_CELLS {
        out.extend(am.iter().map(|l| Line::Removed(l)));
        out.extend(bm.iter().map(|l| Line::Added(l)));
    } else {
        // lcs[i][j]: the longest common subsequence of am[i..] and bm[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                out.push(Line::Same(am[i]));
                i += 1;
                j += 1;
            } else if j < m && (i == n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
                out.push(Line::Added(bm[j]));
                j += 1;
            } else {
                out.push(Line::Removed(am[i]));
                i += 1;
            }
        }
    }
    out.extend(a[a.len() - suf..].iter().map(|l| Line::Same(l)));
    out
}

/// `?id=&v=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyQuery {
    id: String,
    #[serde(default)]
    v: Option<u32>,
}

/// `?id=&from=&to=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    id: String,
    from: u32,
    to: u32,
}

fn not_found(st: &State, v: &Viewer, what: &str) -> Response {
    framed_with(
        st,
        v,
        StatusCode::NOT_FOUND,
        "policies",
        "Not found",
        &format!("<p>{}</p>", esc(what)),
    )
}

/// `GET /dashboard/policies`: every policy, its latest version, which one is active.
pub(crate) async fn policies(AxState(st): AxState<S>, Extension(v): Extension<Viewer>) -> Response {
    let root = super::root(&st);
    let (list, active) = match async {
        Ok::<_, vouch_store::StoreError>((
            st.store.policies().await?,
            st.store.active_policy_id().await?,
        ))
    }
    .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };
    let mut body = String::from(
        "<table class=policies><thead><tr><th>policy</th><th>latest version</th><th>sha256</th>\
         <th>added</th><th></th></tr></thead><tbody>",
    );
    for p in &list {
        let _ = write!(
            body,
            "<tr><td><a href=\"{href}\">{id}</a></td><td>v{v}</td><td><code>{sha}</code></td>\
             <td>{at}</td><td>{active}</td></tr>",
            href = esc(&format!("{root}/policy?id={}", enc(&p.id))),
            id = esc(&p.id),
            v = p.version,
            sha = esc(&p.sha256),
            at = when(p.created_at),
            active = if active.as_deref() == Some(p.id.as_str()) {
                "<b>active</b>"
            } else {
                ""
            },
        );
    }
    if list.is_empty() {
        body.push_str("<tr><td colspan=5>No policy.</td></tr>");
    }
    body.push_str("</tbody></table>");
    framed(&st, &v, "policies", "Policies", &body)
}

/// `GET /dashboard/policy?id=&v=`: a version's text (the latest by default) and every version,
/// each with a link to its diff from the one before.
pub(crate) async fn policy(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<PolicyQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let root = super::root(&st);
    let (p, versions) = match async {
        Ok::<_, vouch_store::StoreError>((
            st.store.policy(&q.id, q.v).await?,
            st.store.policy_versions(&q.id).await?,
        ))
    }
    .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };
    let Some(p) = p else {
        return not_found(&st, &v, "No such policy version.");
    };
    let mut body = String::from(
        "<h2>Versions</h2><table class=versions><thead><tr><th>version</th><th>sha256</th>\
         <th>added</th><th>change</th></tr></thead><tbody>",
    );
    for (i, pv) in versions.iter().take(MAX_VERSIONS).enumerate() {
        let view = format!("{root}/policy?id={}&v={}", enc(&p.id), pv.version);
        let change = match versions.get(i + 1) {
            Some(prev) => format!(
                "<a href=\"{}\">diff from v{}</a>",
                esc(&format!(
                    "{root}/diff?id={}&from={}&to={}",
                    enc(&p.id),
                    prev.version,
                    pv.version
                )),
                prev.version
            ),
            None => "first version".into(),
        };
        let _ = write!(
            body,
            "<tr{cls}><td><a href=\"{view}\">v{ver}</a></td><td><code>{sha}</code></td><td>{at}</td><td>{change}</td></tr>",
            cls = if pv.version == p.version {
                " class=shown"
            } else {
                ""
            },
            view = esc(&view),
            ver = pv.version,
            sha = esc(&pv.sha256),
            at = when(pv.created_at),
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<h2>v{} <span class=meta>sha256 {}</span></h2><pre class=rego>{}</pre>",
        p.version,
        esc(&p.sha256),
        esc(&p.rego)
    );
    framed(&st, &v, "policies", &format!("Policy {}", p.id), &body)
}

/// `GET /dashboard/diff?id=&from=&to=`: the line diff between two versions.
pub(crate) async fn diff_page(st: &State, v: &Viewer, q: DiffQuery) -> Response {
    let (a, b) = match async {
        Ok::<_, vouch_store::StoreError>((
            st.store.policy(&q.id, Some(q.from)).await?,
            st.store.policy(&q.id, Some(q.to)).await?,
        ))
    }
    .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(st, v, e),
    };
    let (Some(a), Some(b)) = (a, b) else {
        return not_found(st, v, "No such policy version.");
    };
    let lines = diff(&a.rego, &b.rego);
    let (added, removed) = lines.iter().fold((0, 0), |(ad, rm), l| match l {
        Line::Added(_) => (ad + 1, rm),
        Line::Removed(_) => (ad, rm + 1),
        Line::Same(_) => (ad, rm),
    });
    let mut body = format!(
        "<p class=meta>v{} ({}) → v{} ({}): <b class=added>{added} line(s) added</b>, \
         <b class=removed>{removed} removed</b></p><pre class=diff>",
        a.version,
        esc(&a.sha256),
        b.version,
        esc(&b.sha256)
    );
    for l in &lines {
        match l {
            Line::Same(s) => {
                let _ = writeln!(body, "  {}", esc(s));
            }
            Line::Removed(s) => {
                let _ = write!(body, "<del>- {}</del>", esc(s));
            }
            Line::Added(s) => {
                let _ = write!(body, "<ins>+ {}</ins>", esc(s));
            }
        }
    }
    body.push_str("</pre>");
    framed(
        st,
        v,
        "policies",
        &format!("Policy {} v{} → v{}", a.id, a.version, b.version),
        &body,
    )
}

/// `GET /dashboard/diff?id=&from=&to=`
pub(crate) async fn diff_route(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<DiffQuery>,
) -> Response {
    match query(q) {
        Ok(q) => diff_page(&st, &v, q).await,
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn line_diff_marks_added_and_removed_lines() {
        let a = "package p\nallow := false\nx := 1\nend";
        let b = "package p\nallow := true\nx := 1\ny := 2\nend";
        let d = super::diff(a, b);
        assert_eq!(
            d,
            [
                Line::Same("package p"),
                Line::Added("allow := true"),
                Line::Removed("allow := false"),
                Line::Same("x := 1"),
                Line::Added("y := 2"),
                Line::Same("end"),
            ]
        );
        assert!(super::diff(a, a).iter().all(|l| matches!(l, Line::Same(_))));
        assert_eq!(super::diff("", "x"), [Line::Added("x")]);
    }
}

//! A workload's page: its status, the rules that decided, each measurement next to the
//! reference values it is held to (the ones that differ marked), the claims, and its history.

use axum::Extension;
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

use super::html::{ago, badge, clip, enc, esc, when};
use super::{PAGE, Viewer, framed, framed_with, query, store_failed};
use crate::state::{State, unix_now};

type S = Arc<State>;
type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// The most of the claims' JSON a page shows.
const CLAIMS_MAX: usize = 64 * 1024;

/// `?id=<node>/<name>&att=<attestation id>&before=<unix seconds>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkloadQuery {
    id: String,
    #[serde(default)]
    att: Option<String>,
    #[serde(default)]
    before: Option<u64>,
}

/// One finding, split from its reason line (`deny configuration (config_file): …`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finding<'a> {
    pub effect: &'a str,
    pub claim: &'a str,
    pub rule: &'a str,
    pub message: &'a str,
}

/// Split a reason as `vouch_policy::Finding::reason` writes it; a line of another shape is
/// all message.
pub(crate) fn finding(reason: &str) -> Finding<'_> {
    let whole = Finding {
        effect: "",
        claim: "",
        rule: "",
        message: reason,
    };
    let Some((effect, rest)) = reason.split_once(' ') else {
        return whole;
    };
    if !matches!(effect, "deny" | "warn") {
        return whole;
    }
    let (claim, rest) = match rest.strip_prefix('(') {
        Some(r) => ("", r),
        None => match rest.split_once(" (") {
            Some((c, r)) => (c, r),
            None => return whole,
        },
    };
    match rest.split_once("): ") {
        Some((rule, message)) => Finding {
            effect,
            claim,
            rule,
            message,
        },
        None => whole,
    }
}

/// One measurement held against the reference values of its kind and key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub kind: String,
    pub key: String,
    pub measured: Option<String>,
    pub reference: Vec<String>,
}

impl Comparison {
    /// Whether the measured value is not among the reference values.
    pub fn differs(&self) -> bool {
        !self
            .measured
            .as_ref()
            .is_some_and(|m| self.reference.iter().any(|r| r == m))
    }
}

/// The measurements of `claims` that reference values of the kinds the default policy
/// compares (`executable`, `file`, `pcr`, `boot_digest`) speak about, each with those values.
pub(crate) fn compare(claims: &Value, refs: &vouch_policy::ReferenceValues) -> Vec<Comparison> {
    let mut out: Vec<Comparison> = Vec::new();
    let s = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    };
    for r in &refs.values {
        let measured = match r.kind.as_str() {
            "executable" if claims["workload"]["name"].as_str() == Some(r.key.as_str()) => {
                Some(s(&claims["workload"]["exe_sha256"]))
            }
            "file" if claims["files"].get(&r.key).is_some() => {
                Some(s(&claims["files"][&r.key]["sha256"]))
            }
            "pcr" if claims["tpm"].is_object() => r
                .key
                .split_once(':')
                .map(|(bank, index)| s(&claims["tpm"]["pcrs"][bank][index])),
            "boot_digest" if claims["tpm"].is_object() => {
                Some(s(&claims["tpm"]["eventlog"][r.key.as_str()]))
            }
            _ => None,
        };
        let Some(measured) = measured else { continue };
        match out.iter_mut().find(|c| c.kind == r.kind && c.key == r.key) {
            Some(c) => c.reference.push(r.value.clone()),
            None => out.push(Comparison {
                kind: r.kind.clone(),
                key: r.key.clone(),
                measured,
                reference: vec![r.value.clone()],
            }),
        }
    }
    // The differing ones first.
    out.sort_by_key(|c| !c.differs());
    out
}

fn not_found(st: &State, v: &Viewer, what: &str) -> Response {
    framed_with(
        st,
        v,
        StatusCode::NOT_FOUND,
        "fleet",
        "Not found",
        &format!("<p>{}</p>", esc(what)),
    )
}

/// `GET /dashboard/workload?id=`
pub(crate) async fn workload(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<WorkloadQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let now = unix_now();
    let root = super::root(&st);
    let w = match st.store.workload(&q.id).await {
        Ok(Some(w)) => w,
        Ok(None) => return not_found(&st, &v, &format!("No workload {}.", clip(&q.id, 300))),
        Err(e) => return store_failed(&st, &v, e),
    };
    let att_id = q.att.clone().or_else(|| w.last_attestation_id.clone());
    let att = match &att_id {
        Some(id) => match st.store.attestation(id).await {
            // Only this workload's own attestations are shown on its page.
            Ok(a) => a.filter(|a| a.workload_id == w.id),
            Err(e) => return store_failed(&st, &v, e),
        },
        None => None,
    };
    if q.att.is_some() && att.is_none() {
        return not_found(&st, &v, "No such attestation of this workload.");
    }
    let before = q.before.unwrap_or(u64::MAX);
    let mut history = match st.store.workload_history(&w.id, before, PAGE + 1).await {
        Ok(h) => h,
        Err(e) => return store_failed(&st, &v, e),
    };
    let more = history.len() > PAGE as usize;
    history.truncate(PAGE as usize);
    let refs = match st.store.reference_values().await {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };

    let mut body = format!(
        "<table class=summary><tr><th>workload</th><td>{name}</td></tr>\
         <tr><th>node</th><td><code>{node}</code></td></tr>\
         <tr><th>status</th><td>{badge}</td></tr><tr><th>reason</th><td class=reason>{reason}</td></tr>\
         <tr><th>last evidence</th><td>{last}</td></tr><tr><th>deadline</th><td>{deadline}</td></tr></table>",
        name = esc(&w.name),
        node = esc(&w.node_id),
        badge = badge(&w.status),
        reason = esc(&w.reason),
        last = ago(now, w.last_attested_at),
        deadline = ago(now, w.deadline),
    );
    match &att {
        None => body.push_str("<p>No attestation recorded.</p>"),
        Some(a) => {
            let _ = write!(
                body,
                "<h2>Attestation <code>{id}</code></h2><p class=meta>{when} · evidence <b>{kind}</b> \
                 · {badge} · decided by policy <a href=\"{phref}\">{pid} v{pv}</a> · result expires {exp}</p>",
                id = esc(&a.id),
                when = when(a.created_at),
                kind = esc(&a.evidence_kind),
                badge = badge(&a.status),
                phref = esc(&format!(
                    "{root}/policy?id={}&v={}",
                    enc(&a.policy_id),
                    a.policy_version
                )),
                pid = esc(&a.policy_id),
                pv = a.policy_version,
                exp = ago(now, Some(a.expires_at)),
            );
            body.push_str(
                "<h3>Rules that decided</h3><table class=findings><thead><tr><th>effect</th>\
                 <th>claim</th><th>rule</th><th>why</th></tr></thead><tbody>",
            );
            for r in &a.reasons {
                let f = finding(r);
                let _ = write!(
                    body,
                    "<tr class=\"{e}\"><td><b>{e}</b></td><td>{c}</td><td><code class=rule>{rule}</code></td><td>{m}</td></tr>",
                    e = esc(f.effect),
                    c = esc(f.claim),
                    rule = esc(f.rule),
                    m = esc(f.message),
                );
            }
            if a.reasons.is_empty() {
                body.push_str(
                    "<tr><td colspan=4>No deny or warn rule fired: the status follows the trust vector.</td></tr>",
                );
            }
            body.push_str("</tbody></table>");
            let cmp = compare(&a.claims, &refs);
            body.push_str(
                "<h3>Measurements and reference values</h3><table class=measurements><thead><tr>\
                 <th>kind</th><th>key</th><th>measured</th><th>reference value(s)</th><th></th>\
                 </tr></thead><tbody>",
            );
            for c in &cmp {
                let d = c.differs();
                let _ = write!(
                    body,
                    "<tr{cls}><td>{kind}</td><td><code>{key}</code></td><td><code class=measured>{m}</code></td>\
                     <td><code class=reference>{r}</code></td><td>{verdict}</td></tr>",
                    cls = if d { " class=differs" } else { "" },
                    kind = esc(&c.kind),
                    key = esc(&c.key),
                    m = esc(c.measured.as_deref().unwrap_or("(not measured)")),
                    r = c
                        .reference
                        .iter()
                        .map(|r| esc(r))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                    verdict = if d {
                        "<span class=bad>differs</span>"
                    } else {
                        "<span class=ok>matches</span>"
                    },
                );
            }
            if cmp.is_empty() {
                body.push_str(
                    "<tr><td colspan=5>No reference value names a measurement of this evidence.</td></tr>",
                );
            }
            body.push_str("</tbody></table>");
            let _ = write!(
                body,
                "<h3>Trust vector</h3><pre class=trust>{}</pre>",
                esc(&serde_json::to_string_pretty(&a.trust_vector).unwrap_or_default())
            );
            let claims = serde_json::to_string_pretty(&a.claims).unwrap_or_default();
            let _ = write!(
                body,
                "<details><summary>Claims ({} bytes{})</summary><pre class=claims>{}</pre></details>\
                 <details><summary>Signed result</summary><pre class=result>{}</pre></details>",
                claims.len(),
                if claims.len() > CLAIMS_MAX {
                    ", cut"
                } else {
                    ""
                },
                esc(&clip(&claims, CLAIMS_MAX)),
                esc(&clip(&a.result, CLAIMS_MAX)),
            );
        }
    }
    body.push_str(
        "<h2>History</h2><table class=history><thead><tr><th>when</th><th>status</th><th>evidence</th>\
         <th>policy</th><th>reasons</th></tr></thead><tbody>",
    );
    for h in &history {
        let href = format!("{root}/workload?id={}&att={}", enc(&w.id), enc(&h.id));
        let _ = write!(
            body,
            "<tr class=\"{s}\"><td><a href=\"{href}\">{when}</a></td><td>{badge}</td><td>{kind}</td>\
             <td>{pid} v{pv}</td><td>{reasons}</td></tr>",
            s = esc(&h.status),
            href = esc(&href),
            when = when(h.created_at),
            badge = badge(&h.status),
            kind = esc(&h.evidence_kind),
            pid = esc(&h.policy_id),
            pv = h.policy_version,
            reasons = h
                .reasons
                .iter()
                .map(|r| esc(&clip(r, 300)))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
    }
    if history.is_empty() {
        body.push_str("<tr><td colspan=5>No attestation recorded.</td></tr>");
    }
    body.push_str("</tbody></table>");
    // Older pages continue from the oldest row shown.
    if more || q.before.is_some() {
        let _ = write!(body, "<div class=pager>");
        if q.before.is_some() {
            let _ = write!(
                body,
                "<a href=\"{}\">← latest</a>",
                esc(&format!("{root}/workload?id={}", enc(&w.id)))
            );
        }
        if let (true, Some(last)) = (more, history.last()) {
            let _ = write!(
                body,
                "<a href=\"{}\">older →</a>",
                esc(&format!(
                    "{root}/workload?id={}&before={}",
                    enc(&w.id),
                    last.created_at
                ))
            );
        }
        body.push_str("</div>");
    }
    framed(&st, &v, "fleet", &format!("Workload {}", w.name), &body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vouch_policy::{ReferenceValue, ReferenceValues};

    #[test]
    fn reasons_split_into_effect_claim_rule_and_message() {
        let f = finding(
            "deny configuration (config_file): file /etc/a has sha256 x, expected one of [y]",
        );
        assert_eq!(
            (f.effect, f.claim, f.rule, f.message),
            (
                "deny",
                "configuration",
                "config_file",
                "file /etc/a has sha256 x, expected one of [y]"
            )
        );
        let f = finding("warn (custom): something");
        assert_eq!((f.effect, f.claim, f.rule), ("warn", "", "custom"));
        let f = finding("no evidence before the deadline (5); the agent stopped attesting");
        assert_eq!(f.rule, "");
        assert_eq!(
            f.message,
            "no evidence before the deadline (5); the agent stopped attesting"
        );
    }

    #[test]
    fn measurements_are_held_against_their_reference_values() {
        let claims = serde_json::json!({
            "workload": {"name": "web", "exe_sha256": "aa"},
            "files": {"/etc/web.conf": {"sha256": "bb"}, "/etc/other": {"sha256": "cc"}},
        });
        let rv = |kind: &str, key: &str, value: &str| ReferenceValue {
            kind: kind.into(),
            key: key.into(),
            value: value.into(),
        };
        let refs = ReferenceValues {
            revision: 1,
            values: vec![
                rv("executable", "web", "aa"),
                rv("file", "/etc/web.conf", "b0"),
                rv("file", "/etc/web.conf", "b1"),
                rv("executable", "db", "dd"),
                rv("file", "/etc/unmeasured", "ee"),
                rv("pcr", "sha256:7", "ff"),
            ],
        };
        let c = compare(&claims, &refs);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].key, "/etc/web.conf");
        assert!(c[0].differs());
        assert_eq!(c[0].measured.as_deref(), Some("bb"));
        assert_eq!(c[0].reference, ["b0", "b1"]);
        assert_eq!(c[1].kind, "executable");
        assert!(!c[1].differs());
    }
}

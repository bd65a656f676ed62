//! The dashboard page and the Prometheus metrics text.

use std::fmt::Write as _;

use crate::state::{State, unix_now};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn ago(now: u64, t: Option<u64>) -> String {
    match t {
        Some(t) if now >= t => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
        None => "never".into(),
    }
}

pub(crate) async fn dashboard(st: &State) -> String {
    let now = unix_now();
    let workloads = st.store.workloads().await.unwrap_or_default();
    let nodes = st.store.nodes().await.unwrap_or_default();
    let policy = st
        .store
        .active_policy_id()
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let version = match st.store.policy(&policy, None).await {
        Ok(Some(p)) => p.version,
        _ => 0,
    };
    let mut rows = String::new();
    for w in &workloads {
        let _ = write!(
            rows,
            "<tr class=\"{s}\"><td>{name}</td><td><code>{node}</code></td><td><b>{s}</b></td>\
             <td>{reason}</td><td>{last}</td><td>{deadline}</td><td>{link}</td></tr>",
            s = esc(&w.status),
            name = esc(&w.name),
            node = esc(&w.node_id),
            reason = esc(&w.reason),
            last = ago(now, w.last_attested_at),
            deadline = ago(now, w.deadline),
            link = w
                .last_attestation_id
                .as_deref()
                .map(|id| format!("<a href=\"/v1/results/{0}\">{0}</a>", esc(id)))
                .unwrap_or_default(),
        );
    }
    if workloads.is_empty() {
        rows.push_str("<tr><td colspan=7>No workload has attested yet.</td></tr>");
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta http-equiv=refresh content=5><title>Vouch verifier</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;font-size:14px}}\
tr.affirming b{{color:#137333}}tr.warning b{{color:#b06000}}tr.contraindicated b{{color:#c5221f}}\
code{{font-size:12px}}.meta{{color:#555}}</style></head><body>\
<h1>Vouch verifier</h1><p class=meta>audience <b>{aud}</b> · policy <b>{policy} v{version}</b> · \
{n} node(s) · {w} workload(s) · <a href=\"/.well-known/jwks.json\">JWKS</a> · \
<a href=\"/openapi.json\">OpenAPI</a> · <a href=\"/metrics\">metrics</a></p>\
<table><thead><tr><th>workload</th><th>node</th><th>status</th><th>reason</th>\
<th>last evidence</th><th>deadline</th><th>latest result</th></tr></thead><tbody>{rows}</tbody>\
</table></body></html>",
        aud = esc(&st.cfg.audience),
        policy = esc(&policy),
        n = nodes.len(),
        w = workloads.len(),
    )
}

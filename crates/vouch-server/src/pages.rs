//! The dashboard page and the Prometheus metrics text.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

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

pub(crate) async fn metrics(st: &State) -> String {
    let m = &st.metrics;
    let mut s = String::new();
    let _ = writeln!(s, "# HELP vouch_challenges_total Nonces issued.");
    let _ = writeln!(s, "# TYPE vouch_challenges_total counter");
    let _ = writeln!(
        s,
        "vouch_challenges_total {}",
        m.challenges.load(Ordering::Relaxed)
    );
    let c = st.verifier.cache_stats();
    let (parts, part_bytes) = st.verifier.parts_held();
    for (name, kind, help, v) in [
        (
            "vouch_appraisal_cache_hits_total",
            "counter",
            "Appraisals reused: claims, policy version and reference values as before.",
            c.hits,
        ),
        (
            "vouch_appraisal_cache_misses_total",
            "counter",
            "Appraisals made (the policy evaluated).",
            c.misses,
        ),
        (
            "vouch_appraisal_cache_entries",
            "gauge",
            "Appraisals held for reuse.",
            c.entries as u64,
        ),
        (
            "vouch_measurement_parts_held",
            "gauge",
            "Measurement parts held so agents send unchanged ones by digest.",
            parts as u64,
        ),
        (
            "vouch_measurement_parts_held_bytes",
            "gauge",
            "Their estimated size.",
            part_bytes as u64,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {kind}");
        let _ = writeln!(s, "{name} {v}");
    }
    let _ = writeln!(s, "# HELP vouch_enrollments_total Agent keys enrolled.");
    let _ = writeln!(s, "# TYPE vouch_enrollments_total counter");
    let _ = writeln!(
        s,
        "vouch_enrollments_total {}",
        m.enrollments.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vouch_attestations_total Appraisals by result status."
    );
    let _ = writeln!(s, "# TYPE vouch_attestations_total counter");
    for (i, name) in ["none", "affirming", "warning", "contraindicated"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            s,
            "vouch_attestations_total{{status=\"{name}\"}} {}",
            m.results[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP vouch_refusals_total Requests refused, by error kind."
    );
    let _ = writeln!(s, "# TYPE vouch_refusals_total counter");
    let mut refusals: Vec<_> = st.refusals().into_iter().collect();
    refusals.sort();
    for (k, v) in refusals {
        let _ = writeln!(s, "vouch_refusals_total{{kind=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        s,
        "# HELP vouch_connections_total Connections accepted on the API listener."
    );
    let _ = writeln!(s, "# TYPE vouch_connections_total counter");
    let _ = writeln!(
        s,
        "vouch_connections_total {}",
        m.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vouch_connections_refused_total Connections closed at once: the server, or their client, held its maximum."
    );
    let _ = writeln!(s, "# TYPE vouch_connections_refused_total counter");
    let _ = writeln!(
        s,
        "vouch_connections_refused_total {}",
        m.connections_refused.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vouch_overdue_total Workloads marked contraindicated for missing their deadline."
    );
    let _ = writeln!(s, "# TYPE vouch_overdue_total counter");
    let _ = writeln!(
        s,
        "vouch_overdue_total {}",
        m.overdue.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP vouch_entries Registration entries in this verifier's index."
    );
    let _ = writeln!(s, "# TYPE vouch_entries gauge");
    let _ = writeln!(s, "vouch_entries {}", st.entries_held());
    let _ = writeln!(
        s,
        "# HELP vouch_entry_watchers Agents waiting on POST /v1/entries/watch."
    );
    let _ = writeln!(s, "# TYPE vouch_entry_watchers gauge");
    let _ = writeln!(s, "vouch_entry_watchers {}", st.entry_watchers());
    if let Ok(counts) = st.store.workload_status_counts().await {
        let _ = writeln!(s, "# HELP vouch_workloads Workloads by current status.");
        let _ = writeln!(s, "# TYPE vouch_workloads gauge");
        for name in ["none", "affirming", "warning", "contraindicated"] {
            let n = counts
                .iter()
                .find(|(status, _)| status == name)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(s, "vouch_workloads{{status=\"{name}\"}} {n}");
        }
    }
    s
}

//! The fleet at a glance, the nodes, the failures and the anomalies.

use axum::Extension;
use axum::extract::{Query, State as AxState};
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

use super::html::{STATUSES, ago, badge, enc, esc, pager};
use super::{PAGE, Viewer, framed, query, store_failed};
use crate::state::{State, unix_now};

type S = Arc<State>;
type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// Hours of attestation counts the fleet page shows.
const HOURS: u64 = 24;

/// The largest page number taken (so an offset stays small).
const MAX_PAGE: u64 = 10_000;

/// `?status=&page=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page: u64,
}

/// One row of the workloads table.
fn workload_row(root: &str, now: u64, w: &vouch_store::WorkloadRecord) -> String {
    format!(
        "<tr class=\"{s}\"><td><a href=\"{href}\">{name}</a></td><td><code>{node}</code></td>\
         <td>{badge}</td><td>{reason}</td><td>{last}</td><td>{deadline}</td></tr>",
        s = esc(&w.status),
        href = esc(&format!("{root}/workload?id={}", enc(&w.id))),
        name = esc(&w.name),
        node = esc(&w.node_id),
        badge = badge(&w.status),
        reason = esc(&w.reason),
        last = ago(now, w.last_attested_at),
        deadline = ago(now, w.deadline),
    )
}

const WORKLOAD_HEAD: &str = "<table class=workloads><thead><tr><th>workload</th><th>node</th>\
<th>status</th><th>reason</th><th>last evidence</th><th>deadline</th></tr></thead><tbody>";

/// Count cards: one per status, linking to the list filtered by it.
fn cards(counts: &[(String, u64)], link: impl Fn(&str) -> String, what: &str) -> String {
    let mut s = String::from("<div class=cards>");
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let _ = write!(s, "<div class=card><div class=n>{total}</div>{what}</div>");
    for status in STATUSES {
        let n = counts
            .iter()
            .find(|(st, _)| st == status)
            .map_or(0, |(_, n)| *n);
        let _ = write!(
            s,
            "<div class=\"card {status}\" data-status={status}><div class=n>{n}</div>\
             <a href=\"{}\">{}</a></div>",
            esc(&link(status)),
            badge(status)
        );
    }
    s.push_str("</div>");
    s
}

/// Attestations per hour over the last [`HOURS`], stacked by status, as an inline SVG (no
/// script), each bar titled with its numbers.
fn chart(buckets: &[vouch_store::StatusBucket], now: u64) -> String {
    let first = (now / 3600 + 1).saturating_sub(HOURS) * 3600;
    let mut per: Vec<[u64; 4]> = vec![[0; 4]; HOURS as usize];
    for b in buckets {
        let Some(i) = b.start.checked_sub(first).map(|d| (d / 3600) as usize) else {
            continue;
        };
        if let (Some(row), Some(k)) = (per.get_mut(i), STATUSES.iter().position(|s| *s == b.status))
        {
            row[k] += b.count;
        }
    }
    let max = per
        .iter()
        .map(|r| r.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let colours = ["#c5221f", "#b06000", "#137333", "#6b7280"];
    let (w, h) = (24u64, 120u64);
    let mut s = format!(
        "<svg class=chart role=img aria-label=\"attestations per hour\" width={} height={} \
         xmlns=\"http://www.w3.org/2000/svg\">",
        w * HOURS,
        h + 16
    );
    for (i, row) in per.iter().enumerate() {
        let mut y = h;
        let total: u64 = row.iter().sum();
        let hour = super::html::when(first + i as u64 * 3600);
        let title = format!(
            "{hour}: {total} attestation(s), {} contraindicated, {} warning, {} affirming, {} none",
            row[0], row[1], row[2], row[3]
        );
        let _ = write!(s, "<g data-total={total}><title>{}</title>", esc(&title));
        for (k, n) in row.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let bh = (n * h).div_ceil(max);
            y = y.saturating_sub(bh);
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{bh}\" fill=\"{}\" />",
                i as u64 * w + 2,
                w - 4,
                colours[k]
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"none\" pointer-events=\"all\" /></g>",
            i as u64 * w
        );
    }
    let _ = write!(
        s,
        "<text x=0 y={} font-size=11>{} h ago</text><text x={} y={} font-size=11 \
         text-anchor=end>now</text></svg>",
        h + 13,
        HOURS,
        w * HOURS,
        h + 13
    );
    s
}

/// `GET /dashboard/`: workloads and nodes by status, attestations per hour, and one page of
/// workloads (worst first, or of one status).
pub(crate) async fn fleet(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<ListQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let status = q
        .status
        .as_deref()
        .filter(|s| STATUSES.contains(s))
        .map(str::to_string);
    let page = q.page.min(MAX_PAGE);
    let now = unix_now();
    let root = super::root(&st);
    let reads = async {
        let counts = st.store.workload_status_counts().await?;
        let nodes = st.store.node_status_counts().await?;
        let buckets = st
            .store
            .attestation_counts(now.saturating_sub(HOURS * 3600), 3600)
            .await?;
        let rows = st
            .store
            .workloads_page(status.as_deref(), page * u64::from(PAGE), PAGE + 1)
            .await?;
        Ok::<_, vouch_store::StoreError>((counts, nodes, buckets, rows))
    };
    let (counts, nodes, buckets, mut rows) = match reads.await {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let mut body = String::new();
    body.push_str("<h2>Workloads by status</h2>");
    body.push_str(&cards(
        &counts,
        |s| format!("{root}/?status={s}"),
        "workloads",
    ));
    body.push_str(
        "<h2>Nodes by status</h2><p class=meta>A node has the worst status of its workloads.</p>",
    );
    body.push_str(&cards(&nodes, |_| format!("{root}/nodes"), "nodes"));
    body.push_str("<h2>Attestations per hour, last 24 hours</h2>");
    body.push_str(&chart(&buckets, now));
    let _ = write!(
        body,
        "<h2>Workloads{}</h2>{WORKLOAD_HEAD}",
        status
            .as_deref()
            .map(|s| format!(" {}", badge(s)))
            .unwrap_or_default()
    );
    for w in &rows {
        body.push_str(&workload_row(&root, now, w));
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=6>No workload here.</td></tr>");
    }
    body.push_str("</tbody></table>");
    body.push_str(&pager(page, more, |p| match &status {
        Some(s) => format!("{root}/?status={s}&page={p}"),
        None => format!("{root}/?page={p}"),
    }));
    framed(&st, &v, "fleet", "Fleet", &body)
}

/// `GET /dashboard/nodes`: nodes, worst first, with their workload counts.
pub(crate) async fn nodes(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<ListQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let page = q.page.min(MAX_PAGE);
    let root = super::root(&st);
    let mut rows = match st
        .store
        .node_statuses(page * u64::from(PAGE), PAGE + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(&st, &v, e),
    };
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let mut body = String::from(
        "<table class=nodes><thead><tr><th>node</th><th>hostname</th><th>workloads</th>\
         <th>status</th></tr></thead><tbody>",
    );
    for n in &rows {
        let _ = write!(
            body,
            "<tr class=\"{s}\"><td><code>{id}</code></td><td>{host}</td><td>{n}</td><td>{b}</td></tr>",
            s = esc(&n.status),
            id = esc(&n.id),
            host = esc(&n.hostname),
            n = n.workloads,
            b = badge(&n.status),
        );
    }
    if rows.is_empty() {
        body.push_str("<tr><td colspan=4>No node has enrolled.</td></tr>");
    }
    body.push_str("</tbody></table>");
    body.push_str(&pager(page, more, |p| format!("{root}/nodes?page={p}")));
    framed(&st, &v, "nodes", "Nodes", &body)
}

/// `GET /dashboard/failures`: workloads contraindicated now, then those with warnings, each
/// with its reason (one page of each).
pub(crate) async fn failures(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<ListQuery>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let page = q.page.min(MAX_PAGE);
    let now = unix_now();
    let root = super::root(&st);
    let mut body = String::new();
    let mut any_more = false;
    for (status, title) in [
        ("contraindicated", "Contraindicated: not trusted"),
        ("warning", "Warnings"),
    ] {
        let mut rows = match st
            .store
            .workloads_page(Some(status), page * u64::from(PAGE), PAGE + 1)
            .await
        {
            Ok(r) => r,
            Err(e) => return store_failed(&st, &v, e),
        };
        any_more |= rows.len() > PAGE as usize;
        rows.truncate(PAGE as usize);
        let _ = write!(body, "<h2 id={status}>{}</h2>{WORKLOAD_HEAD}", esc(title));
        for w in &rows {
            body.push_str(&workload_row(&root, now, w));
        }
        if rows.is_empty() {
            body.push_str("<tr><td colspan=6>None.</td></tr>");
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&pager(page, any_more, |p| {
        format!("{root}/failures?page={p}")
    }));
    framed(&st, &v, "failures", "Failures", &body)
}

/// The anomaly kinds (`vouch-server`'s detector), for the filter links.
const ANOMALY_KINDS: [&str; 6] = [
    "new_measurement",
    "fleet_change",
    "tpm_counter",
    "rate_outlier",
    "latency_outlier",
    "cloned_measurements",
];

/// `?kind=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnomalyFilter {
    #[serde(default)]
    kind: Option<String>,
}

/// `GET /dashboard/anomalies?kind=`: the latest fleet anomaly flags (issue 16 item 5), newest
/// first, each with the reason it gives in words (one page; the API's `/v1/anomalies` pages
/// further back by time).
pub(crate) async fn anomalies(
    AxState(st): AxState<S>,
    Extension(v): Extension<Viewer>,
    q: Q<AnomalyFilter>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let kind = q.kind.filter(|k| ANOMALY_KINDS.contains(&k.as_str()));
    let root = super::root(&st);
    let flags = match st
        .store
        .anomalies(&vouch_store::AnomalyQuery {
            kind: kind.clone(),
            limit: PAGE,
            ..Default::default()
        })
        .await
    {
        Ok(f) => f,
        Err(e) => return store_failed(&st, &v, e),
    };
    let now = unix_now();
    let mut body = String::from(
        "<p class=meta>Flags block nothing unless a policy reads <code>input.anomalies</code>. Kind: ",
    );
    let _ = write!(
        body,
        "<a href=\"{}\">all</a>",
        esc(&format!("{root}/anomalies"))
    );
    for k in ANOMALY_KINDS {
        let _ = write!(
            body,
            " · <a href=\"{}\">{k}</a>",
            esc(&format!("{root}/anomalies?kind={k}"))
        );
    }
    body.push_str(
        "</p><table class=anomalies><thead><tr><th>last seen</th><th>kind</th><th>group</th>\
         <th>workload</th><th>reason</th><th>times</th><th>first seen</th></tr></thead><tbody>",
    );
    for f in &flags {
        let workload = if f.workload_id.is_empty() {
            format!("<code>{}</code>", esc(&f.node_id))
        } else {
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&format!("{root}/workload?id={}", enc(&f.workload_id))),
                esc(&f.workload_id)
            )
        };
        let _ = write!(
            body,
            "<tr class=\"{kind}\"><td>{last}</td><td><code>{kind}</code></td><td>{group}</td>\
             <td>{workload}</td><td class=reason>{reason}</td><td>{count}</td><td>{first}</td></tr>",
            last = ago(now, Some(f.last_seen)),
            kind = esc(&f.kind),
            group = esc(&f.group),
            reason = esc(&f.reason),
            count = f.count,
            first = super::html::when(f.first_seen),
        );
    }
    if flags.is_empty() {
        body.push_str("<tr><td colspan=7>No anomaly flagged.</td></tr>");
    }
    body.push_str("</tbody></table>");
    framed(&st, &v, "anomalies", "Anomalies", &body)
}

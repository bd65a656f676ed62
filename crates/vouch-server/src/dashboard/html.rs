//! HTML building blocks of the dashboard: escaping, the page frame, tables, pagers. Every
//! string that reaches a page goes through [`esc`] (text and attribute values alike) or, inside
//! a link's query, through [`enc`] first; nothing is ever inserted raw.

use std::fmt::Write as _;

/// Escape `s` for HTML text and double- or single-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
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

/// Percent-encode `s` as a URL query component (everything but unreserved characters).
pub(crate) fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(char::from(b));
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// `s` cut to at most `max` bytes (at a character boundary), with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `12s ago`, `in 30s`, `never`.
pub(crate) fn ago(now: u64, t: Option<u64>) -> String {
    match t {
        Some(t) if t >= i64::MAX as u64 => "none".into(),
        Some(t) if now >= t => format!("{} ago", span(now - t)),
        Some(t) => format!("in {}", span(t - now)),
        None => "never".into(),
    }
}

fn span(s: u64) -> String {
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A UTC date and time, `2026-12-05 15:09:55Z`.
pub(crate) fn when(t: u64) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A status as a coloured badge.
pub(crate) fn badge(status: &str) -> String {
    format!("<b class=\"st {0}\">{0}</b>", esc(status))
}

/// The statuses, worst first.
pub(crate) const STATUSES: [&str; 4] = ["contraindicated", "warning", "affirming", "none"];

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
header{background:#1f2937;color:#fff;padding:.6em 1.5em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#e5e7eb;text-decoration:none}header a.on{color:#fff;font-weight:bold;text-decoration:underline}\
header .who{margin-left:auto;color:#cbd5e1;font-size:13px}header form{display:inline}\
header button{font-size:12px}main{padding:1em 1.5em}\
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}\
td,th{border-bottom:1px solid #ddd;padding:.35em .6em;text-align:left;font-size:14px;vertical-align:top}\
th{background:#f3f4f6}code,pre{font-size:12px}pre{background:#f8f8f8;padding:.6em;overflow:auto;max-height:40em}\
.st{padding:.1em .45em;border-radius:.3em;color:#fff;font-size:13px}.st.affirming{background:#137333}\
.st.warning{background:#b06000}.st.contraindicated{background:#c5221f}.st.none{background:#6b7280}\
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:.4em;padding:.6em 1em;min-width:9em}\
.card .n{font-size:26px;font-weight:bold}.meta{color:#555;font-size:13px}\
tr.differs td{background:#fdecea}.ok{color:#137333;font-weight:bold}.bad{color:#c5221f;font-weight:bold}\
ins{background:#e6ffec;text-decoration:none;display:block}del{background:#ffebe9;text-decoration:none;display:block}\
.pager{margin:.5em 0}.pager a{margin-right:1em}.todo{border:2px dashed #b06000;padding:1em;background:#fff8e1}";

/// The dashboard's pages, for the navigation bar.
const NAV: [(&str, &str); 7] = [
    ("fleet", "Fleet"),
    ("nodes", "Nodes"),
    ("failures", "Failures"),
    ("anomalies", "Anomalies"),
    ("revocations", "Revocations"),
    ("policies", "Policies"),
    ("audit", "Audit log"),
];

/// Who is looking, for the page frame.
pub(crate) struct Frame<'a> {
    /// The dashboard's own path (`/dashboard` or `/t/<tenant>/dashboard`).
    pub root: &'a str,
    /// The tenant shown.
    pub tenant: &'a str,
    /// The signed-in token's name.
    pub who: &'a str,
}

/// A whole page: the frame around `body`, the navigation's `current` entry marked.
pub(crate) fn page(f: &Frame<'_>, current: &str, title: &str, body: &str) -> String {
    let mut nav = String::new();
    for (slug, label) in NAV {
        let href = if slug == "fleet" {
            format!("{}/", f.root)
        } else {
            format!("{}/{slug}", f.root)
        };
        let _ = write!(
            nav,
            "<a href=\"{}\"{}>{label}</a>",
            esc(&href),
            if slug == current { " class=on" } else { "" }
        );
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width\"><title>{title} · Vouch</title><style>{STYLE}</style>\
</head><body><header><b>Vouch</b> <span class=meta style=\"color:#cbd5e1\">tenant {tenant}</span>{nav}\
<span class=who>signed in as {who} (auditor, read-only)</span>\
<form method=post action=\"{root}/logout\"><button type=submit>Sign out</button></form></header>\
<main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        tenant = esc(f.tenant),
        who = esc(f.who),
        root = esc(f.root),
    )
}

/// Links to the previous and next page of a list: `href(page)` builds a link; `more` says
/// whether a next page exists.
pub(crate) fn pager(page: u64, more: bool, href: impl Fn(u64) -> String) -> String {
    let mut s = String::from("<div class=pager>");
    if page > 0 {
        let _ = write!(s, "<a href=\"{}\">← newer</a>", esc(&href(page - 1)));
    }
    if more {
        let _ = write!(s, "<a href=\"{}\">older →</a>", esc(&href(page + 1)));
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_query_characters() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(enc("n1/a b&c=<d>"), "n1%2Fa%20b%26c%3D%3Cd%3E");
        assert_eq!(clip("héllo", 2), "h…");
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
        assert_eq!(when(1_764_947_395), "2025-12-05 15:09:55Z");
        assert_eq!(ago(100, Some(40)), "60s ago");
        assert_eq!(ago(100, None), "never");
    }
}

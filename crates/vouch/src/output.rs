//! Human tables and JSON output.

use serde::Serialize;

/// Print rows as an aligned table with a header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Print an API answer that is a JSON array: as pretty JSON with `json`, else as a table of
/// `headers` with `row` of each element (anything but an array is an empty table).
pub fn list(
    list: &serde_json::Value,
    json: bool,
    headers: &[&str],
    row: impl Fn(&serde_json::Value) -> Vec<String>,
) -> anyhow::Result<()> {
    if json {
        return self::json(list);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(row)
        .collect();
    table(headers, &rows);
    Ok(())
}

/// Print a value as pretty JSON.
pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A Unix time as seconds ago.
pub fn ago(t: Option<u64>) -> String {
    let now = vouch_server::unix_now();
    match t {
        Some(t) if now >= t => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
        None => "-".into(),
    }
}

/// A Unix time as `HH:MM:SS` UTC, for log-like lines.
pub fn clock(t: u64) -> String {
    let s = t % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

//! Reference values as CSV for `vouch refvalue import`: the columns kind,key,value, an
//! optional header row, fields quoted as in RFC 4180 (`"a,b"`, `""` for a quote inside), `#`
//! lines and blank lines skipped. Bounded: at most [`MAX_ROWS`] rows and [`MAX_FIELD`] bytes a
//! field; a malformed row is refused with its line number.

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// Most rows one import carries (the verifier's limit too).
pub(crate) const MAX_ROWS: usize = 100_000;
/// Longest field, bytes.
const MAX_FIELD: usize = 4096;

/// The values of `text`, and for each the name of its row (`line N`) for error messages.
pub(crate) fn parse(text: &str) -> Result<(Vec<Value>, Vec<String>)> {
    let mut values = Vec::new();
    let mut rows = Vec::new();
    // Spreadsheets write a byte-order mark first.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = fields(line).map_err(|e| anyhow::anyhow!("line {n}: {e}"))?;
        if values.is_empty() && rows.is_empty() && fields == ["kind", "key", "value"] {
            rows.push(String::new());
            continue;
        }
        let [kind, key, value] = <[String; 3]>::try_from(fields)
            .map_err(|f| anyhow::anyhow!("line {n}: {} fields, not 3 (kind,key,value)", f.len()))?;
        if values.len() == MAX_ROWS {
            bail!("more than {MAX_ROWS} rows: split the import");
        }
        values.push(json!({ "kind": kind, "key": key, "value": value }));
        rows.push(format!("line {n}"));
    }
    // The header's placeholder is not a value.
    rows.retain(|r| !r.is_empty());
    if values.is_empty() {
        bail!("no reference values in the file");
    }
    Ok((values, rows))
}

/// The fields of one line.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
                // A third comma: a fourth field follows (read no further).
                if out.len() == 3 {
                    return Err("more than 3 fields".into());
                }
            }
            (false, c) if was_quoted => return Err(format!("{c:?} after a closing quote")),
            (false, c) => cur.push(c),
        }
        if cur.len() > MAX_FIELD {
            return Err(format!("a field longer than {MAX_FIELD} bytes"));
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(cur);
    Ok(out)
}

/// The verifier names a refused value by its position ("reference value N: …"); say which row
/// of the file that is.
pub(crate) fn name_row(e: anyhow::Error, rows: &[String]) -> anyhow::Error {
    let msg = format!("{e:#}");
    let named = msg.split("reference value ").nth(1).and_then(|rest| {
        let (n, why) = rest.split_once(':')?;
        let row = rows.get(n.trim().parse::<usize>().ok()?.checked_sub(1)?)?;
        Some(format!("{row} (reference value {n}):{why}"))
    });
    match named {
        Some(m) => anyhow::anyhow!("the whole import was refused, nothing was imported: {m}"),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn quoted_fields_headers_and_bad_rows() {
        let (v, rows) =
            parse("kind,key,value\r\n# comment\nfile,\"/a,b\",\"x\"\"y\"\n\nexecutable,db,ab\n")
                .unwrap();
        assert_eq!(
            v[0],
            json!({"kind": "file", "key": "/a,b", "value": "x\"y"})
        );
        assert_eq!(v[1]["key"], "db");
        assert_eq!(rows, ["line 3", "line 5"]);
        let e = parse("file,a,b\nfile,a\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("2 fields"), "{e}");
        let e = parse("file,\"a,b\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not closed"), "{e}");
        let e = parse("file,a\"b,c\n").unwrap_err().to_string();
        assert!(e.contains("quote inside"), "{e}");
        let e = parse("file,a,b,c\n").unwrap_err().to_string();
        assert!(e.contains("more than 3"), "{e}");
        assert!(parse("kind,key,value\n").is_err());
        // A spreadsheet's export: byte-order mark, header, CRLF.
        let (v, rows) = parse("\u{feff}kind,key,value\r\nfile,/a,1\r\n").unwrap();
        assert_eq!((v.len(), rows[0].as_str()), (1, "line 2"));
    }

    #[test]
    fn the_verifiers_position_becomes_the_files_line() {
        let rows = vec!["line 2".to_string(), "line 4".to_string()];
        let e = anyhow::anyhow!(
            "the verifier refused (400): reference value 2: kind and key must not be empty"
        );
        let m = name_row(e, &rows).to_string();
        assert!(
            m.contains("line 4 (reference value 2): kind and key"),
            "{m}"
        );
        assert!(m.contains("nothing was imported"), "{m}");
    }
}

//! What the three cloud methods share: reading a local directory of the provider's
//! published certificates or keys (at configuration time only), civil-time parsing for the
//! documents' timestamps, and checks on the fields that become node keys and selectors.

use crate::NodeAttestError;
use std::path::{Path, PathBuf};

/// Most files read from one certificate/key directory (with its subdirectories).
const MAX_FILES: usize = 2048;
/// Largest file read from it.
const MAX_FILE: u64 = 1024 * 1024;

/// The default tolerance for clocks, seconds.
pub(crate) const DEFAULT_SKEW: u64 = 300;

pub(crate) fn default_skew() -> u64 {
    DEFAULT_SKEW
}

pub(crate) fn yes() -> bool {
    true
}

/// The files of `dir` and of its immediate subdirectories whose names end in one of `exts`,
/// sorted by path: `(path, contents)`.
pub(crate) fn read_dir_files(
    method: &'static str,
    dir: &Path,
    exts: &[&str],
) -> Result<Vec<(PathBuf, Vec<u8>)>, NodeAttestError> {
    let cfg = |why: String| NodeAttestError::Config { method, why };
    let mut paths = Vec::new();
    let mut dirs = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, level)) = dirs.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| cfg(format!("{}: {e}", d.display())))?;
        for entry in rd {
            let entry = entry.map_err(|e| cfg(format!("{}: {e}", d.display())))?;
            let p = entry.path();
            // Follow symbolic links (certificate stores are often links to a bundle).
            let ft = std::fs::metadata(&p)
                .map_err(|e| cfg(format!("{}: {e}", p.display())))?
                .file_type();
            if ft.is_dir() && level == 0 {
                dirs.push((p, 1));
            } else if ft.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| exts.iter().any(|x| n.ends_with(x)))
            {
                paths.push(p);
            }
            if paths.len() > MAX_FILES {
                return Err(cfg(format!(
                    "{}: more than {MAX_FILES} files",
                    dir.display()
                )));
            }
        }
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let len = std::fs::metadata(&p)
            .map_err(|e| cfg(format!("{}: {e}", p.display())))?
            .len();
        if len > MAX_FILE {
            return Err(cfg(format!(
                "{}: larger than {MAX_FILE} bytes",
                p.display()
            )));
        }
        let bytes = std::fs::read(&p).map_err(|e| cfg(format!("{}: {e}", p.display())))?;
        out.push((p, bytes));
    }
    Ok(out)
}

/// The certificates (DER) of a PEM file; a file with none, or a block that does not decode,
/// is a configuration error.
pub(crate) fn pem_file_certs(
    method: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<Vec<u8>>, NodeAttestError> {
    let cfg = |why: String| NodeAttestError::Config { method, why };
    let text =
        std::str::from_utf8(bytes).map_err(|_| cfg(format!("{}: not UTF-8", path.display())))?;
    let mut out = Vec::new();
    for b in vouch_x509::pem_blocks(text, "CERTIFICATE") {
        out.push(b.map_err(|e| cfg(format!("{}: {e}", path.display())))?);
    }
    if out.is_empty() {
        return Err(cfg(format!("{}: no CERTIFICATE block", path.display())));
    }
    Ok(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of a checked civil date and time.
pub(crate) fn unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let t = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    u64::try_from(t).ok()
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `2026-02-16T00:38:27Z` (RFC 3339 in UTC, no fraction), as AWS writes `pendingTime`.
pub(crate) fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    unix(
        i64::from(num(&s[0..4])?),
        num(&s[5..7])?,
        num(&s[8..10])?,
        num(&s[11..13])?,
        num(&s[14..16])?,
        num(&s[17..19])?,
    )
}

/// `04/19/22 01:27:21 -0000` (month/day/two-digit year, time, UTC offset), as Azure IMDS
/// writes `timeStamp.createdOn` / `expiresOn`.
pub(crate) fn parse_azure_time(s: &str) -> Option<u64> {
    let (date, rest) = s.split_once(' ')?;
    let (time, off) = rest.split_once(' ')?;
    let mut d = date.split('/');
    let (mo, day, yy) = (num(d.next()?)?, num(d.next()?)?, d.next()?);
    if d.next().is_some() || yy.len() != 2 {
        return None;
    }
    let mut t = time.split(':');
    let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if t.next().is_some() {
        return None;
    }
    let ob = off.as_bytes();
    if ob.len() != 5 || !(ob[0] == b'+' || ob[0] == b'-') {
        return None;
    }
    let offset = i64::from(num(&off[1..3])?) * 3600 + i64::from(num(&off[3..5])?) * 60;
    let local = unix(2000 + i64::from(num(yy)?), mo, day, h, mi, sec)?;
    let utc = if ob[0] == b'+' {
        i64::try_from(local).ok()? - offset
    } else {
        i64::try_from(local).ok()? + offset
    };
    u64::try_from(utc).ok()
}

/// Require a field that goes into a node key to be a plain identifier: 1 to 128 characters
/// of `[A-Za-z0-9._-]` (so `:` cannot shift the key's parts).
pub(crate) fn ident<'a>(
    method: &'static str,
    field: &str,
    v: &'a str,
) -> Result<&'a str, NodeAttestError> {
    if v.is_empty()
        || v.len() > 128
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(NodeAttestError::Malformed {
            method,
            why: format!("{field} {v:?} is not an identifier"),
        });
    }
    Ok(v)
}

/// Require a selector value to be printable text of at most 256 bytes.
pub(crate) fn text<'a>(
    method: &'static str,
    field: &str,
    v: &'a str,
) -> Result<&'a str, NodeAttestError> {
    if v.len() > 256 || v.chars().any(char::is_control) {
        return Err(NodeAttestError::Malformed {
            method,
            why: format!("{field} is not printable text of at most 256 bytes"),
        });
    }
    Ok(v)
}

/// Whether `v` is allowed by `allow` (an empty list allows everything).
pub(crate) fn allowed(allow: &[String], v: &str) -> bool {
    allow.is_empty() || allow.iter().any(|a| a == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2026-02-16T00:38:27Z"),
            Some(1_771_202_307)
        );
        assert_eq!(parse_rfc3339_utc("2026-02-16 00:38:27Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-13-16T00:38:27Z"), None);
        assert_eq!(
            parse_azure_time("04/19/22 01:27:21 -0000"),
            Some(1_650_331_641)
        );
        assert_eq!(
            parse_azure_time("04/19/22 03:27:21 +0200"),
            Some(1_650_331_641)
        );
        assert_eq!(parse_azure_time("04/19/2022 01:27:21 -0000"), None);
        assert_eq!(parse_azure_time("04/19/22 01:27:21"), None);
    }

    #[test]
    fn identifiers_cannot_carry_separators() {
        assert!(ident("m", "f", "i-0c5541936caf78c12").is_ok());
        assert!(ident("m", "f", "a:b").is_err());
        assert!(ident("m", "f", "").is_err());
        assert!(text("m", "f", "20_04-lts gen2").is_ok());
        assert!(text("m", "f", "a\nb").is_err());
    }
}

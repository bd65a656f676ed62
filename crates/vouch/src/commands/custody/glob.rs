//! Python's `fnmatch.fnmatch` on POSIX, as in-toto's artifact rules use it (`fnmatch.filter`):
//! case-sensitive, `*` any run of characters (including `/` and newlines), `?` one character,
//! `[...]` a set, `[!...]` its complement. Sets follow CPython 3.11's `fnmatch.translate`
//! exactly: `]` first in a set is literal; a `[` with no closing `]` is a literal `[`; `-`
//! between two characters is a range, elsewhere literal; a reversed range (`z-a`) is dropped
//! together with its two ends, as Python drops it; `[]`-like sets left empty never match, and
//! `[!]` matches one character of anything; backslash is an ordinary character. A pattern
//! whose translation makes CPython raise (an empty set left beside a range) is an error, so
//! the rule holding it is refused, as in-toto's verification fails on it.

/// One compiled element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
    /// A set of (inclusive) character ranges, or their complement.
    Set {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
    /// An empty set: matches nothing.
    Never,
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Star | Tok::Any => true,
            Tok::Lit(l) => *l == c,
            Tok::Set { negate, ranges } => {
                ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negate
            }
            Tok::Never => false,
        }
    }
}

/// Longest pattern compiled (characters).
const MAX_PATTERN: usize = 4096;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(super) struct Pattern(Vec<Tok>);

/// `(char, is_range_hyphen)`: a set's contents as CPython's translate leaves them.
type SetChars = Vec<(char, bool)>;

/// The set `p[i..j]` (between `[` and `]`) as CPython 3.11 `fnmatch._translate` builds it.
fn set_chars(p: &[char], i: usize, j: usize) -> Result<SetChars, String> {
    let stuff = &p[i..j];
    if !stuff.contains(&'-') {
        return Ok(stuff.iter().map(|c| (*c, false)).collect());
    }
    let mut chunks: Vec<Vec<char>> = Vec::new();
    let mut start = i;
    let mut k = if p[i] == '!' { i + 2 } else { i + 1 };
    loop {
        // str.find('-', k, j): -1 when k >= j.
        let found = (k < j)
            .then(|| p[k..j].iter().position(|c| *c == '-').map(|o| k + o))
            .flatten();
        let Some(f) = found else { break };
        chunks.push(p[start..f].to_vec());
        start = f + 1;
        k = f + 3;
    }
    let last = p[start..j].to_vec();
    if !last.is_empty() {
        chunks.push(last);
    } else if let Some(c) = chunks.last_mut() {
        c.push('-');
    } else {
        return Err("an empty set".into());
    }
    // Remove empty ranges (`z-a`), as CPython does, from the end.
    let mut k = chunks.len();
    while k > 1 {
        k -= 1;
        let (Some(a), Some(b)) = (chunks[k - 1].last(), chunks[k].first()) else {
            return Err("CPython's fnmatch cannot translate this set (IndexError)".into());
        };
        if a > b {
            let mut merged = chunks[k - 1][..chunks[k - 1].len() - 1].to_vec();
            merged.extend_from_slice(&chunks[k][1..]);
            chunks[k - 1] = merged;
            chunks.remove(k);
        }
    }
    let mut out = Vec::new();
    for (n, c) in chunks.iter().enumerate() {
        if n > 0 {
            out.push(('-', true));
        }
        out.extend(c.iter().map(|ch| (*ch, false)));
    }
    Ok(out)
}

/// A set's contents (after a leading `!` was taken) as ranges: `a` marker `b` is a range,
/// anything else a literal.
fn ranges(stuff: &[(char, bool)]) -> Vec<(char, char)> {
    let mut out = Vec::new();
    let mut t = 0;
    while t < stuff.len() {
        if t + 2 < stuff.len() && !stuff[t].1 && stuff[t + 1].1 && !stuff[t + 2].1 {
            out.push((stuff[t].0, stuff[t + 2].0));
            t += 3;
        } else {
            out.push((stuff[t].0, stuff[t].0));
            t += 1;
        }
    }
    out
}

impl Pattern {
    /// Compile `pat`; `Err` when CPython's translation would fail on it.
    pub(super) fn new(pat: &str) -> Result<Self, String> {
        let p: Vec<char> = pat.chars().collect();
        if p.len() > MAX_PATTERN {
            return Err(format!("pattern longer than {MAX_PATTERN} characters"));
        }
        let n = p.len();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < n {
            let c = p[i];
            i += 1;
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                '[' => {
                    let mut j = i;
                    if j < n && p[j] == '!' {
                        j += 1;
                    }
                    if j < n && p[j] == ']' {
                        j += 1;
                    }
                    while j < n && p[j] != ']' {
                        j += 1;
                    }
                    if j >= n {
                        toks.push(Tok::Lit('['));
                        continue;
                    }
                    let stuff = set_chars(&p, i, j)?;
                    i = j + 1;
                    if stuff.is_empty() {
                        toks.push(Tok::Never);
                    } else if stuff == [('!', false)] {
                        toks.push(Tok::Any);
                    } else if stuff[0] == ('!', false) {
                        toks.push(Tok::Set {
                            negate: true,
                            ranges: ranges(&stuff[1..]),
                        });
                    } else {
                        toks.push(Tok::Set {
                            negate: false,
                            ranges: ranges(&stuff),
                        });
                    }
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Self(toks))
    }

    /// Whether `name` matches, whole.
    pub(super) fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let toks = &self.0;
        let (mut ti, mut ni) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ni < name.len() {
            if ti < toks.len() {
                if toks[ti] == Tok::Star {
                    star = Some((ti, ni));
                    ti += 1;
                    continue;
                }
                if toks[ti].matches(name[ni]) {
                    ti += 1;
                    ni += 1;
                    continue;
                }
            }
            match star {
                Some((st, sn)) => {
                    ti = st + 1;
                    ni = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            }
        }
        while ti < toks.len() && toks[ti] == Tok::Star {
            ti += 1;
        }
        ti == toks.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(name: &str, pat: &str) -> bool {
        Pattern::new(pat).unwrap().matches(name)
    }

    /// What CPython 3.11's `fnmatch.translate` makes of a few sets (the regex it prints is in
    /// each comment); the integration test custody::glob_rules_agree_with_in_toto checks
    /// many more against in-toto's own verification.
    #[test]
    fn sets_as_cpython_translates_them() {
        // (?s:[\-c]x)\Z
        assert!(m("-x", "[b-a-c]x") && m("cx", "[b-a-c]x") && !m("bx", "[b-a-c]x"));
        // (?s:\[!\])\Z and (?s:\[\])\Z: no closing bracket after the first, literal.
        assert!(m("[!]", "[!]") && !m("a", "[!]"));
        assert!(m("[]", "[]"));
        // (?s:(?!)x)\Z
        assert!(!m("zx", "[z-a]x") && !m("ax", "[z-a]x"));
        // (?s:[%-\-]x)\Z and (?s:[\--0]x)\Z
        assert!(m(",x", "[%--]x") && !m(".x", "[%--]x"));
        assert!(m("/x", "[--0]x") && !m("1x", "[--0]x"));
        assert!(m("]x", "[]]x") && m("ax", "[!]]x") && !m("]x", "[!]]x"));
        assert!(m("a\nb", "a*b") && m("dir/sub/x.o", "*.o"));
        assert!(!m("ab", "a") && m("", "*") && !m("", "?"));
    }
}

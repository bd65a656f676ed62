//! TUF's search for a target through delegated targets roles (specification 5.6.7), run again
//! over the metadata tough loaded and verified, so that a target is accepted only where the
//! specification's search finds it.
//!
//! tough 0.24 verifies each delegated role against its delegation's keys and threshold and
//! walks the delegations in order with terminating roles, but matches a role's `paths` with
//! globset's defaults, where `*` also matches `/`: a role delegated `apps/*` could supply
//! `apps/sub/evil.conf`, which the specification (and python-tuf) refuse ("a path separator in
//! a path SHOULD NOT be matched by a wildcard"). Here a pattern matches segment by segment
//! (the same number of `/`-separated parts, each by shell-style `fnmatch`), as python-tuf's
//! `DelegatedRole.is_delegated_path` does; `path_hash_prefixes` by the sha256 of the path.

use sha2::Digest as _;
use tough::schema::{DelegatedRole, PathSet, Target, Targets};

/// At most this many roles are visited in one search (python-tuf's `max_delegations`).
const MAX_DELEGATIONS: usize = 32;

/// One token of a shell-style pattern.
enum Tok {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// `[...]` / `[!...]`: one character in (or not in) the ranges.
    Class(Vec<(char, char)>, bool),
    /// Any other character, itself.
    Lit(char),
}

fn tokens(p: &str) -> Vec<Tok> {
    let c: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '[' => {
                // As Python's fnmatch: `]` right after `[` or `[!` is a member; no closing
                // bracket makes `[` a literal.
                let mut j = i + 1;
                let neg = c.get(j) == Some(&'!');
                if neg {
                    j += 1;
                }
                if c.get(j) == Some(&']') {
                    j += 1;
                }
                while j < c.len() && c[j] != ']' {
                    j += 1;
                }
                if j >= c.len() {
                    out.push(Tok::Lit('['));
                } else {
                    let body = &c[i + 1 + usize::from(neg)..j];
                    let mut ranges = Vec::new();
                    let mut k = 0;
                    while k < body.len() {
                        if k + 2 < body.len() && body[k + 1] == '-' {
                            ranges.push((body[k], body[k + 2]));
                            k += 3;
                        } else {
                            ranges.push((body[k], body[k]));
                            k += 1;
                        }
                    }
                    out.push(Tok::Class(ranges, neg));
                    i = j;
                }
            }
            ch => out.push(Tok::Lit(ch)),
        }
        i += 1;
    }
    out
}

/// Python's `fnmatch.fnmatchcase(name, pattern)` (the whole name; `*` and `?` match `/` too,
/// which is why callers match one path segment at a time).
pub(super) fn fnmatch(name: &str, pattern: &str) -> bool {
    let t = tokens(pattern);
    let s: Vec<char> = name.chars().collect();
    let one = |tok: &Tok, ch: char| match tok {
        Tok::Any => true,
        Tok::Lit(l) => *l == ch,
        Tok::Class(r, neg) => r.iter().any(|(a, b)| *a <= ch && ch <= *b) != *neg,
        Tok::Star => false,
    };
    // Linear-time wildcard matching: on a mismatch, let the last `*` take one more character.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < t.len() && matches!(t[j], Tok::Star) {
            star = Some((j, i));
            j += 1;
        } else if j < t.len() && one(&t[j], s[i]) {
            i += 1;
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    t[j..].iter().all(|x| matches!(x, Tok::Star))
}

/// Whether `role` is delegated `path` in TUF's matching.
pub(super) fn delegated(role: &DelegatedRole, path: &str) -> bool {
    match &role.paths {
        PathSet::Paths(patterns) => patterns.iter().any(|p| {
            let (a, b): (Vec<&str>, Vec<&str>) =
                (path.split('/').collect(), p.value().split('/').collect());
            a.len() == b.len() && a.iter().zip(&b).all(|(s, q)| fnmatch(s, q))
        }),
        PathSet::PathHashPrefixes(prefixes) => {
            let h = hex::encode(sha2::Sha256::digest(path.as_bytes()));
            prefixes.iter().any(|p| h.starts_with(p.value()))
        }
    }
}

/// The target named `name` as TUF's preorder depth-first search finds it from the top-level
/// targets, with the delegated roles' metadata tough loaded (a role tough did not load is
/// skipped, as a role that cannot be loaded ends nothing but its own branch).
pub(super) fn find<'a>(top: &'a Targets, name: &tough::TargetName) -> Option<&'a Target> {
    let path = name.raw();
    let mut stack: Vec<&Targets> = vec![top];
    let mut visited = 0usize;
    while let Some(t) = stack.pop() {
        visited += 1;
        if visited > MAX_DELEGATIONS {
            return None;
        }
        if let Some(found) = t.targets.get(name) {
            return Some(found);
        }
        let Some(d) = &t.delegations else { continue };
        let mut children = Vec::new();
        for role in &d.roles {
            if delegated(role, path) {
                children.push(role);
                if role.terminating {
                    stack.clear();
                    break;
                }
            }
        }
        for role in children.iter().rev() {
            if let Some(s) = &role.targets {
                stack.push(&s.signed);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn fnmatch_as_python() {
        // (name, pattern, fnmatch.fnmatchcase(name, pattern) in Python 3.11)
        for (n, p, want) in [
            ("fw.bin", "*", true),
            ("fw.bin", "*.bin", true),
            ("fw.txt", "*.bin", false),
            ("beta-app.conf", "beta-*", true),
            ("app.conf", "beta-*", false),
            ("a", "?", true),
            ("ab", "?", false),
            ("b", "[abc]", true),
            ("d", "[abc]", false),
            ("d", "[!abc]", true),
            ("5", "[0-9]", true),
            ("x", "[0-9]", false),
            ("[", "[", true),
            ("]", "[]]", true),
            ("a/b", "*", true),
            ("", "*", true),
            ("", "?", false),
            ("aaa", "a*a*a", true),
            ("aa", "a*a*a", false),
            ("foo-version-2.tgz", "foo-version-?.tgz", true),
            ("foo-version-alpha.tgz", "foo-version-?.tgz", false),
        ] {
            assert_eq!(fnmatch(n, p), want, "fnmatchcase({n:?}, {p:?})");
        }
    }
}

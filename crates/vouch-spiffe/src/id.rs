//! SPIFFE IDs (SPIFFE-ID standard §2): `spiffe://<trust-domain>[/<path>]`.

use std::fmt;

use crate::SpiffeError;

/// Longest SPIFFE ID, bytes.
const MAX_ID: usize = 2048;
/// Longest trust domain name, bytes.
const MAX_TD: usize = 255;

/// A trust domain name: lowercase letters, digits, `.`, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

/// A validated SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

fn err(m: impl Into<String>) -> SpiffeError {
    SpiffeError::SpiffeId(m.into())
}

impl TrustDomain {
    /// Parse a trust domain name (or the trust domain of a `spiffe://` URI).
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        let name = s.strip_prefix("spiffe://").unwrap_or(s);
        if name.is_empty() {
            return Err(err("the trust domain is empty"));
        }
        if name.len() > MAX_TD {
            return Err(err(format!(
                "the trust domain is longer than {MAX_TD} bytes"
            )));
        }
        if let Some(c) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        }) {
            return Err(err(format!(
                "the trust domain contains {c:?}: only lowercase letters, digits, '.', '-' and '_' are allowed"
            )));
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<name>`
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SpiffeId {
    /// Parse and validate.
    pub fn parse(s: &str) -> Result<Self, SpiffeError> {
        if s.len() > MAX_ID {
            return Err(err(format!("longer than {MAX_ID} bytes")));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("must start with spiffe:// (lowercase scheme)"))?;
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if td.contains(':') || td.contains('@') {
            return Err(err(
                "a port or user info is not allowed in the trust domain",
            ));
        }
        let trust_domain = TrustDomain::parse(td)?;
        if !path.is_empty() {
            if path.ends_with('/') {
                return Err(err("the path must not end with '/'"));
            }
            for seg in path[1..].split('/') {
                match seg {
                    "" => return Err(err("the path contains an empty segment")),
                    "." | ".." => return Err(err("the path contains a '.' or '..' segment")),
                    _ => {}
                }
                if let Some(c) = seg
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
                {
                    return Err(err(format!(
                        "the path contains {c:?}: only letters, digits, '.', '-' and '_' are allowed (no percent-encoding, query or fragment)"
                    )));
                }
            }
        }
        Ok(Self {
            trust_domain,
            path: path.to_string(),
        })
    }

    /// Build from a trust domain and a path (`/ns/prod/sa/db`).
    pub fn new(trust_domain: &TrustDomain, path: &str) -> Result<Self, SpiffeError> {
        Self::parse(&format!("spiffe://{}{path}", trust_domain.as_str()))
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path (empty, or starting with `/`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for s in [
            "spiffe://example.org",
            "spiffe://example.org/ns/prod/sa/db",
            "spiffe://a-b_c.9/x.y-z_w",
            "spiffe://td/...a",
        ] {
            assert_eq!(SpiffeId::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn invalid_ids() {
        for s in [
            "",
            "spiffe://",
            "SPIFFE://example.org/x",
            "https://example.org/x",
            "spiffe://Example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/../x",
            "spiffe://example.org/a%20b",
            "spiffe://example.org/a?b",
            "spiffe://example.org/a#b",
            "spiffe://example.org:8443/a",
            "spiffe://user@example.org/a",
            "spiffe://exa mple.org/a",
        ] {
            assert!(SpiffeId::parse(s).is_err(), "{s:?} accepted");
        }
        let long = format!("spiffe://td/{}", "a".repeat(2048));
        assert!(SpiffeId::parse(&long).is_err());
        let long_td = format!("spiffe://{}/a", "a".repeat(256));
        assert!(SpiffeId::parse(&long_td).is_err());
    }
}

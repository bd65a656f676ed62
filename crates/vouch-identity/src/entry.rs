//! Registration entries: a SPIFFE ID granted to every workload whose selectors include all of
//! the entry's selectors (node selectors from the node's verified claims, workload selectors
//! from the agent's inspection of the calling process).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{IdentityError, SpiffeId};

/// A selector: `type:value`, e.g. `unix:uid:1000`, `unix:sha256:<hex>`,
/// `vouch:node:<node-id>`, `vouch:status:affirming`, `os:id:debian`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector {
    /// The type (`unix`, `vouch`, `os`, `tpm`, …).
    pub kind: String,
    /// The value, which may itself contain `:` (`uid:1000`).
    pub value: String,
}

impl Selector {
    /// Parse `type:value`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| IdentityError::SpiffeId(format!("selector {s:?} is not type:value")))?;
        let ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 256
                && !t.chars().any(|c| c.is_control() || c.is_whitespace())
        };
        // The type: lowercase letters, digits and `_`, starting with a letter (`k8s`).
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok(kind) || !ok(value) || !kind_ok {
            return Err(IdentityError::SpiffeId(format!(
                "selector {s:?}: the type is lowercase letters and digits, the value has no spaces"
            )));
        }
        Ok(Self {
            kind: kind.into(),
            value: value.into(),
        })
    }
}

impl TryFrom<String> for Selector {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, IdentityError> {
        Self::parse(&s)
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.to_string()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A registration entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Entry id.
    pub id: String,
    /// The SPIFFE ID granted.
    pub spiffe_id: String,
    /// All of these must be present for the entry to apply.
    pub selectors: Vec<Selector>,
    /// SVID lifetime, seconds.
    pub ttl: u64,
    /// Creation time.
    pub created_at: u64,
}

impl Entry {
    /// A new entry; the SPIFFE ID is validated and at least one selector is required.
    pub fn new(
        id: String,
        spiffe_id: &SpiffeId,
        selectors: Vec<Selector>,
        ttl: u64,
        now: u64,
    ) -> Result<Self, IdentityError> {
        if selectors.is_empty() {
            return Err(IdentityError::SpiffeId(
                "an entry needs at least one selector (otherwise every workload would get it)"
                    .into(),
            ));
        }
        if ttl == 0 {
            return Err(IdentityError::SpiffeId("ttl must be positive".into()));
        }
        if spiffe_id.path().starts_with(crate::VERIFIER_PATH_PREFIX) {
            return Err(IdentityError::SpiffeId(format!(
                "{spiffe_id} is under {}, the verifiers' own signing identities: \
                 no entry may grant it",
                crate::VERIFIER_PATH_PREFIX
            )));
        }
        let mut selectors = selectors;
        selectors.sort();
        selectors.dedup();
        Ok(Self {
            id,
            spiffe_id: spiffe_id.to_string(),
            selectors,
            ttl,
            created_at: now,
        })
    }

    /// Whether every selector of the entry is among `available`.
    pub fn matches(&self, available: &[Selector]) -> bool {
        self.selectors.iter().all(|s| available.contains(s))
    }
}

/// The entries that apply to a workload with `available` selectors.
pub fn matching<'a>(entries: &'a [Entry], available: &[Selector]) -> Vec<&'a Entry> {
    entries.iter().filter(|e| e.matches(available)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn selectors_parse_and_print() {
        assert_eq!(sel("unix:uid:1000").to_string(), "unix:uid:1000");
        assert_eq!(sel("unix:uid:1000").kind, "unix");
        assert_eq!(sel("k8s:ns:default").kind, "k8s");
        for bad in [
            "8s:ns:default",
            "k-8s:ns:x",
            "",
            "unix",
            ":x",
            "unix:",
            "Unix:uid:1",
            "unix:a b",
            "unix:\n",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_entry_applies_only_when_all_its_selectors_are_present() {
        let id = SpiffeId::parse("spiffe://example.org/db").unwrap();
        let e = Entry::new(
            "e1".into(),
            &id,
            vec![
                sel("vouch:status:affirming"),
                sel("unix:sha256:ab"),
                sel("unix:uid:1000"),
            ],
            3600,
            0,
        )
        .unwrap();
        let have = [
            sel("vouch:status:affirming"),
            sel("unix:uid:1000"),
            sel("unix:sha256:ab"),
            sel("unix:gid:1000"),
        ];
        assert!(e.matches(&have));
        // Another executable hash: no SVID.
        let other = [
            sel("vouch:status:affirming"),
            sel("unix:uid:1000"),
            sel("unix:sha256:cd"),
        ];
        assert!(!e.matches(&other));
        // A node that is no longer affirming: no SVID.
        let failing = [
            sel("vouch:status:contraindicated"),
            sel("unix:uid:1000"),
            sel("unix:sha256:ab"),
        ];
        assert!(matching(std::slice::from_ref(&e), &failing).is_empty());
        assert!(Entry::new("e2".into(), &id, vec![], 60, 0).is_err());
    }
}

//! Revocation records and heads: the claims of the signed statements verifiers gossip to each
//! other and to relying parties.
//!
//! A record says "`target` of `kind` is revoked, because `reason`, decided by `by` at `iat`";
//! it is the `epoch`-th revocation of the trust domain (epochs are gap-free, 1, 2, 3 …). A head
//! says "every revocation up to `epoch` exists, as of `iat`": a relying party holding records
//! 1..=`epoch` and a head no older than its tolerance knows its view is complete and how stale
//! it is. Both are compact JWS signed by a verifier replica whose key is certified (`x5c`) by the
//! trust domain's X.509 authority, so anyone with the trust bundle can check them offline.

use serde::{Deserialize, Serialize};

/// `typ` of a signed revocation record.
pub const REVOCATION_TYP: &str = "vouch-revocation+jwt";
/// `typ` of a signed revocation head.
pub const REVOCATION_HEAD_TYP: &str = "vouch-revocation-head+jwt";
/// The SPIFFE ID path prefix of verifier replicas' signing certificates.
pub const VERIFIER_ID_PREFIX: &str = "/vouch/verifier/";
/// Longest reason accepted, bytes.
pub const MAX_REASON: usize = 512;
/// Longest target accepted, bytes.
pub const MAX_TARGET: usize = 256;

/// What a revocation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationKind {
    /// A workload (its id, `node_id/name`): its results and SVIDs stop being accepted.
    Workload,
    /// A node: all its agent keys and every workload on it.
    Node,
    /// One X.509-SVID, by serial number (lower-case hex, no leading zeros): a workload's
    /// certificate or a verifier replica's signing certificate.
    Svid,
    /// One agent key, by key id.
    AgentKey,
    /// One attestation result, by its `jti` (the attestation id).
    Result,
}

impl RevocationKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::Workload,
        Self::Node,
        Self::Svid,
        Self::AgentKey,
        Self::Result,
    ];

    /// The name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Node => "node",
            Self::Svid => "svid",
            Self::AgentKey => "agent-key",
            Self::Result => "result",
        }
    }

    /// Parse a name from [`RevocationKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a revocation record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationClaims {
    /// The SPIFFE ID of the replica that signed it.
    pub iss: String,
    /// The position in the trust domain's revocation log, from 1, without gaps.
    pub epoch: u64,
    /// What is revoked.
    pub kind: RevocationKind,
    /// Which one.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Who decided (an operator name, or the replica for automatic revocations).
    pub by: String,
    /// When, Unix seconds.
    pub iat: u64,
}

impl RevocationClaims {
    /// Check the lengths and characters of the free-form fields.
    pub fn check(&self) -> Result<(), String> {
        if self.epoch == 0 {
            return Err("epoch 0 does not exist (epochs start at 1)".into());
        }
        normalize_target(self.kind, &self.target).and_then(|t| {
            if t == self.target {
                Ok(())
            } else {
                Err(format!("target {:?} is not in canonical form", self.target))
            }
        })?;
        if self.reason.len() > MAX_REASON || self.by.len() > MAX_TARGET {
            return Err("reason or author too long".into());
        }
        Ok(())
    }
}

/// The canonical form of a revocation target: SVID serials as lower-case hex without leading
/// zeros or separators; other targets as given. Errors name what is wrong.
pub fn normalize_target(kind: RevocationKind, target: &str) -> Result<String, String> {
    if target.is_empty() || target.len() > MAX_TARGET {
        return Err(format!("a {kind} target is 1-{MAX_TARGET} bytes"));
    }
    if target.chars().any(char::is_control) {
        return Err(format!("the {kind} target contains control characters"));
    }
    if kind != RevocationKind::Svid {
        return Ok(target.to_string());
    }
    let hex: String = target
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("SVID serial {target:?} is not hexadecimal"));
    }
    let trimmed = hex.trim_start_matches('0');
    Ok(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    })
}

/// The canonical revocation target of a certificate serial number (big-endian bytes).
pub fn serial_target(serial: &[u8]) -> String {
    let hex = hex::encode(serial);
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// The claims of a revocation head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationHead {
    /// The SPIFFE ID of the replica that signed it.
    pub iss: String,
    /// The highest epoch in the trust domain's revocation log (0: none yet).
    pub epoch: u64,
    /// When the replica read that epoch from the log, Unix seconds.
    pub iat: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_serials_normalize() {
        for k in RevocationKind::ALL {
            assert_eq!(RevocationKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(RevocationKind::parse("agent_key"), None);
        assert_eq!(
            normalize_target(RevocationKind::Svid, "00:0A:ff").as_deref(),
            Ok("aff")
        );
        assert_eq!(serial_target(&[0, 0x0a, 0xff]), "aff");
        assert!(normalize_target(RevocationKind::Svid, "xyz").is_err());
        assert!(normalize_target(RevocationKind::Node, "").is_err());
        assert!(normalize_target(RevocationKind::Node, "a\nb").is_err());
    }
}

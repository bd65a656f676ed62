//! The EAT Attestation Result (EAR) claim set (draft-ietf-rats-ear) and the AR4SI trust vector
//! (draft-ietf-rats-ar4si).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The EAR profile Vouch emits (the profile defined by the EAR draft).
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The `eat_nonce` of a result appraised against the Vouch nonce `nonce`: base64url of
/// SHA-256 of the nonce's text. EAT (RFC 9711 §4.1) bounds a nonce to 8–64 bytes and a Vouch
/// nonce is longer (time, 32 random bytes, audience, 32-byte MAC), so the result carries its
/// 32-byte digest; found when Veraison's `ear` crate refused Vouch results
/// (vouch-server `tests/veraison_ear.rs`). A relying party that gave the nonce compares with
/// this (`vouch_rp::Requirements::nonce` does).
pub fn eat_nonce(nonce: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(nonce.as_bytes()))
}

/// The submodule name Vouch uses for the attested workload.
pub const SUBMOD_NAME: &str = "workload";

/// Appraisal status of one submodule (`ear.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArStatus {
    /// No claim could be made.
    None,
    /// Trustworthy.
    Affirming,
    /// Trustworthy with concerns.
    Warning,
    /// Not trustworthy.
    Contraindicated,
}

impl ArStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Affirming => "affirming",
            Self::Warning => "warning",
            Self::Contraindicated => "contraindicated",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::Affirming,
            Self::Warning,
            Self::Contraindicated,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for ArStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tier of a trustworthiness claim value (AR4SI §2.3).
pub type TrustTier = ArStatus;

/// The eight AR4SI trustworthiness claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustClaim {
    /// `instance-identity`
    InstanceIdentity,
    /// `configuration`
    Configuration,
    /// `executables`
    Executables,
    /// `file-system`
    FileSystem,
    /// `hardware`
    Hardware,
    /// `runtime-opaque`
    RuntimeOpaque,
    /// `storage-opaque`
    StorageOpaque,
    /// `sourced-data`
    SourcedData,
}

impl TrustClaim {
    /// All claims in AR4SI order.
    pub const ALL: [TrustClaim; 8] = [
        Self::InstanceIdentity,
        Self::Configuration,
        Self::Executables,
        Self::FileSystem,
        Self::Hardware,
        Self::RuntimeOpaque,
        Self::StorageOpaque,
        Self::SourcedData,
    ];

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstanceIdentity => "instance-identity",
            Self::Configuration => "configuration",
            Self::Executables => "executables",
            Self::FileSystem => "file-system",
            Self::Hardware => "hardware",
            Self::RuntimeOpaque => "runtime-opaque",
            Self::StorageOpaque => "storage-opaque",
            Self::SourcedData => "sourced-data",
        }
    }

    /// Parse the JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Map a claim value to its tier, exactly as AR4SI (draft-ietf-rats-ar4si §2.3.1) divides the
/// signed byte: -1..=1 none (no claim), 2..=31 and -32..=-2 affirming, 32..=95 and -96..=-33
/// warning, 96..=127 and -128..=-97 contraindicated. The negative ranges are not mirror
/// images of the positive ones (-32 is affirming while 32 is a warning; -96 is a warning while
/// 96 is contraindicated).
pub fn tier_of(value: i8) -> TrustTier {
    match value {
        -1..=1 => ArStatus::None,
        2..=31 | -32..=-2 => ArStatus::Affirming,
        32..=95 | -96..=-33 => ArStatus::Warning,
        96..=127 | -128..=-97 => ArStatus::Contraindicated,
    }
}

/// An AR4SI trustworthiness vector: claims that were not set are absent (no claim made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustVector(pub BTreeMap<String, i8>);

impl TrustVector {
    /// Set one claim.
    pub fn set(&mut self, claim: TrustClaim, value: i8) {
        self.0.insert(claim.as_str().to_string(), value);
    }

    /// Get one claim's value (0, "no claim", when unset).
    pub fn get(&self, claim: TrustClaim) -> i8 {
        self.0.get(claim.as_str()).copied().unwrap_or(0)
    }

    /// The tier of one claim.
    pub fn tier(&self, claim: TrustClaim) -> TrustTier {
        tier_of(self.get(claim))
    }

    /// The worst tier over all set claims (`none` when nothing is set): the submodule status
    /// EAR derives from its vector.
    pub fn overall(&self) -> ArStatus {
        let mut worst = ArStatus::None;
        for v in self.0.values() {
            let t = tier_of(*v);
            if t > worst {
                worst = t;
            }
        }
        worst
    }
}

/// `ear.verifier-id`: which verifier build produced the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierId {
    /// Build identifier, e.g. `vouch 0.1.0`.
    pub build: String,
    /// Who develops the verifier.
    pub developer: String,
}

/// One appraised submodule of an EAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submod {
    /// `ear.status`
    #[serde(rename = "ear.status")]
    pub status: ArStatus,
    /// `ear.trustworthiness-vector`
    #[serde(
        rename = "ear.trustworthiness-vector",
        default,
        skip_serializing_if = "is_empty_vector"
    )]
    pub trust_vector: TrustVector,
    /// `ear.appraisal-policy-id`
    #[serde(
        rename = "ear.appraisal-policy-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_id: Option<String>,
    /// Extension claims (`ear.veraison.*`, `vouch.*`, …), kept as JSON.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

fn is_empty_vector(v: &TrustVector) -> bool {
    v.0.is_empty()
}

/// An EAT Attestation Result claim set, JSON serialisation (draft-ietf-rats-ear §3).
///
/// Times are whole Unix seconds. Other implementations (Veraison) emit `iat` as a float, which
/// is accepted on input (truncated to whole seconds); Vouch always emits integers, as JWT
/// libraries expect for `exp` and `nbf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ear {
    /// `eat_profile`
    pub eat_profile: String,
    /// `iat`
    #[serde(deserialize_with = "numeric_date")]
    pub iat: u64,
    /// `exp` (JWT expiry); absent in results that do not expire.
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<u64>,
    /// `nbf` (JWT not-before).
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<u64>,
    /// `jti`: unique result id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `aud`: the relying party audience, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `sub`: the attested workload (`node-id/workload-name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// `ear.verifier-id`
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// `eat_nonce`: the digest ([`eat_nonce`]) of the verifier nonce the evidence answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eat_nonce: Option<String>,
    /// `ear.raw-evidence`
    #[serde(
        rename = "ear.raw-evidence",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub raw_evidence: Option<String>,
    /// `submods`: one entry per appraised attester.
    pub submods: BTreeMap<String, Submod>,
    /// `vouch.policy-version`: version of the appraisal policy that decided.
    #[serde(
        rename = "vouch.policy-version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_version: Option<u32>,
    /// `vouch.tenant`: the tenant of the verifier cluster whose policy, reference values and
    /// key made this result (a relying party serving one tenant checks it).
    #[serde(
        rename = "vouch.tenant",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tenant: Option<String>,
}

/// A JWT NumericDate: a non-negative JSON number, possibly with a fraction.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = f64::deserialize(d)?;
    if !v.is_finite() || !(0.0..=1e15).contains(&v) {
        return Err(serde::de::Error::custom("NumericDate out of range"));
    }
    Ok(v as u64)
}

fn opt_numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    numeric_date(d).map(Some)
}

impl Ear {
    /// The worst status over all submodules (`none` when there are none).
    pub fn overall_status(&self) -> ArStatus {
        self.submods
            .values()
            .map(|s| s.status)
            .max()
            .unwrap_or(ArStatus::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eat_nonce_is_within_eat_bounds() {
        use base64::Engine as _;
        // A Vouch nonce is longer than the 64 bytes EAT allows; its digest is 32 bytes.
        let key = crate::NonceKey::from_slice(&[7u8; 32]).unwrap();
        let nonce = crate::Nonce::issue(&key, 1_700_000_000, [9u8; 32], "vouch.local");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&nonce)
            .unwrap();
        assert!(raw.len() > 64);
        let e = eat_nonce(&nonce);
        let d = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&e)
            .unwrap();
        assert_eq!(d.len(), 32);
        assert_ne!(eat_nonce(&format!("{nonce}x")), e);
    }

    /// Issue 12: the tiers were taken from the absolute value, so -32 (affirming in AR4SI) was
    /// a warning and -96 (a warning) was contraindicated. Every boundary of every range.
    #[test]
    fn tiers_follow_ar4si_ranges_at_every_boundary() {
        use ArStatus::{Affirming, Contraindicated, None, Warning};
        let boundaries = [
            (-128, Contraindicated),
            (-97, Contraindicated),
            (-96, Warning),
            (-33, Warning),
            (-32, Affirming),
            (-2, Affirming),
            (-1, None),
            (0, None),
            (1, None),
            (2, Affirming),
            (31, Affirming),
            (32, Warning),
            (95, Warning),
            (96, Contraindicated),
            (127, Contraindicated),
        ];
        for (value, tier) in boundaries {
            assert_eq!(tier_of(value), tier, "{value}");
        }
    }

    /// The overall status of a vector follows the exact tiers: -32 alone is affirming, -96 a
    /// warning, -97 contraindicated.
    #[test]
    fn overall_uses_the_negative_ranges_as_ar4si_writes_them() {
        let mut v = TrustVector::default();
        v.set(TrustClaim::Hardware, -32);
        assert_eq!(v.overall(), ArStatus::Affirming);
        v.set(TrustClaim::Configuration, -96);
        assert_eq!(v.overall(), ArStatus::Warning);
        v.set(TrustClaim::Executables, -97);
        assert_eq!(v.overall(), ArStatus::Contraindicated);
    }

    #[test]
    fn overall_is_worst_tier() {
        let mut v = TrustVector::default();
        v.set(TrustClaim::Executables, 2);
        v.set(TrustClaim::Hardware, 0);
        assert_eq!(v.overall(), ArStatus::Affirming);
        v.set(TrustClaim::Configuration, 96);
        assert_eq!(v.overall(), ArStatus::Contraindicated);
    }
}

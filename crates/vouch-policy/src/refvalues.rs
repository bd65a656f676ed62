use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One reference value: an expected (or forbidden, or minimum) value for a key of a kind.
///
/// Kinds used by the default policy: `executable` (workload name → allowed sha256),
/// `file` (path → allowed sha256), `min_os_version` (os id → minimum VERSION_ID),
/// `min_package` (package → minimum version), `forbidden_process` (name → reason),
/// `forbidden_port` (`tcp/23` → reason), `required_port` (`tcp/443` → reason),
/// `required_signer` (workload name or file path → signer name), `signer` (name → base64url
/// Ed25519 public key), `require_hardware` (`*` → `true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceValue {
    /// Kind, e.g. `executable`.
    pub kind: String,
    /// Key within the kind, e.g. a workload name or a path.
    pub key: String,
    /// The value.
    pub value: String,
}

/// All reference values, as handed to the policy in `data.reference`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    /// A revision that changes whenever the set changes (cache key).
    pub revision: u64,
    /// The values.
    pub values: Vec<ReferenceValue>,
}

impl ReferenceValues {
    /// `{"reference": {KIND: {KEY: [VALUE, …]}}}`
    pub fn to_data(&self) -> serde_json::Value {
        let mut tree: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for v in &self.values {
            tree.entry(&v.kind)
                .or_default()
                .entry(&v.key)
                .or_default()
                .push(&v.value);
        }
        serde_json::json!({ "reference": tree })
    }
}

//! A secret's release policy: Rego in `package vouch.secret`, deciding `allow` for one
//! attested workload asking for the secret.
//!
//! The input is `{"secret": {"name", "version"}, "node_id", "workload": {"id", "name"},
//! "selectors": [...], "claims": {...}}`: the workload's selectors (the agent's observation of
//! the caller, `unix:`/`container:`/`k8s:`, and the verifier's own, `vouch:node:…`,
//! `tpm:ek_sha256:…`, …) and the claims of the fresh evidence that asked. Anything but
//! `allow == true` (undefined, false, an error) refuses.

use crate::PolicyError;

/// The package a secret's policy must be in.
pub const SECRET_POLICY_PACKAGE: &str = "vouch.secret";

/// A compiled release policy.
pub struct SecretPolicy {
    name: String,
    inner: regorus::CompiledPolicy,
}

impl std::fmt::Debug for SecretPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretPolicy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretPolicy {
    /// Parse and compile the release policy of secret `name`.
    pub fn compile(name: &str, rego: &str) -> Result<Self, PolicyError> {
        let err = |message: String| PolicyError::Compile {
            id: format!("secret:{name}"),
            version: 0,
            message,
        };
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        let package = engine
            .add_policy(format!("secret-{name}.rego"), rego.to_string())
            .map_err(|e| err(e.to_string()))?;
        if package != format!("data.{SECRET_POLICY_PACKAGE}") {
            return Err(err(format!(
                "a secret's policy must be in package {SECRET_POLICY_PACKAGE}, not {}",
                package.trim_start_matches("data.")
            )));
        }
        let inner = engine
            .compile_with_entrypoint(&"data.vouch.secret.allow".into())
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            name: name.to_string(),
            inner,
        })
    }

    /// Whether the policy allows the release for `input`: only `allow == true` does.
    pub fn allows(&self, input: &serde_json::Value) -> Result<bool, PolicyError> {
        let out = self
            .inner
            .eval_with_input(regorus::Value::from(input.clone()))
            .map_err(|e| PolicyError::Eval {
                id: format!("secret:{}", self.name),
                version: 0,
                message: e.to_string(),
            })?;
        Ok(out == regorus::Value::from(true))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const POLICY: &str = r#"package vouch.secret
default allow := false
allow if {
    "vouch:workload:db" in input.selectors
    input.claims.os.id == "debian"
}
"#;

    #[test]
    fn allows_only_what_the_policy_says() {
        let p = SecretPolicy::compile("db-password", POLICY).unwrap();
        let ok = serde_json::json!({"selectors": ["vouch:workload:db"], "claims": {"os": {"id": "debian"}}});
        assert!(p.allows(&ok).unwrap());
        let other = serde_json::json!({"selectors": ["vouch:workload:web"], "claims": {"os": {"id": "debian"}}});
        assert!(!p.allows(&other).unwrap());
        assert!(!p.allows(&serde_json::json!({})).unwrap());
        // A non-boolean allow is no allow.
        let odd = SecretPolicy::compile("x", "package vouch.secret\nallow := \"yes\"\n").unwrap();
        assert!(!odd.allows(&ok).unwrap());
    }

    #[test]
    fn another_package_or_bad_rego_is_refused() {
        assert!(SecretPolicy::compile("x", "package vouch.appraisal\nallow := true\n").is_err());
        assert!(SecretPolicy::compile("x", "package vouch.secret\nallow := {\n").is_err());
    }
}

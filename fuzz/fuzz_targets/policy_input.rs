#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vouch_policy::{CompiledPolicy, DEFAULT_POLICY, PolicySource, ReferenceValue, ReferenceValues};

// Claims reach the policy engine from evidence: the default policy must decide or return an
// error on any JSON, never panic.
fn policy() -> &'static CompiledPolicy {
    static P: OnceLock<CompiledPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let rv = |k: &str, key: &str, v: &str| ReferenceValue {
            kind: k.into(),
            key: key.into(),
            value: v.into(),
        };
        let refs = ReferenceValues {
            revision: 1,
            values: vec![
                rv("min_os_version", "debian", "12"),
                rv("min_package", "openssl", "3.0"),
                rv("forbidden_process", "telnetd", "x"),
                rv("required_port", "app", "tcp/80"),
                rv("executable", "app", "00"),
                rv("file", "/etc/x", "00"),
                rv("required_signer", "app", "vendor"),
            ],
        };
        let src = PolicySource {
            id: "default".into(),
            version: 1,
            rego: DEFAULT_POLICY.into(),
        };
        CompiledPolicy::compile(&src, &refs).unwrap_or_else(|e| panic!("{e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 * 1024 {
        return;
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = policy().appraise(&v);
    }
});

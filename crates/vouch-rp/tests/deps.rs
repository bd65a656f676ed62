//! vouch-rp stays a relying party's library: its normal dependency tree (default features, and
//! every feature) holds none of the verifier's issuing, key-store, database or server crates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Crates a relying party must never build: PKCS#11, certificate issuing, the store and its
/// databases, the verifier and agent, TPM and TEE evidence stacks, the policy engine.
const FORBIDDEN: &[&str] = &[
    "cryptoki",
    "cryptoki-sys",
    "rcgen",
    "sqlx",
    "sqlx-core",
    "libsqlite3-sys",
    "axum-server",
    "vouch-identity",
    "vouch-store",
    "vouch-server",
    "vouch-agent",
    "vouch-verifier",
    "vouch-policy",
    "vouch-evidence",
    "vouch-tpm",
    "vouch-tee",
    "vouch-nodeattest",
    "tss-esapi",
    "dcap-qvl",
    "regorus",
];

/// The crate names (and, with `-e features`, the enabled features) in vouch-rp's normal tree.
fn tree(extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "vouch-rp", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p} {f}"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn names(tree: &str) -> std::collections::BTreeSet<&str> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn default_features_pull_no_issuing_store_or_server_crate() {
    let t = tree(&[]);
    let n = names(&t);
    assert!(n.contains("vouch-spiffe") && n.contains("rustls"), "{t}");
    let found: Vec<_> = FORBIDDEN.iter().filter(|f| n.contains(**f)).collect();
    assert!(
        found.is_empty(),
        "forbidden crates in vouch-rp: {found:?}\n{t}"
    );
    // No async runtime or HTTP stack either: verifying a result is offline.
    for c in ["tokio", "reqwest", "tonic", "hyper", "axum"] {
        assert!(!n.contains(c), "{c} in vouch-rp's default tree\n{t}");
    }
}

#[test]
fn every_feature_pulls_no_issuing_store_or_server_crate_nor_a_grpc_server() {
    let t = tree(&["--all-features"]);
    let n = names(&t);
    // The features are really on (the test would pass vacuously otherwise).
    for c in ["tokio", "reqwest", "tonic", "axum", "chitchat"] {
        assert!(n.contains(c), "{c} missing with --all-features\n{t}");
    }
    let found: Vec<_> = FORBIDDEN.iter().filter(|f| n.contains(**f)).collect();
    assert!(
        found.is_empty(),
        "forbidden crates in vouch-rp: {found:?}\n{t}"
    );
    // The Workload API client only: tonic without its server side.
    let tonic = t.lines().find(|l| l.starts_with("tonic v")).unwrap();
    assert!(!tonic.contains("server"), "{tonic}");
}

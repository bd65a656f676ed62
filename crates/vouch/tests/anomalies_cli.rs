//! `vouch anomalies` (issue 16 item 5) against a running verifier over HTTPS on loopback: it
//! lists the stored flags, filtered, as text or JSON, with the read token; without a token,
//! or with a wrong one, it is refused. (The detector that raises the flags is tested in
//! vouch-server.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;

use vouch_server::{ServerConfig, start_with_store};
use vouch_store::{AnomalyRecord, SqliteStore, Store};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .env_remove("VOUCH_SERVER")
        .env_remove("VOUCH_TOKEN")
        .env_remove("VOUCH_TOKEN_FILE")
        .env_remove("VOUCH_CONTEXT")
        .env("VOUCH_CONTEXT_FILE", "/nonexistent/vouch-contexts.toml")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn flag(id: &str, kind: &str, node: &str, reason: &str) -> AnomalyRecord {
    AnomalyRecord {
        id: id.into(),
        kind: kind.into(),
        group: "web".into(),
        node_id: node.into(),
        workload_id: format!("{node}/web"),
        reason: reason.into(),
        detail: serde_json::json!({}),
        first_seen: vouch_server::unix_now(),
        last_seen: vouch_server::unix_now(),
        count: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouch_anomalies_lists_the_flags_with_the_read_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg.clone(), store.clone()).await.unwrap();
    store
        .record_anomalies(
            &[
                flag(
                    "a1",
                    "new_measurement",
                    "n1",
                    "sha256:ab… of file /etc/x never seen before in group web (3 nodes)",
                ),
                flag(
                    "a2",
                    "tpm_counter",
                    "n2",
                    "resetCount went down from 7 to 2 on node n2",
                ),
            ],
            &[],
        )
        .await
        .unwrap();
    let base = server.base_url.clone();
    let ca = server.ca_cert.clone().unwrap();
    let ca = ca.to_str().unwrap().to_string();
    let token = cfg.data_dir.join("keys/read.token");
    let token = token.to_str().unwrap().to_string();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["anomalies", "--server", &base, "--ca-cert", &ca]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        vouch(&refs)
    };

    let (code, out, err) = tokio::task::block_in_place(|| run(args(&["--token-file", &token])));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("new_measurement") && out.contains("never seen before in group web"),
        "{out}"
    );
    assert!(out.contains("resetCount went down from 7 to 2"), "{out}");

    let (code, out, err) = tokio::task::block_in_place(|| {
        run([
            vec!["--json".to_string()],
            args(&["--token-file", &token, "--kind", "tpm_counter"]),
        ]
        .concat())
    });
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["node_id"], "n2");

    // No token, a wrong token: refused.
    let (code, _, err) = tokio::task::block_in_place(|| run(args(&[])));
    assert_ne!(code, 0);
    assert!(err.contains("no token"), "{err}");
    let (code, _, err) =
        tokio::task::block_in_place(|| run(args(&["--token", "not-the-read-token"])));
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    server.shutdown().await;
}

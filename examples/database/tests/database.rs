//! The seed use case: an application proves itself before it may reach the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_agent::{Agent, AgentConfig};
use vouch_example_database::{Db, JwksSource, router};
use vouch_rp::Requirements;
use vouch_server::{ServerConfig, create_join_token, start_with_store};
use vouch_store::{SqliteStore, Store};

#[tokio::test]
async fn only_an_affirming_caller_reaches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg, store.clone()).await.unwrap();

    let exe = dir.path().join("app");
    std::fs::write(&exe, "app v1").unwrap();
    let mut agent = Agent::new(AgentConfig {
        servers: vec![server.base_url.clone()],
        ca_cert: server.ca_cert.clone(),
        data_dir: dir.path().join("agent"),
        join_token: Some(create_join_token(store.as_ref(), 60, None).await.unwrap()),
        workload_name: "app".into(),
        exe: Some(exe.clone()),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let sha = vouch_evidence::sha256_file(&exe).unwrap();
    store
        .add_reference_value(
            &vouch_policy::ReferenceValue {
                kind: "executable".into(),
                key: "app".into(),
                value: sha,
            },
            0,
        )
        .await
        .unwrap();

    let client = agent.client().clone();
    let fetch: JwksSource = Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { Ok(c.jwks().await?) })
    });
    let db = Db::new(fetch, Requirements::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(db)).await });
    let http = reqwest::Client::new();
    let ask = |token: Option<String>| {
        let http = http.clone();
        async move {
            let mut r = http
                .post(format!("http://{addr}/query"))
                .json(&serde_json::json!({"table": "customers"}));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    assert_eq!(ask(None).await.0, 401);
    let good = agent.attest_once().await.unwrap();
    let (s, body) = ask(Some(good.result.clone())).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Grace"));

    // A forged result (one flipped byte in the signature) is refused.
    let mut forged = good.result.clone().into_bytes();
    let n = forged.len();
    forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
    assert_eq!(ask(Some(String::from_utf8(forged).unwrap())).await.0, 403);

    // The application is swapped: its next result is contraindicated and refused.
    std::fs::write(&exe, "app v1 with a backdoor").unwrap();
    let bad = agent.attest_once().await.unwrap();
    let (s, body) = ask(Some(bad.result)).await;
    assert_eq!(s, 403);
    assert!(body.contains("contraindicated"), "{body}");
    server.shutdown().await;
}

//! The seed use case: an application proves itself before it may reach the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use vouch_agent::{Agent, AgentConfig};
use vouch_example_database::router;
use vouch_rp::{JwksSource, Requirements, X509Source};
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
        // The database accepts only results requested for it.
        result_audience: Some("database".into()),
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

    let keys = JwksSource::builder(format!("{}/.well-known/jwks.json", server.base_url))
        .ca_pem(&std::fs::read(server.ca_cert.as_ref().unwrap()).unwrap())
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(keys, Requirements::for_audience("database"));
    tokio::spawn(async move { axum::serve(listener, app).await });
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

/// The seed use case end to end with identities from the Workload API: a Python workload using
/// the PyPI `spiffe` client fetches its X.509- and JWT-SVIDs from the agent's socket, validates
/// them, and reaches the database over mTLS (the database gets its own SVID from the same API);
/// when the node fails attestation, the Python workload gets no identity any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_spiffe_workload_reaches_the_database_over_mtls_until_its_node_fails() {
    use std::os::unix::fs::MetadataExt as _;
    use vouch_identity::{Entry, Selector, SpiffeId};
    let python = std::env::var_os("VOUCH_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python3")
        });
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps.sh --test (it installs the PyPI spiffe client)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg, store.clone()).await.unwrap();
    let exe = dir.path().join("node-agent");
    std::fs::write(&exe, "node agent v1").unwrap();
    let sock = dir.path().join("agent/api.sock");
    let mut agent = Agent::new(AgentConfig {
        servers: vec![server.base_url.clone()],
        ca_cert: server.ca_cert.clone(),
        data_dir: dir.path().join("agent"),
        join_token: Some(create_join_token(store.as_ref(), 60, None).await.unwrap()),
        workload_name: "node".into(),
        exe: Some(exe.clone()),
        workload_api_socket: Some(sock.clone()),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let digest = |p: &std::path::Path| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    store
        .add_reference_value(
            &vouch_policy::ReferenceValue {
                kind: "executable".into(),
                key: "node".into(),
                value: digest(&exe),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );

    // Entries: the Python interpreter (by its real executable's digest) is /app, this test
    // binary is /database; both only while the node attests affirming.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let real_python = std::fs::canonicalize(&python).unwrap();
    let now = vouch_server::unix_now();
    // The database's SVIDs live 4 s: it must keep serving on rotated ones.
    for (path, exe_digest, ttl) in [
        ("/app", digest(&real_python), 600),
        (
            "/database",
            digest(std::path::Path::new("/proc/self/exe")),
            4,
        ),
    ] {
        let sel = [
            "vouch:workload:node".to_string(),
            "vouch:status:affirming".to_string(),
            format!("unix:uid:{uid}"),
            format!("unix:sha256:{exe_digest}"),
        ];
        let e = Entry::new(
            format!("e{path}").replace('/', "-"),
            &SpiffeId::parse(&format!("spiffe://vouch.local{path}")).unwrap(),
            sel.iter().map(|s| Selector::parse(s).unwrap()).collect(),
            ttl,
            now,
        )
        .unwrap();
        store.add_entry(&e).await.unwrap();
    }
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    // The database takes its SVID and bundle from the Workload API too, and keeps them
    // current; its keys come from the verifier over HTTPS.
    let source = X509Source::connect(&sock).await.unwrap();
    assert_eq!(
        source.svid().unwrap().spiffe_id().to_string(),
        "spiffe://vouch.local/database"
    );
    let first_not_after = source.svid().unwrap().not_after();
    let keys = JwksSource::builder(format!("{}/.well-known/jwks.json", server.base_url))
        .ca_pem(&std::fs::read(server.ca_cert.as_ref().unwrap()).unwrap())
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = router(keys, Requirements::for_audience("database"));
    let db_source = source.clone();
    tokio::spawn(async move {
        vouch_example_database::serve_mtls(
            listener,
            app,
            &db_source,
            vec![vouch_rp::SpiffeId::parse("spiffe://vouch.local/app").unwrap()],
        )
        .await
    });

    let run_python = || {
        let (python, sock, out) = (python.clone(), sock.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let o = std::process::Command::new("timeout")
                .arg("60")
                .arg(&python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/spiffe_client.py"
                ))
                .arg(&out)
                .arg(port.to_string())
                .env(
                    "SPIFFE_ENDPOINT_SOCKET",
                    format!("unix://{}", sock.display()),
                )
                .output()
                .unwrap();
            (
                o.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        })
    };
    let (status, out) = run_python().await.unwrap();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("X509 spiffe://vouch.local/app"), "{out}");
    assert!(out.contains("CHAIN ok"), "{out}");
    assert!(
        out.contains("JWT spiffe://vouch.local/app agent-validated=spiffe://vouch.local/app"),
        "{out}"
    );
    // The handshake completed with the Python workload's SVID; the database then asks for the
    // attestation result, which this request did not carry.
    assert!(out.contains("MTLS HTTP/1.1 401"), "{out}");

    // OpenSSL's s_client (a client no one here wrote): with the Python workload's SVID the
    // handshake completes; with the database's own SVID (same CA, another SPIFFE ID) or with
    // no certificate it is refused.
    // By now the database's first SVID has expired: it serves a rotated one, which OpenSSL
    // checks for validity too.
    while vouch_server::unix_now() <= first_not_after + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(source.svid().unwrap().not_after() > first_not_after);
    let d = dir.path().to_path_buf();
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let mine = c
        .fetch_x509svid(vouch_agent::request(vouch_agent::proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .svids
        .remove(0);
    assert_eq!(mine.spiffe_id, "spiffe://vouch.local/database");
    std::fs::write(
        d.join("db.pem"),
        vouch_identity::cert_to_pem(&mine.x509_svid),
    )
    .unwrap();
    std::fs::write(d.join("db.key.der"), &mine.x509_svid_key).unwrap();
    let st = std::process::Command::new("openssl")
        .args(["pkey", "-inform", "DER", "-in"])
        .arg(d.join("db.key.der"))
        .arg("-out")
        .arg(d.join("db.key"))
        .status()
        .unwrap();
    assert!(st.success());
    let ok = s_client(&d, port, Some(("py.pem", "py.key"))).await;
    assert!(ok.contains("HTTP/1.1 401"), "{ok}");
    let other = s_client(&d, port, Some(("db.pem", "db.key"))).await;
    assert!(!other.contains("HTTP/1.1"), "{other}");
    let anonymous = s_client(&d, port, None).await;
    assert!(!anonymous.contains("HTTP/1.1"), "{anonymous}");

    // The node fails attestation: the Python workload gets no identity any more.
    std::fs::write(&exe, "node agent, tampered").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Contraindicated
    );
    let (status, out) = run_python().await.unwrap();
    assert_eq!(status, Some(3), "{out}");
    assert!(out.contains("X509 REFUSED"), "{out}");

    api.stop().await.unwrap();
}

/// One POST /query with OpenSSL's s_client to 127.0.0.1:`port`, trusting `dir`/py-bundle.pem,
/// presenting `cert` (file names in `dir`); its output.
async fn s_client(dir: &std::path::Path, port: u16, cert: Option<(&str, &str)>) -> String {
    let request = "POST /query HTTP/1.1\r\nHost: database\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{\"table\":\"customers\"}";
    let d = dir.to_path_buf();
    let cert = cert.map(|(c, k)| (d.join(c), d.join(k)));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut cmd = std::process::Command::new("timeout");
        cmd.args([
            "20",
            "openssl",
            "s_client",
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(d.join("py-bundle.pem"));
        if let Some((c, k)) = &cert {
            cmd.arg("-cert").arg(c).arg("-key").arg(k);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .unwrap()
}

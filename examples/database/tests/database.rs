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

    let client = agent.client().clone();
    let fetch: JwksSource = Arc::new(move || {
        let c = client.clone();
        Box::pin(async move { Ok(c.jwks().await?) })
    });
    let db = Db::new(fetch, Requirements::for_audience("database"))
        .await
        .unwrap();
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

/// The database over mTLS with X.509-SVIDs; OpenSSL's s_client (a client no one here wrote)
/// completes the handshake with an accepted workload's SVID, and is refused without one or with
/// another workload's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_over_mtls_with_svids_and_openssl_s_client() {
    use rcgen::PublicKeyData;
    use vouch_identity::{SpiffeId, SvidCa, TrustDomain};
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let td = TrustDomain::parse("vouch.local").unwrap();
    let ca = SvidCa::generate(&td, 86_400, now).unwrap();
    let svid = |path: &str| {
        let k = rcgen::KeyPair::generate().unwrap();
        let id = SpiffeId::new(&td, path).unwrap();
        let der = ca
            .issue(&id, &k.subject_public_key_info(), 3600, now)
            .unwrap();
        (der, k)
    };
    let (server_der, server_key) = svid("/database");
    let app_id = SpiffeId::new(&td, "/app").unwrap();

    let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let fetch: JwksSource = Arc::new(move || Box::pin(async move { Ok(jwks.to_string()) }));
    let db = Db::new(fetch, Requirements::for_audience("database"))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bundle = vec![ca.cert_der().to_vec()];
    let td2 = td.clone();
    tokio::spawn(async move {
        vouch_example_database::serve_mtls(
            listener,
            db,
            &td2,
            &bundle,
            vec![app_id],
            server_der,
            server_key.serialize_der(),
        )
        .await
    });

    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    for (name, path) in [("app", "/app"), ("intruder", "/intruder")] {
        let (der, key) = svid(path);
        std::fs::write(
            dir.path().join(format!("{name}.pem")),
            vouch_identity::cert_to_pem(&der),
        )
        .unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    let request = "POST /query HTTP/1.1\r\nHost: database\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{\"table\":\"customers\"}";
    let s_client = |who: Option<&str>| {
        let d = dir.path().to_path_buf();
        let who = who.map(str::to_string);
        let request = request.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut cmd = std::process::Command::new("timeout");
            cmd.args([
                "20",
                "openssl",
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-connect",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(d.join("ca.pem"));
            if let Some(w) = &who {
                cmd.arg("-cert").arg(d.join(format!("{w}.pem")));
                cmd.arg("-key").arg(d.join(format!("{w}.key")));
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
    };
    // Wait for the listener to serve.
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ok = s_client(Some("app")).await.unwrap();
    // The handshake completed and the request reached the service, which then asks for the
    // attestation result (none was sent).
    assert!(ok.contains("HTTP/1.1 401"), "{ok}");
    let intruder = s_client(Some("intruder")).await.unwrap();
    assert!(!intruder.contains("HTTP/1.1"), "{intruder}");
    let anonymous = s_client(None).await.unwrap();
    assert!(!anonymous.contains("HTTP/1.1"), "{anonymous}");
}

/// The seed use case end to end with identities from the Workload API: a Python workload using
/// the PyPI `spiffe` client fetches its X.509- and JWT-SVIDs from the agent's socket, validates
/// them, and reaches the database over mTLS (the database gets its own SVID from the same API);
/// when the node fails attestation, the Python workload gets no identity any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_spiffe_workload_reaches_the_database_over_mtls_until_its_node_fails() {
    use std::os::unix::fs::MetadataExt as _;
    use vouch_identity::{Entry, Selector, SpiffeId, TrustDomain};
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
    for (path, exe_digest) in [
        ("/app", digest(&real_python)),
        ("/database", digest(std::path::Path::new("/proc/self/exe"))),
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
            600,
            now,
        )
        .unwrap();
        store.add_entry(&e).await.unwrap();
    }
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();

    // The database takes its SVID and bundle from the Workload API too.
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let mut s = c
        .fetch_x509svid(vouch_agent::request(vouch_agent::proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mine = s.message().await.unwrap().unwrap().svids.remove(0);
    assert_eq!(mine.spiffe_id, "spiffe://vouch.local/database");
    let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let fetch: JwksSource = Arc::new(move || Box::pin(async move { Ok(jwks.to_string()) }));
    let db = Db::new(fetch, Requirements::for_audience("database"))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let td = TrustDomain::parse("vouch.local").unwrap();
    tokio::spawn(async move {
        vouch_example_database::serve_mtls(
            listener,
            db,
            &td,
            std::slice::from_ref(&mine.bundle),
            vec![SpiffeId::parse("spiffe://vouch.local/app").unwrap()],
            mine.x509_svid.clone(),
            mine.x509_svid_key.clone(),
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

//! Three `vouch server` processes on one PostgreSQL: one is SIGKILLed under load from four
//! agents spread over the replicas; the agents carry on through the other two, and every
//! acknowledged attestation is in the shared store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_agent::{Agent, AgentConfig};
use vouch_store::{PgStore, Store};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use vouch_testkit::free_port;

/// `vouch server` on `port`, configured through the environment as an operator would.
fn replica(dir: &Path, port: u16, url: &str, nonce_key: &Path, tls: Option<&Path>) -> Replica {
    let mut cmd = Command::new(VOUCH);
    cmd.args([
        "server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir)
    .env("VOUCH_SERVER_DATABASE_URL", url)
    .env("VOUCH_SERVER_NONCE_KEY", nonce_key)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(t) = tls {
        cmd.env("VOUCH_SERVER_TLS_CERT", t.join("server.crt"))
            .env("VOUCH_SERVER_TLS_KEY", t.join("server.key"));
    }
    let r = Replica(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("replica on {port} did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_three_replicas_loses_nothing_acknowledged() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let d = tempfile::tempdir().unwrap();
    let nonce_key = d.path().join("nonce.key");
    std::fs::write(&nonce_key, [0x33; 32]).unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let first = d.path().join("r0");
    let mut replicas = vec![replica(&first, ports[0], &url, &nonce_key, None)];
    for (i, port) in ports.iter().enumerate().skip(1) {
        replicas.push(replica(
            &d.path().join(format!("r{i}")),
            *port,
            &url,
            &nonce_key,
            Some(&first.join("tls")),
        ));
    }
    let ca = first.join("tls/ca.crt");
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{p}"))
        .collect();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());

    let mut agents = Vec::new();
    for i in 0..4 {
        let exe = d.path().join(format!("w{i}"));
        std::fs::write(&exe, "w").unwrap();
        // Each agent starts on a different replica and fails over to the next ones.
        let mut servers = urls.clone();
        servers.rotate_left(i % 3);
        agents.push(
            Agent::new(AgentConfig {
                servers,
                ca_cert: Some(ca.clone()),
                data_dir: d.path().join(format!("agent{i}")),
                join_token: Some(
                    vouch_server::create_join_token(store.as_ref(), 60, None)
                        .await
                        .unwrap(),
                ),
                workload_name: format!("w{i}"),
                exe: Some(exe),
                ..AgentConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let end = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for mut a in agents {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), 0);
            while Instant::now() < end {
                match a.attest_once().await {
                    Ok(r) => ok.push((Instant::now(), r.attestation_id)),
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut victim = replicas.remove(0);
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();
    let killed = Instant::now();
    let (mut acked, mut after) = (Vec::new(), 0);
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        // A request in flight to the killed replica may fail once; the agent then moves on.
        assert!(failed <= 2, "{failed} failed attestations");
        after += ok.iter().filter(|(at, _)| *at > killed).count();
        acked.extend(ok.into_iter().map(|(_, id)| id));
    }
    assert!(
        after >= 4,
        "attestation went on through the survivors ({after})"
    );
    for id in &acked {
        assert!(
            store.attestation(id).await.unwrap().is_some(),
            "acknowledged attestation {id} lost"
        );
    }
    // (A commit the killed replica made but could not acknowledge may add one more.)
    assert!(store.attestation_count().await.unwrap() >= acked.len() as u64);
}

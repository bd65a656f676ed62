//! Logs and health of the real binaries (issue 16 item 4): `--log-format json` on the verifier
//! and the agent, one request id followed from the agent's line to the verifier's access-log
//! line and to what the verifier logged while handling the call; nothing secret in either log;
//! `vouch healthcheck` exits 0 while a verifier or an agent is up and 1 once it is gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .env_remove("VOUCH_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (by its pid) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `vouch <args>` in the background, standard error into `log`.
fn spawn(args: &[&str], log: &Path, env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(VOUCH);
    c.args(args)
        .env_remove("VOUCH_CONFIG")
        .env_remove("VOUCH_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().unwrap())
}

/// Every line of `log`, each of which must be a JSON object.
fn json_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
        })
        .collect()
}

/// `vouch healthcheck <args>` again until it exits `want` (at most 30 s).
fn healthcheck_until(args: &[&str], want: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = vouch(&[&["healthcheck"], args].concat());
        if code == want {
            return format!("{out}{err}");
        }
        assert!(
            Instant::now() < deadline,
            "healthcheck {args:?}: {code}, expected {want}: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn json_logs_carry_one_request_id_from_agent_to_verifier_and_healthcheck_follows_liveness() {
    let d = tempfile::tempdir().unwrap();
    let sdir = d.path().join("server");
    let sdir_s = sdir.to_str().unwrap();
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let server_log = d.path().join("server.log");
    let mut server = spawn(
        &[
            "--log-format",
            "json",
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            sdir_s,
        ],
        &server_log,
        &[],
    );
    let ca = sdir.join("tls/ca.crt");
    let ca_s = ca.to_str().unwrap();
    healthcheck_until(&["--server", &base, "--ca-cert", ca_s], 0);

    // One attestation by the CLI agent, its calls logged (debug) as JSON.
    let (code, token, err) = vouch(&["token", "create", "--data-dir", sdir_s]);
    assert_eq!(code, 0, "{err}");
    let token = token.lines().next().unwrap().trim().to_string();
    let agent_log = d.path().join("agent.log");
    let adir = d.path().join("agent");
    let out = Command::new(VOUCH)
        .args([
            "--log-format",
            "json",
            "attest",
            "--server",
            &base,
            "--ca-cert",
            ca_s,
            "--agent-dir",
            adir.to_str().unwrap(),
            "--join-token",
            &token,
            "--workload",
            "cli",
            "--exe",
            "/bin/sh",
        ])
        .env_remove("VOUCH_CONFIG")
        .env("VOUCH_LOG", "info,vouch_agent=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .status()
        .unwrap();
    // Not affirming (/bin/sh is no registered reference value), but a result.
    assert!(out.code() == Some(0) || out.code() == Some(1), "{out:?}");

    let agent = json_lines(&agent_log);
    let call = agent
        .iter()
        .find(|l| l["fields"]["path"] == "/v1/attest" && l["fields"]["status"] == 200)
        .unwrap_or_else(|| panic!("no /v1/attest call in the agent's log: {agent:?}"));
    let id = call["fields"]["request_id"].as_str().unwrap().to_string();
    assert!(
        vouch_core::request_id::is_valid(&id) && id.len() == 32,
        "{id}"
    );

    // The verifier's access line for that call, and its own lines while handling it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let server_lines = loop {
        let lines = json_lines(&server_log);
        if lines
            .iter()
            .any(|l| l["fields"]["request_id"] == id.as_str())
            || Instant::now() > deadline
        {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let access: Vec<_> = server_lines
        .iter()
        .filter(|l| l["target"] == "vouch_server::access")
        .collect();
    let mine: Vec<_> = access
        .iter()
        .filter(|l| l["fields"]["request_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{access:?}");
    let f = &mine[0]["fields"];
    assert_eq!(f["method"], "POST");
    assert_eq!(f["route"], "/v1/attest");
    assert_eq!(f["status"], 200);
    assert!(f["micros"].as_u64().is_some(), "{f}");
    let appraised = server_lines
        .iter()
        .find(|l| l["fields"]["message"] == "appraised")
        .unwrap_or_else(|| panic!("no appraisal logged: {server_lines:?}"));
    assert_eq!(appraised["span"]["request_id"], id.as_str(), "{appraised}");
    // Every agent call has its own id, each in one access line.
    let ids: Vec<&str> = agent
        .iter()
        .filter_map(|l| l["fields"]["request_id"].as_str())
        .collect();
    assert!(ids.len() >= 3, "enroll, challenge, attest: {ids:?}");
    for i in &ids {
        assert_eq!(
            access
                .iter()
                .filter(|l| l["fields"]["request_id"] == *i)
                .count(),
            1,
            "{i}"
        );
    }
    // Routes are templates, and no credential reaches either log.
    let server_text = std::fs::read_to_string(&server_log).unwrap();
    let agent_text = std::fs::read_to_string(&agent_log).unwrap();
    let read_token = std::fs::read_to_string(sdir.join("keys/read.token")).unwrap();
    let admin_token = std::fs::read_to_string(sdir.join("keys/admin.token")).unwrap();
    for secret in [token.as_str(), read_token.trim(), admin_token.trim()] {
        assert!(
            !server_text.contains(secret) && !agent_text.contains(secret),
            "a credential in the logs"
        );
    }

    // An agent with its metrics address: healthy while it runs, not once it is gone.
    let (_, token2, _) = vouch(&["token", "create", "--data-dir", sdir_s]);
    let mport = free_port();
    let maddr = format!("http://127.0.0.1:{mport}");
    let mut agent = spawn(
        &[
            "agent",
            "--server",
            &base,
            "--ca-cert",
            ca_s,
            "--agent-dir",
            d.path().join("agent2").to_str().unwrap(),
            "--join-token",
            token2.lines().next().unwrap().trim(),
            "--workload",
            "looping",
            "--exe",
            "/bin/sh",
            "--interval",
            "1",
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
        ],
        &d.path().join("agent2.log"),
        &[],
    );
    healthcheck_until(&["--agent", &maddr], 0);
    // Its first round counted (it runs once the agent has enrolled).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = reqwest_get(&format!("{maddr}/metrics"));
        if metrics.contains("vouch_agent_attestations_total{outcome=\"warning\"}") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let why = healthcheck_until(&["--agent", &maddr], 1);
    assert!(why.contains("unhealthy"), "{why}");

    // The verifier stopped: unhealthy, saying why.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let why = healthcheck_until(&["--server", &base, "--ca-cert", ca_s], 1);
    assert!(
        why.contains("unhealthy") && why.contains("/readyz"),
        "{why}"
    );
}

/// A plain HTTP GET, blocking (the agent's metrics listener speaks HTTP/1.1 without TLS).
fn reqwest_get(url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

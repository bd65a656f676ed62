//! Zero-touch TPM join through the `vouch` binaries, as an operator deploys it: `vouch server`
//! with `node_attestors = ["tpm"]` and `tpm_ca_dir` in its TOML configuration (no join token
//! accepted at all), and `vouch attest --tpm-tcti …` on a node with an swtpm and no token. The
//! node id the agent records is checked against one computed from the EK certificate read by
//! tpm2-tools and openssl and derived as the verifier documents it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::Digest as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vouch_testkit::Swtpm;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `vouch server --config <dir>/vouch.toml` with `node_attestors`, until its port answers.
fn server(dir: &Path, tpm: &Swtpm, attestors: &str) -> (Server, u16) {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("vouch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ntpm_ca_dir = \"{}\"\nnode_attestors = {attestors}\n",
            dir.join("server").display(),
            tpm.path("ca").display(),
        ),
    )
    .unwrap();
    let child = Command::new(VOUCH)
        .arg("--config")
        .arg(&cfg)
        .arg("server")
        .env_remove("VOUCH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "vouch server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (s, port)
}

/// `vouch attest` with the TPM and no join token; exit code and stderr.
fn attest(dir: &Path, tpm: &Swtpm, port: u16) -> (i32, String) {
    let out = Command::new(VOUCH)
        .args(["attest", "--server", &format!("https://127.0.0.1:{port}")])
        .arg("--ca-cert")
        .arg(dir.join("server/tls/ca.crt"))
        .arg("--agent-dir")
        .arg(dir.join("agent"))
        .args(["--tpm-tcti", &tpm.tcti(), "--tpm-pcrs", "0,1,2,3,4,5,6,7"])
        .arg("--tpm-eventlog")
        .arg(dir.join("no-event-log"))
        .env_remove("VOUCH_CONFIG")
        .env_remove("VOUCH_JOIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The node id of this TPM's RSA EK, from its NV certificate (tpm2_nvread) and the modulus
/// openssl reads from it.
fn expected_node(tpm: &Swtpm) -> String {
    tpm.tool(&["tpm2_nvread", "0x01c00002", "-C", "o", "-o", "ek.der"]);
    let out = Command::new("openssl")
        .args(["x509", "-inform", "der", "-noout", "-modulus", "-in"])
        .arg(tpm.path("ek.der"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let n = hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap();
    let mut h = sha2::Sha256::new();
    h.update(b"rsa\0");
    h.update((n.len() as u32).to_be_bytes());
    h.update(&n);
    h.update(3u32.to_be_bytes());
    h.update([1u8, 0, 1]);
    let ek_key = hex::encode(h.finalize());
    // vouch_nodeattest::node_id_for, written out: a UUID-shaped string of the SHA-256 of
    // "vouch node <method key>".
    let d = hex::encode(sha2::Sha256::digest(format!("vouch node tpm:ek:{ek_key}")));
    format!(
        "{}-{}-{}-{}-{}",
        &d[0..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..32]
    )
}

#[test]
fn vouch_attest_joins_through_the_tpm_where_the_server_accepts_only_tpm() {
    let tpm = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();

    // Zero-touch off (join tokens only): the agent is told what to configure.
    let off = dir.path().join("off");
    let (srv, port) = server(&off, &tpm, "[\"join_token\"]");
    let (code, err) = attest(&off, &tpm, port);
    assert_ne!(code, 0);
    assert!(
        err.contains("node_attestors") && err.contains("join token"),
        "{err}"
    );
    assert!(!off.join("agent/enrollment.json").exists());
    drop(srv);

    // TPM joins only: no token anywhere, the node is the one its EK names.
    let on = dir.path().join("on");
    let (srv, port) = server(&on, &tpm, "[\"tpm\"]");
    let (_code, err) = attest(&on, &tpm, port);
    let enrolled: serde_json::Value = serde_json::from_slice(
        &std::fs::read(on.join("agent/enrollment.json"))
            .unwrap_or_else(|e| panic!("the agent did not join ({e}): {err}")),
    )
    .unwrap();
    assert_eq!(enrolled["node_id"], expected_node(&tpm), "{err}");
    assert!(on.join("agent/tpm-enrollment.json").exists());
    drop(srv);
}

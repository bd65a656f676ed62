//! `vouch secret` end to end with the real binary (issue 17 item 4): a verifier (`vouch
//! server`), the admin verbs through its API (`put`, `list`, `delete`), an agent (`vouch agent`
//! with `--secret-socket`) attesting a workload, and `vouch secret get` asking that agent: the
//! exact bytes come out while the workload is affirming and the policy names it; a policy that
//! names another uid, and a deleted secret, are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::Digest as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use vouch_testkit::free_port;

mod common;
use common::{Child, spawn_server, wait_for};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn secret_put_list_get_through_the_agent_and_delete() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("server");
    let port = free_port();
    let _server = spawn_server(&dir, port);
    let data_dir = dir.to_str().unwrap();

    // The workload and what it must be.
    let exe = d.path().join("db.bin");
    std::fs::write(&exe, "binary of db").unwrap();
    let conf = d.path().join("db.conf");
    std::fs::write(&conf, "setting = 1\n").unwrap();
    for (kind, key, value) in [
        ("executable", "db".to_string(), sha256_file(&exe)),
        (
            "file",
            conf.to_str().unwrap().to_string(),
            sha256_file(&conf),
        ),
    ] {
        let (code, _, err) = vouch(&[
            "refvalue",
            "add",
            kind,
            &key,
            &value,
            "--data-dir",
            data_dir,
        ]);
        assert_eq!(code, 0, "{err}");
    }

    // The secrets: one for this uid, one for another.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let mine = d.path().join("mine.rego");
    std::fs::write(
        &mine,
        format!(
            "package vouch.secret\n\ndefault allow := false\n\nallow if {{\n    \"unix:uid:{uid}\" in input.selectors\n    input.workload.name == \"db\"\n}}\n"
        ),
    )
    .unwrap();
    let theirs = d.path().join("theirs.rego");
    std::fs::write(
        &theirs,
        "package vouch.secret\n\nallow if \"unix:uid:4242424\" in input.selectors\n",
    )
    .unwrap();
    let value = d.path().join("value.bin");
    let secret: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    std::fs::write(&value, &secret).unwrap();
    let v = value.to_str().unwrap();
    let (code, out, err) = vouch(&[
        "secret",
        "put",
        "db-key",
        "--from-file",
        v,
        "--policy",
        mine.to_str().unwrap(),
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("version 1"));
    let (code, _, err) = vouch(&[
        "secret",
        "put",
        "other",
        "--from-file",
        v,
        "--policy",
        theirs.to_str().unwrap(),
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 0, "{err}");
    // A policy in another package is refused before it is sent.
    let (code, _, err) = vouch(&[
        "secret",
        "put",
        "bad",
        "--from-file",
        v,
        "--policy",
        "/dev/null",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = vouch(&["--json", "secret", "list", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["name"], "db-key");
    assert_eq!(list[0]["size"], 512);
    assert!(!String::from_utf8_lossy(&out).contains("value"));

    // The agent, serving its secret socket.
    let (code, out, err) = vouch(&[
        "--json",
        "token",
        "create",
        "--ttl",
        "10m",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let token: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let sock = d.path().join("agent/secrets.sock");
    let _agent = Child(
        Command::new(VOUCH)
            .args([
                "agent",
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--ca-cert",
            ])
            .arg(dir.join("tls/ca.crt"))
            .arg("--agent-dir")
            .arg(d.path().join("agent"))
            .args([
                "--join-token",
                token["token"].as_str().unwrap(),
                "--workload",
                "db",
            ])
            .arg("--exe")
            .arg(&exe)
            .arg("--file")
            .arg(&conf)
            .arg("--secret-socket")
            .arg(&sock)
            .env_remove("VOUCH_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's secret socket", || sock.exists());
    let s = sock.to_str().unwrap();
    let (code, out, err) = vouch(&["secret", "get", "db-key", "--socket", s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, secret);
    let file = d.path().join("got.bin");
    let (code, _, err) = vouch(&[
        "secret",
        "get",
        "db-key",
        "--socket",
        s,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), secret);
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    let (code, out, err) = vouch(&["secret", "get", "other", "--socket", s]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("forbidden"), "{err}");

    let (code, _, err) = vouch(&["secret", "delete", "db-key", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = vouch(&["secret", "get", "db-key", "--socket", s]);
    assert_eq!(code, 2);
    assert!(err.contains("not_found"), "{err}");
}

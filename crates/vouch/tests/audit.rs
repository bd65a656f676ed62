//! `vouch audit export` and `vouch audit verify`, driven as an operator would (issue 16 item 3):
//! admin commands on a running verifier's store are logged; the exported log checks against its
//! signed head and extends an earlier head; one flipped byte, a deleted line and two swapped
//! lines are each refused with a message saying what is wrong; one entry's inclusion proof
//! checks on its own, and not with its entry changed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use vouch_testkit::free_port;

mod common;
use common::spawn_server;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .env("USER", "alice")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_logs_verify_and_tampering_is_named() {
    let d = tempfile::tempdir().unwrap();
    let sdir = d.path().join("server");
    let port = free_port();
    let _server = spawn_server(&sdir, port);
    let base = format!("https://127.0.0.1:{port}");
    let ca = sdir.join("tls/ca.crt");
    let bundle = sdir.join("spiffe/ca.crt");
    let token = sdir.join("keys/read.token");

    // Admin changes through the CLI, by the verifier's API (found by its data directory).
    let rego = d.path().join("p.rego");
    std::fs::write(
        &rego,
        "package vouch.appraisal\nimport rego.v1\ndeny contains \"no\" if false\n",
    )
    .unwrap();
    let dir = s(&sdir);
    for args in [
        vec!["policy", "add", "strict", s(&rego), "--data-dir", dir],
        vec![
            "refvalue",
            "add",
            "min_os_version",
            "debian",
            "12",
            "--data-dir",
            dir,
        ],
        vec!["token", "create", "--data-dir", dir],
    ] {
        let (code, _, err) = vouch(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }

    let export = |out: &Path, head: &Path| {
        vouch(&[
            "audit",
            "export",
            "--server",
            &base,
            "--ca-cert",
            s(&ca),
            "--token-file",
            s(&token),
            "--out",
            s(out),
            "--head-out",
            s(head),
        ])
    };
    let verify = |log: &Path, head: &Path, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            "--log",
            s(log),
            "--head",
            s(head),
            "--trust-bundle",
            s(&bundle),
        ];
        args.extend_from_slice(extra);
        vouch(&args)
    };

    let (log1, head1) = (d.path().join("log1.jsonl"), d.path().join("head1.jws"));
    let (code, _, err) = export(&log1, &head1);
    assert_eq!(code, 0, "{err}");
    let lines1: Vec<String> = std::fs::read_to_string(&log1)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // The default policy at the verifier's first start, then the three changes, each naming
    // the credential that made it (the admin token).
    let kinds: Vec<serde_json::Value> = lines1
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (&kinds[0]["kind"], &kinds[0]["actor"]),
        (&"policy.add".into(), &"verifier".into())
    );
    for (k, subject) in [
        ("policy.add", "strict"),
        ("refvalue.add", "1"),
        ("token.create", ""),
    ] {
        let e = kinds
            .iter()
            .find(|e| e["kind"] == k && e["actor"] == "admin-api")
            .unwrap_or_else(|| panic!("{k}: {lines1:?}"));
        assert_eq!(e["subject"], subject);
    }
    let (code, out, err) = verify(&log1, &head1, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("ok: {} entries", lines1.len())),
        "{out}"
    );

    // More changes; the new log extends the first head.
    let (code, _, err) = vouch(&["refvalue", "add", "file", "/etc/x", "ab", "--data-dir", dir]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = vouch(&["refvalue", "remove", "1", "--data-dir", dir]);
    assert_eq!(code, 0, "{err}");
    let (log2, head2) = (d.path().join("log2.jsonl"), d.path().join("head2.jws"));
    let (code, _, err) = export(&log2, &head2);
    assert_eq!(code, 0, "{err}");
    let lines2: Vec<String> = std::fs::read_to_string(&log2)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines2.len(), lines1.len() + 2);
    assert!(
        lines2
            .last()
            .unwrap()
            .contains("\"kind\":\"refvalue.remove\"")
    );
    let (code, out, err) = verify(&log2, &head2, &["--earlier-head", s(&head1)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!(
        "extends the earlier head of {} entries",
        lines1.len()
    )));

    // Fetched and checked in one step.
    let (code, out, err) = vouch(&[
        "audit",
        "verify",
        "--server",
        &base,
        "--ca-cert",
        s(&ca),
        "--token-file",
        s(&token),
        "--trust-bundle",
        s(&bundle),
        "--earlier-head",
        s(&head1),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("ok: {} entries", lines2.len())),
        "{out}"
    );
    assert!(out.contains("extends the earlier head"), "{out}");

    let tampered = d.path().join("tampered.jsonl");
    let write = |lines: &[String]| std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();

    // One byte flipped inside an entry (still valid JSON: a letter of the actor).
    let mut t = lines2.clone();
    t[1] = t[1].replacen("admin-api", "admin-apj", 1);
    assert_ne!(t[1], lines2[1], "entry 1 names its actor");
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not match the signed head"), "{err}");
    assert!(err.contains("root mismatch"), "{err}");

    // One line deleted.
    let mut t = lines2.clone();
    t.remove(2);
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entry 2 says it is entry 3"), "{err}");

    // The last line deleted: the head covers more than the log has.
    write(&lines2[..lines2.len() - 1]);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entries removed"), "{err}");

    // Two lines swapped.
    let mut t = lines2.clone();
    t.swap(1, 2);
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entry 1 says it is entry 2"), "{err}");

    // A line that is not an entry, an empty line, and one far too long: each named.
    let mut t = lines2.clone();
    t[1] = "{\"seq\":1,".into();
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("entry 1: audit entry is not valid JSON"),
        "{err}"
    );
    let mut t = lines2.clone();
    t[2] = String::new();
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("line 3 is empty"), "{err}");
    let mut t = lines2.clone();
    t[1] = "x".repeat(200_000);
    write(&t);
    let (code, _, err) = verify(&tampered, &head2, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entry 1 is over"), "{err}");

    // A head with its signature changed is refused before the log is read.
    let jws = std::fs::read_to_string(&head2).unwrap();
    let bad_head = d.path().join("bad.jws");
    let mut b = jws.trim().to_string();
    let last = b.pop().unwrap();
    b.push(if last == 'A' { 'B' } else { 'A' });
    std::fs::write(&bad_head, b).unwrap();
    let (code, _, err) = verify(&log2, &bad_head, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("the head in"), "{err}");

    // The first log against the second head: entries missing.
    let (code, _, err) = verify(&log1, &head2, &[]);
    assert_eq!(code, 1, "{err}");

    // One entry's inclusion proof, from the API, checked on its own.
    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let read = std::fs::read_to_string(&token).unwrap();
    let proof: serde_json::Value = client
        .get(format!("{base}/v1/audit/proof/inclusion?seq=2"))
        .bearer_auth(read.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pf = d.path().join("proof.json");
    std::fs::write(&pf, proof.to_string()).unwrap();
    let (code, out, err) = vouch(&[
        "audit",
        "verify",
        "--proof",
        s(&pf),
        "--trust-bundle",
        s(&bundle),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: entry 2"), "{out}");
    let mut changed = proof.clone();
    let entry = changed["entry"]
        .as_str()
        .unwrap()
        .replacen("\"time\":", "\"time\":1", 1);
    changed["entry"] = entry.into();
    std::fs::write(&pf, changed.to_string()).unwrap();
    let (code, _, err) = vouch(&[
        "audit",
        "verify",
        "--proof",
        s(&pf),
        "--trust-bundle",
        s(&bundle),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entry 2 is not in the signed tree"), "{err}");
}

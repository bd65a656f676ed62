//! The `vouch` binary, driven as a user would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vouch_agent::{Agent, AgentConfig};
use vouch_store::{SqliteStore, Store};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

fn vouch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(VOUCH)
        .args(args)
        .env_remove("VOUCH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn dev_once_json_prints_an_affirming_ear_for_this_machine() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("dev");
    let (code, out, err) = vouch(&["dev", "--once", "--json", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let ear: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ear["submods"]["workload"]["ear.status"], "affirming");
    assert_eq!(ear["eat_profile"], "tag:github.com,2023:veraison/ear");
    // Requested for, and verified as, the dev relying party's audience.
    assert_eq!(ear["aud"], "vouch-dev-rp");
    // A second run reuses the enrollment and stays affirming.
    let (code, out, _) = vouch(&["dev", "--once", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("affirming"));
}

#[test]
fn policy_test_explains_which_rules_decided() {
    let (code, out, err) = vouch(&[
        "policy",
        "test",
        "default",
        "--input",
        &data("claims.json"),
        "--refvalues",
        &data("refvalues.json"),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("status: contraindicated"), "{out}");
    for rule in ["forbidden_process", "forbidden_port", "min_package"] {
        assert!(out.contains(rule), "{rule} missing from:\n{out}");
    }
    let (code, out, _) = vouch(&[
        "--json",
        "policy",
        "test",
        "default",
        "--input",
        &data("claims.json"),
    ]);
    assert_eq!(code, 1);
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["status"], "warning");
    // Every shipped example policy compiles and decides on the same claims.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples");
    let mut seen = 0;
    for e in std::fs::read_dir(examples).unwrap() {
        seen += 1;
        let p = e.unwrap().path();
        let (code, out, err) = vouch(&[
            "policy",
            "test",
            p.to_str().unwrap(),
            "--input",
            &data("claims.json"),
        ]);
        assert!(code == 0 || code == 1, "{}: {out}{err}", p.display());
        assert!(out.contains("status:"), "{}: {out}{err}", p.display());
    }
    assert!(seen >= 4, "example policies missing");
}

use vouch_testkit::free_port;

mod common;
use common::spawn_server;

/// Acknowledged attestations survive SIGKILL of the verifier under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_attestations_survive_sigkill_under_load() {
    let d = tempfile::tempdir().unwrap();
    let sdir = d.path().join("server");
    let port = free_port();
    let mut server = spawn_server(&sdir, port);
    let base = format!("https://127.0.0.1:{port}");
    let ca = sdir.join("tls/ca.crt");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut agents = Vec::new();
    for i in 0..4 {
        let (code, token, err) = vouch(&["token", "create", "--data-dir", sdir.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        let exe = d.path().join(format!("w{i}"));
        std::fs::write(&exe, "w").unwrap();
        agents.push(
            Agent::new(AgentConfig {
                servers: vec![base.clone()],
                ca_cert: Some(ca.clone()),
                data_dir: d.path().join(format!("agent{i}")),
                join_token: Some(token.trim().to_string()),
                workload_name: format!("w{i}"),
                exe: Some(exe),
                ..AgentConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    // The agents attest in a loop until the verifier is killed under them; it is killed once
    // at least 12 attestations were acknowledged (or after 30 s on a very busy machine), so
    // the load does not depend on how fast this machine is.
    // Each agent's acknowledged count: the verifier is killed only once every agent has had
    // one (the workload list below names each), so a slow first round cannot leave one out.
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let per_agent: Arc<Vec<std::sync::atomic::AtomicUsize>> =
        Arc::new((0..agents.len()).map(|_| Default::default()).collect());
    let mut tasks = Vec::new();
    for (i, mut a) in agents.into_iter().enumerate() {
        let acked = acked.clone();
        let killed = killed.clone();
        let per_agent = per_agent.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            let give_up = Instant::now() + Duration::from_secs(60);
            while Instant::now() < give_up {
                match a.attest_once().await {
                    Ok(r) => {
                        acked.lock().unwrap().push(r.attestation_id);
                        per_agent[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(_) => {
                        errors += 1;
                        if killed.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
            errors
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let every_agent = || {
        per_agent
            .iter()
            .all(|n| n.load(std::sync::atomic::Ordering::SeqCst) > 0)
    };
    while (acked.lock().unwrap().len() < 12 || !every_agent()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 4,
        "too little load: {} attestations",
        acked.len()
    );

    // Restart on the same data directory: every acknowledged attestation is there.
    let _server = spawn_server(&sdir, port);
    let store = SqliteStore::open(&sdir.join("vouch.db")).await.unwrap();
    for id in &acked {
        assert!(
            store.attestation(id).await.unwrap().is_some(),
            "acknowledged attestation {id} lost after SIGKILL"
        );
    }

    // The CLI attests against the restarted server and verifies the result offline.
    let (_, token, _) = vouch(&["token", "create", "--data-dir", sdir.to_str().unwrap()]);
    let adir = d.path().join("cli-agent");
    let (code, out, err) = vouch(&[
        "attest",
        "--server",
        &base,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--agent-dir",
        adir.to_str().unwrap(),
        "--join-token",
        token.trim(),
        "--workload",
        "cli",
        "--exe",
        "/bin/sh",
        "--result-audience",
        "db",
    ]);
    assert!(code == 1 && out.contains("warning"), "{out}{err}");
    // `vouch verify` of a result file against the restarted verifier's JWKS, with `flags`.
    let jwks = format!("{base}/.well-known/jwks.json");
    let jwt = adir.join("result.jwt");
    let verify = |flags: &[&str], file: &Path| {
        let mut a = vec!["verify", "--jwks", &jwks, "--ca-cert", ca.to_str().unwrap()];
        a.extend(flags);
        a.push(file.to_str().unwrap());
        vouch(&a)
    };
    let (code, out, err) = verify(&["--audience", "db", "--accept-warning"], &jwt);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid:"), "{out}");
    let (code, _, err) = verify(&["--audience", "db"], &jwt);
    assert_eq!(code, 1);
    assert!(err.contains("warning"), "{err}");
    // Issue 12: a relying party names its audience; a result for another is refused, and
    // not checking is a flag of its own.
    let (code, _, err) = verify(&["--accept-warning"], &jwt);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--audience"), "{err}");
    let (code, _, err) = verify(&["--audience", "cache", "--accept-warning"], &jwt);
    assert_eq!(code, 1);
    assert!(err.contains("not for audience \"cache\""), "{err}");
    let (code, out, err) = verify(&["--any-audience", "--accept-warning"], &jwt);
    assert_eq!(code, 0, "{out}{err}");
    // A relying party that wants a confidential VM: software evidence, no sev-snp submodule.
    for (flag, value, says) in [
        ("--evidence-kind", "composite", "software evidence"),
        ("--require-submod", "sev-snp", "no \"sev-snp\" submodule"),
    ] {
        let (code, _, err) = verify(&["--audience", "db", "--accept-warning", flag, value], &jwt);
        assert_eq!(code, 1, "{flag}");
        assert!(err.contains(says), "{flag}: {err}");
    }
    // Issue 17: the agent wrote the result with its ML-DSA-65 signature beside result.jwt;
    // `--signatures both` (and `post-quantum`) accepts it and refuses the classical-only one.
    let pq = adir.join("result.pq.json");
    for (mode, file, ok) in [
        ("both", &pq, true),
        ("post-quantum", &pq, true),
        ("classical", &pq, true),
        ("both", &adir.join("result.jwt"), false),
    ] {
        let (code, out, err) = verify(
            &["--audience", "db", "--accept-warning", "--signatures", mode],
            file,
        );
        if ok {
            assert_eq!(code, 0, "{mode} {}: {out}{err}", file.display());
        } else {
            assert_eq!(code, 1, "{mode}: {out}{err}");
            assert!(err.contains("no ML-DSA-65 signature"), "{err}");
        }
    }
    let (code, out, _) = vouch(&["workload", "list", "--data-dir", sdir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("/cli") && out.contains("/w0"), "{out}");
}

#[test]
fn admin_commands_round_trip() {
    let d = tempfile::tempdir().unwrap();
    // Through a running verifier's API (issue 16 item 1), found by its data directory.
    let _server = spawn_server(d.path(), free_port());
    let dir = d.path().to_str().unwrap();
    let (code, _, err) = vouch(&[
        "refvalue",
        "add",
        "min_os_version",
        "debian",
        "12",
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = vouch(&["--json", "refvalue", "list", "--data-dir", dir]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["kind"], "min_os_version");
    let p = d.path().join("p.rego");
    std::fs::write(
        &p,
        "package vouch.appraisal\nimport rego.v1\ndeny contains \"no\" if false\n",
    )
    .unwrap();
    let (code, out, _) = vouch(&[
        "policy",
        "add",
        "strict",
        p.to_str().unwrap(),
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("strict v1"));
    let (_, out, _) = vouch(&[
        "policy",
        "add",
        "strict",
        p.to_str().unwrap(),
        "--data-dir",
        dir,
    ]);
    assert!(out.contains("strict v2"));
    // A policy that does not compile is refused before it can become active.
    std::fs::write(&p, "package vouch.appraisal\ndeny contains x if {").unwrap();
    let (code, _, err) = vouch(&[
        "policy",
        "add",
        "strict",
        p.to_str().unwrap(),
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("does not compile"), "{err}");
    let (_, out, _) = vouch(&["policy", "list", "--data-dir", dir]);
    assert!(out.contains("strict") && out.contains("yes"), "{out}");
    let (code, _, err) = vouch(&["token", "create", "--ttl", "soon", "--data-dir", dir]);
    assert_eq!(code, 2);
    assert!(err.contains("duration"), "{err}");
    let (code, out, _) = vouch(&["key", "rotate", "--alg", "ES256", "--data-dir", dir]);
    assert_eq!(code, 0);
    assert!(out.contains("new signing key"));

    // Registration entries: invalid SPIFFE IDs and selectors are refused with the reason.
    let (code, _, err) = vouch(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://Example.org/db",
        "--selector",
        "unix:uid:1000",
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("trust domain"), "{err}");
    let (code, _, err) = vouch(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/db",
        "--selector",
        "uid 1000",
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = vouch(&[
        "--json",
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/db",
        "--selector",
        "unix:uid:1000",
        "--selector",
        "vouch:status:affirming",
        "--data-dir",
        dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = e["id"].as_str().unwrap().to_string();
    let (_, out, _) = vouch(&["entry", "list", "--data-dir", dir]);
    assert!(
        out.contains("spiffe://example.org/db") && out.contains("unix:uid:1000"),
        "{out}"
    );
    let (code, _, _) = vouch(&["entry", "delete", &id, "--data-dir", dir]);
    assert_eq!(code, 0);
    let (code, _, _) = vouch(&["entry", "delete", &id, "--data-dir", dir]);
    assert_eq!(code, 2);
}

#[test]
fn tpm_verify_quote_checks_a_tpm2_tools_quote() {
    let tpm = vouch_testkit::Swtpm::start("sha256");
    tpm.extend(16, "sha256", "01");
    tpm.ek_and_ak("rsa");
    tpm.quote("sha256:0,16", "c0ffee", "sha256");
    let p = |f: &str| tpm.path(f).to_str().unwrap().to_string();
    let args = |nonce: &str| {
        vec![
            "tpm".to_string(),
            "verify-quote".into(),
            "--ak".into(),
            p("ak.pub"),
            "--ek".into(),
            p("ek.pub"),
            "--message".into(),
            p("quote.msg"),
            "--signature".into(),
            p("quote.sig"),
            "--pcrs".into(),
            p("quote.pcrs"),
            "--nonce".into(),
            nonce.into(),
        ]
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        vouch(&refs)
    };
    let (code, out, err) = run(args("c0ffee"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("AK under EK") && out.contains("sha256:16"),
        "{out}"
    );
    let (code, _, err) = run(args("c0ffef"));
    assert_eq!(code, 1);
    assert!(err.contains("another nonce"), "{err}");
}

#[test]
fn tpm_eventlog_replays_a_real_log_and_checks_it_against_tpm2_tools_pcrs() {
    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vouch-tpm/tests/data/seabios_qemu_binary_bios_measurements"
    );
    let (code, out, err) = vouch(&["tpm", "eventlog", log]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Calling INT 19h") && out.contains("EV_SEPARATOR"),
        "{out}"
    );
    assert!(
        out.contains("sha256:4  fce7f1083082b16cfe2b085dd7858bb11a37c09b78e36c79e5a2fd529353c4e2"),
        "{out}"
    );

    // Extend an swtpm as SeaBIOS did; a tpm2-tools quote's PCR file then matches the replay.
    let tpm = vouch_testkit::Swtpm::start("sha256");
    let parsed = vouch_tpm::EventLog::parse(&std::fs::read(log).unwrap()).unwrap();
    for e in parsed.events.iter().filter(|e| e.event_type != 3) {
        let d = e.digest(vouch_tpm::HashAlg::Sha256).unwrap();
        tpm.extend(e.pcr, "sha256", &hex::encode(d));
    }
    tpm.ek_and_ak("rsa");
    tpm.quote("sha256:0,1,2,3,4,5,6,7", "00", "sha256");
    let pcrs = tpm.path("quote.pcrs");
    let (code, out, err) = vouch(&[
        "tpm",
        "eventlog",
        log,
        "--pcrs",
        pcrs.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["check"]["ok"], true);
    assert_eq!(v["claims"]["events"], 17);

    // One more extend of PCR 2 and the replay no longer matches: exit 1 and the PCR named.
    tpm.extend(2, "sha256", "ab");
    tpm.quote("sha256:0,1,2,3,4,5,6,7", "00", "sha256");
    let (code, out, _) = vouch(&["tpm", "eventlog", log, "--pcrs", pcrs.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("MISMATCH") && out.contains("PCR 2"), "{out}");
}

#[test]
fn svid_bench_reports_issuance_against_raw_ecdsa() {
    let (code, out, err) = vouch(&["bench", "--svid", "--n", "50", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["svids_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["issue_over_sign"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn ca_prepare_and_activate_rotate_the_trust_domain_ca() {
    let dir = tempfile::tempdir().unwrap();
    let _server = spawn_server(dir.path(), free_port());
    let d = dir.path().to_str().unwrap();
    let show = |cmd: &str| {
        let (code, out, err) = vouch(&["ca", cmd, "--data-dir", d, "--json"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let roles = |v: &serde_json::Value| -> Vec<String> {
        v["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["role"].as_str().unwrap().to_string())
            .collect()
    };
    let v = show("show");
    assert_eq!(
        (v["sequence"].as_u64(), roles(&v)),
        (Some(1), vec!["active".to_string()])
    );
    let first = v["authorities"][0]["sha256"].clone();
    let v = show("prepare");
    assert_eq!(v["sequence"], 2);
    assert_eq!(roles(&v), ["active", "next"]);
    let next = v["authorities"][1]["sha256"].clone();
    let (code, _, err) = vouch(&["ca", "prepare", "--data-dir", d]);
    assert_ne!(code, 0, "only one next CA");
    assert!(err.contains("already prepared"), "{err}");
    let v = show("activate");
    assert_eq!(v["sequence"], 3);
    assert_eq!(roles(&v), ["active", "retired"]);
    assert_eq!(v["authorities"][0]["sha256"], next);
    assert_eq!(v["authorities"][1]["sha256"], first);
}

/// Issue 12 item 8: `vouch node reenroll` opens one recorded TPM re-enrolment, and only for a
/// node bound to a TPM.
#[tokio::test]
async fn node_reenroll_records_a_reenrolment_for_a_tpm_bound_node_only() {
    let dir = tempfile::tempdir().unwrap();
    // The verifier makes the database; the test writes the node's records beside it.
    let _server = spawn_server(dir.path(), free_port());
    let d = dir.path().to_str().unwrap();
    let store = SqliteStore::open(&dir.path().join("vouch.db"))
        .await
        .unwrap();
    store
        .create_join_token("t", None, 0, u64::MAX / 2)
        .await
        .unwrap();
    let node = store.enroll("t", &[7; 32], "h", 1).await.unwrap().node_id;
    let (code, _, err) = vouch(&["node", "reenroll", &node, "--reason", "x", "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("not bound to a TPM"), "{err}");

    store
        .put_tpm_enrollment(&vouch_store::TpmKeyRecord {
            node_id: node.clone(),
            ek_public: vec![1; 8],
            ek_cert: None,
            ek_issuer: None,
            ak_public: vec![2; 8],
            ak_qualified_name: vec![3; 8],
            challenge_hash: Some("c".into()),
            challenge_expires: Some(u64::MAX / 2),
            activated_at: None,
            last_clock: None,
            ima_state: None,
            created_at: 1,
            ek_key: Some("ab".repeat(32)),
            bound_at: None,
        })
        .await
        .unwrap();
    store.activate_tpm(&node, 2).await.unwrap();
    let (code, _, err) = vouch(&["node", "reenroll", &node, "--data-dir", d]);
    assert_ne!(code, 0, "a reason is required");
    assert!(err.contains("--reason"), "{err}");
    let (code, out, err) = vouch(&[
        "--json",
        "node",
        "reenroll",
        &node,
        "--reason",
        "motherboard replaced",
        "--by",
        "ops",
        "--ttl",
        "10m",
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requested_by"], "ops");
    assert_eq!(v["reason"], "motherboard replaced");
    assert_eq!(v["previous_ek"], "ab".repeat(32));
    assert_eq!(
        v["expires_at"].as_u64().unwrap() - v["created_at"].as_u64().unwrap(),
        600
    );
    let open = store
        .open_tpm_reenrollment(&node, vouch_server::unix_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.id, v["id"].as_str().unwrap());
}

#[test]
fn revoke_needs_a_reason_a_known_kind_and_an_existing_target() {
    let dir = tempfile::tempdir().unwrap();
    let _server = spawn_server(dir.path(), free_port());
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = vouch(&["revoke", "node", "n1", "--reason", " ", "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("--reason"), "{err}");
    let (code, _, err) = vouch(&["revoke", "host", "n1", "--reason", "lost", "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(
        err.contains("not one of workload, node, svid, agent-key, result"),
        "{err}"
    );
    let (code, _, err) = vouch(&["revoke", "node", "n1", "--reason", "lost", "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("node n1 not found"), "{err}");
    // A certificate serial needs no record here; the log numbers it 1, then 2.
    let (code, out, err) = vouch(&[
        "revoke",
        "svid",
        "0A:0B",
        "--reason",
        "lost",
        "--data-dir",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("svid a0b revoked at epoch 1"), "{out}");
    let (code, out, _) = vouch(&["revocations", "--json", "--data-dir", d]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["epoch"], 1);
    assert!(v[0]["record"].as_str().unwrap().split('.').count() == 3);
}

#[test]
fn tpm_bench_times_quotes_and_the_event_log_against_the_signature() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let evidence = vouch_testkit::testdata("tpm/trustee_tpm_evidence.json")
        .display()
        .to_string();
    let log = format!("{root}/crates/vouch-tpm/tests/data/ovmf_binary_bios_measurements");
    let (code, out, err) = vouch(&[
        "tpm",
        "bench",
        "--n",
        "20",
        "--evidence",
        &evidence,
        "--eventlog",
        &log,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert!(rows[0]["overhead_percent"].is_number(), "{v}");
    let el = rows.iter().find(|r| r["eventlog_us"].is_number()).unwrap();
    assert!(
        el["case"].as_str().unwrap().contains("31 events, 4 banks"),
        "{el}"
    );
}

/// Issue 12: `vouch tpm bench` had defaults pointing into the source tree (and beside it), so
/// it worked only from a checkout. The quote it times is a required argument; the event log an
/// optional one (not timed when absent).
#[test]
fn tpm_bench_times_only_the_inputs_it_is_given() {
    let (code, _, err) = vouch(&["tpm", "bench", "--n", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("--evidence"), "{err}");
    let evidence = vouch_testkit::testdata("tpm/trustee_tpm_evidence.json")
        .display()
        .to_string();
    let (code, out, err) = vouch(&[
        "tpm",
        "bench",
        "--n",
        "5",
        "--evidence",
        &evidence,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert!(rows[0]["eventlog_us"].is_null(), "{v}");
}

#[test]
fn several_replicas_need_a_shared_store() {
    let (code, _, err) = vouch(&["bench", "--replicas", "2", "--n", "10"]);
    assert_ne!(code, 0);
    assert!(err.contains("--database-url"), "{err}");
}

#[test]
fn a_revocation_reaches_all_200_members_of_a_simulated_cluster() {
    // Five per cent of the members are cut off during the spread and catch up afterwards;
    // the command fails if any member never gets the record or a cut-off one gets it early.
    let (code, out, err) = vouch(&[
        "bench",
        "--gossip",
        "10,200",
        "--down-percent",
        "5",
        "--gossip-interval-ms",
        "100",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    let big = &rows[1];
    assert_eq!(
        (big["nodes"].as_u64(), big["down"].as_u64()),
        (Some(200), Some(10))
    );
    assert!(big["all_ms"].as_u64().unwrap() >= big["p99_ms"].as_u64().unwrap());
    assert!(big["catchup_ms"].is_u64(), "{big}");
}

#[test]
fn quorum_keys_from_the_dealer_sign_a_plain_ed25519_signature() {
    // The bench checks the aggregate against the group key with aws-lc's Ed25519 first.
    let (code, out, err) = vouch(&["bench", "--quorum", "--n", "10", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["ratio"].as_f64().unwrap() > 1.0, "{v}");
    // The dealer refuses a threshold that is no quorum.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = vouch(&[
        "quorum",
        "dealer",
        "--threshold",
        "1",
        "--signers",
        "3",
        "--out",
        d,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("need 2 <= threshold <= signers"), "{err}");
    let (code, out, _) = vouch(&[
        "quorum",
        "dealer",
        "--threshold",
        "2",
        "--signers",
        "3",
        "--out",
        d,
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("signer-1.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Issue 13 item 6: `vouch bench` prints one table, every row named, whether or not it could
/// be measured here (the TPM row says "skipped (no swtpm)" where swtpm is missing). Figures
/// are not asserted: they depend on the machine.
#[test]
fn bench_prints_one_table_with_every_row() {
    let (code, out, err) = vouch(&[
        "bench",
        "--n",
        "5",
        "--concurrency",
        "2",
        "--scale-workloads",
        "100",
    ]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap_or_default();
    for col in ["row", "measured", "ceiling", "ratio", "target", "met"] {
        assert!(header.contains(col), "{out}");
    }
    for row in [
        "software evidence, repeat attestation",
        "software evidence, changed claims",
        "TPM quote attestation, repeat",
        "latency, one attestation, server side, unloaded: p50",
        "latency, one attestation, server side, unloaded: p99",
        "policy evaluation, repeat attestation",
        "policy evaluation, changed claims",
        "SQLite durable records",
        "PostgreSQL durable records",
        "X.509-SVID issuance",
        "quorum result signing",
        "post-quantum result signature (ML-DSA-65 sign + verify)",
        "metrics and request id, per attestation",
        "appraisal pipeline alone, repeat",
        "appraisal pipeline alone, changed claims",
        "fleet anomaly detector, repeat attestation",
        "fleet anomaly detector, every measurement new to the node",
        "scale: verifier memory per registered workload",
        "scale: attestation cost at N workloads against 1,000",
        "scale: X.509-SVID request at N entries against 1,000",
        "scale: entry change to the last watching agent",
        "scale: verifier start-up at N workloads",
    ] {
        assert!(
            out.lines().skip(2).any(|l| l.starts_with(row)),
            "no row {row:?} in\n{out}"
        );
    }
}

/// Issue 16 item 5: `vouch bench --anomalies` times the fleet anomaly detector's hook over this
/// machine's measurements against the appraisal pipeline, both per attestation.
#[test]
fn bench_anomalies_measures_the_detector_against_the_pipeline() {
    let (code, out, err) = vouch(&["--json", "bench", "--anomalies", "--n", "20"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["measurements"].as_u64().unwrap() > 10, "{v}");
    for k in [
        "detector_steady_us",
        "detector_full_us",
        "pipeline_repeat_us",
        "pipeline_changed_us",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
}

/// Issue 17 item 3: `vouch bench --pq` measures ML-DSA-65 against Ed25519 per result, each
/// signature verified before timing (a failing one makes the command fail).
#[test]
fn bench_pq_measures_ml_dsa_65_against_ed25519() {
    let (code, out, err) = vouch(&["bench", "--pq", "--n", "20", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mldsa65_signature_bytes"], 3309, "{v}");
    for k in [
        "mldsa65_sign_us",
        "mldsa65_verify_us",
        "ed25519_sign_us",
        "ed25519_verify_us",
        "sign_plus_verify_ratio",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
}

/// Issue 13 item 4: `vouch bench load` enrolls its agents, attests on a schedule, and reports
/// the latency histogram and the errors by kind.
#[test]
fn bench_load_reports_a_latency_histogram() {
    let (code, out, err) = vouch(&[
        "bench",
        "load",
        "--agents",
        "8",
        "--interval",
        "300ms",
        "--duration",
        "2s",
        "--changed-percent",
        "50",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agents"], 8, "{v}");
    assert!(v["attestations"].as_u64().unwrap() > 8, "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    let l = &v["latency_ms"];
    for q in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(l[q].as_f64().unwrap() > 0.0, "{v}");
    }
    assert!(l["p50"].as_f64() <= l["max"].as_f64(), "{v}");
}

//! Issue 16 item 1: every admin verb goes through a running verifier's authenticated API over
//! HTTPS on loopback, driven as an operator would drive the `vouch` binary; nothing opens the
//! store; migrations only when asked for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vouch_testkit::free_port;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

/// Run `vouch` with no configuration from this process's environment but `env`.
fn vouch_env(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> (i32, String, String) {
    let mut c = Command::new(VOUCH);
    c.args(args);
    for v in [
        "VOUCH_CONFIG",
        "VOUCH_SERVER",
        "VOUCH_TOKEN",
        "VOUCH_TOKEN_FILE",
        "VOUCH_SERVER_CA",
        "VOUCH_CONTEXT",
        "VOUCH_SERVER_DATA_DIR",
    ] {
        c.env_remove(v);
    }
    // No context file of the machine's user.
    c.env("VOUCH_CONTEXT_FILE", "/nonexistent/vouch-contexts.toml");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `vouch server` on `port`; `None` with its stderr when it exits instead of listening.
fn try_spawn(dir: &Path, port: u16, extra: &[&str]) -> Result<Server, String> {
    try_spawn_env(dir, port, extra, &[])
}

fn try_spawn_env(
    dir: &Path,
    port: u16,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> Result<Server, String> {
    let log = dir.with_extension("log");
    let child = Command::new(VOUCH)
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("VOUCH_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(_status) = server.0.try_wait().unwrap() {
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        }
        // Listening, and the admin context published.
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && dir.join("context.toml").exists()
        {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("vouch server did not start");
}

/// A verifier and the explicit flags that reach it with the admin token.
struct Verifier {
    _server: Server,
    dir: PathBuf,
    base: String,
    ca: String,
    admin: String,
}

impl Verifier {
    fn start(root: &Path) -> Self {
        let dir = root.join("server");
        let port = free_port();
        let server = try_spawn(&dir, port, &[]).unwrap();
        Self {
            base: format!("https://127.0.0.1:{port}"),
            ca: dir.join("tls/ca.crt").to_str().unwrap().to_string(),
            admin: dir.join("keys/admin.token").to_str().unwrap().to_string(),
            dir,
            _server: server,
        }
    }

    /// `vouch ARGS --server … --ca-cert … --token-file <admin token>`.
    fn admin(&self, args: &[&str]) -> (i32, String, String) {
        self.with_token(&self.admin, args)
    }

    fn with_token(&self, token_file: &str, args: &[&str]) -> (i32, String, String) {
        let mut a = args.to_vec();
        a.extend([
            "--server",
            &self.base,
            "--ca-cert",
            &self.ca,
            "--token-file",
            token_file,
        ]);
        vouch_env(&a, &[], None)
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let (code, out, err) = self.admin(&a);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// GET `path` with the read token.
    async fn get(&self, path: &str) -> Value {
        let pem = std::fs::read(&self.ca).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        let read = std::fs::read_to_string(self.dir.join("keys/read.token")).unwrap();
        let req = client
            .get(format!("{}{path}", self.base))
            .bearer_auth(read.trim());
        req.send().await.unwrap().json::<Value>().await.unwrap()
    }

    /// The audit log's entries, fetched with the read token.
    async fn audit(&self) -> Vec<Value> {
        let size = self.get("/v1/audit/head").await["size"].as_u64().unwrap();
        let page = self
            .get(&format!("/v1/audit/entries?start=0&end={size}"))
            .await;
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::from_str(e.as_str().unwrap()).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_verb_works_remotely_and_is_logged_with_its_caller() {
    let d = tempfile::tempdir().unwrap();
    let v = Verifier::start(d.path());
    let rego = d.path().join("p.rego");
    std::fs::write(
        &rego,
        "package vouch.appraisal\nimport rego.v1\ndeny contains \"no\" if false\n",
    )
    .unwrap();
    let r = s(&rego);

    // Policies: add (twice: versions), list, show, versions, activate.
    assert_eq!(
        v.ok_json(&["policy", "add", "strict", r, "--no-activate"])["version"],
        1
    );
    assert_eq!(v.ok_json(&["policy", "add", "strict", r])["version"], 2);
    let list = v.ok_json(&["policy", "list"]);
    let strict = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "strict")
        .unwrap();
    assert_eq!(
        (&strict["version"], &strict["active"]),
        (&2.into(), &true.into())
    );
    assert!(
        v.ok_json(&["policy", "show", "strict", "--version", "1"])["rego"]
            .as_str()
            .unwrap()
            .contains("deny contains")
    );
    assert_eq!(
        v.ok_json(&["policy", "versions", "strict"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, out, _) = v.admin(&["policy", "activate", "default"]);
    assert_eq!(code, 0);
    assert!(out.contains("policy default is active"));
    let (code, _, err) = v.admin(&["policy", "activate", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no policy nope"), "{err}");

    // Reference values: add, list, remove.
    let id = v.ok_json(&["refvalue", "add", "min_os_version", "debian", "12"])["id"].clone();
    assert_eq!(
        v.ok_json(&["refvalue", "list"])[0]["kind"],
        "min_os_version"
    );
    let (code, _, err) = v.admin(&["refvalue", "remove", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = v.admin(&["refvalue", "remove", &id.to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("no reference value"), "{err}");

    // Join tokens, entries, nodes, workloads.
    let t = v.ok_json(&["token", "create", "--ttl", "10m", "--node-name", "n1"]);
    let token = t["token"].as_str().unwrap();
    assert!(token.starts_with("vjt_"));
    // Listed by its SHA-256 only, never the token.
    let (code, out, err) = v.admin(&["--json", "token", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(token), "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["node_name"], "n1");
    assert_eq!(listed[0]["state"], "unused");
    use sha2::Digest as _;
    assert_eq!(
        listed[0]["token_sha256"],
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    );
    let e = v.ok_json(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://vouch.local/db",
        "--selector",
        "unix:uid:1000",
    ]);
    let eid = e["id"].as_str().unwrap().to_string();
    assert_eq!(
        v.ok_json(&["entry", "show", &eid])["spiffe_id"],
        "spiffe://vouch.local/db"
    );
    assert_eq!(v.ok_json(&["entry", "list"]).as_array().unwrap().len(), 1);
    let (code, _, _) = v.admin(&["entry", "delete", &eid]);
    assert_eq!(code, 0);
    assert_eq!(v.ok_json(&["node", "list"]), Value::Array(vec![]));
    assert_eq!(v.ok_json(&["workload", "list"]), Value::Array(vec![]));
    let (code, _, err) = v.admin(&["node", "show", "ghost"]);
    assert_eq!(code, 2);
    assert!(err.contains("no node ghost"), "{err}");

    // The CA: show, prepare, a second prepare refused, activate.
    let ca = v.ok_json(&["ca", "show"]);
    assert_eq!(ca["sequence"], 1);
    let first = ca["authorities"][0]["sha256"].clone();
    let ca = v.ok_json(&["ca", "prepare"]);
    assert_eq!(ca["sequence"], 2);
    let next = ca["authorities"][1]["sha256"].clone();
    let (code, _, err) = v.admin(&["ca", "prepare"]);
    assert_eq!(code, 2);
    assert!(err.contains("already prepared"), "{err}");
    let ca = v.ok_json(&["ca", "activate"]);
    assert_eq!(ca["sequence"], 3);
    assert_eq!(ca["authorities"][0]["sha256"], next);
    assert_eq!(ca["authorities"][1]["sha256"], first);

    // Keys: rotate, and the verifier signs with the new one at once.
    let old = v.ok_json(&["key", "show"])["active"].clone();
    let kid = v.ok_json(&["key", "rotate", "--alg", "ES256"])["kid"].clone();
    assert_ne!(kid, old);
    let keys = v.ok_json(&["key", "show"]);
    assert_eq!(keys["active"], kid);
    let kids: Vec<&Value> = keys["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&old),
        "the old key stays in the JWKS: {keys}"
    );

    // Revocations, by the API (the verifier signs and gossips them).
    let (code, out, err) = v.admin(&["revoke", "svid", "0A:0B", "--reason", "lost", "--by", "ops"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("svid a0b revoked at epoch 1 by ops"), "{out}");
    let (code, _, err) = v.admin(&["revoke", "node", "n1", "--reason", "lost"]);
    assert_eq!(code, 2);
    assert!(err.contains("node n1 not found"), "{err}");
    assert_eq!(v.ok_json(&["revocations"])[0]["epoch"], 1);

    // Every admin route is described in the OpenAPI document the verifier serves.
    let doc = v.get("/openapi.json").await;
    for (path, method) in [
        ("/v1/policies", "post"),
        ("/v1/policies/{id}", "get"),
        ("/v1/policies/{id}/versions", "get"),
        ("/v1/policies/{id}/activate", "post"),
        ("/v1/refvalues", "get"),
        ("/v1/refvalues/{id}", "delete"),
        ("/v1/refvalues/import", "post"),
        ("/v1/refvalues/learn/{node}", "get"),
        ("/v1/tokens", "get"),
        ("/v1/tokens", "post"),
        ("/v1/nodes", "get"),
        ("/v1/nodes/{id}", "get"),
        ("/v1/workloads/{node}/{name}/latest", "get"),
        ("/v1/revocations/log", "get"),
        ("/v1/ca", "get"),
        ("/v1/ca/prepare", "post"),
        ("/v1/ca/activate", "post"),
        ("/v1/keys", "get"),
        ("/v1/keys/rotate", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} not in openapi.json"
        );
    }

    // Each change is in the audit log, with the credential's name as its actor.
    let log = v.audit().await;
    for kind in [
        "policy.add",
        "policy.activate",
        "refvalue.add",
        "refvalue.remove",
        "token.create",
        "entry.add",
        "entry.delete",
        "ca.prepare",
        "ca.activate",
        "key.rotate",
    ] {
        let e = log
            .iter()
            .find(|e| e["kind"] == kind && e["actor"] != "verifier")
            .unwrap_or_else(|| panic!("{kind} missing from {log:?}"));
        assert_eq!(e["actor"], "admin-api", "{kind}: {e}");
    }
    assert!(
        log.iter()
            .any(|e| e["kind"] == "key.rotate" && e["subject"] == kid),
        "{log:?}"
    );
}

#[test]
fn credentials_are_checked_and_nothing_is_opened_without_a_verifier() {
    let d = tempfile::tempdir().unwrap();
    let v = Verifier::start(d.path());

    // One flipped byte of the admin token: refused, and nothing changed.
    let admin = std::fs::read_to_string(&v.admin).unwrap();
    let mut flipped = admin.trim().as_bytes().to_vec();
    flipped[5] ^= 0x01;
    let bad = d.path().join("bad.token");
    std::fs::write(&bad, &flipped).unwrap();
    let (code, _, err) = v.with_token(s(&bad), &["refvalue", "add", "file", "/x", "ab"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("401") && err.contains("unauthenticated"),
        "{err}"
    );
    let (code, _, err) = v.with_token(s(&bad), &["policy", "list"]);
    assert_eq!(code, 2, "{err}");

    // The read token reads, and changes nothing.
    let read = v.dir.join("keys/read.token");
    let (code, out, err) = v.with_token(s(&read), &["policy", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default"), "{out}");
    let (code, _, err) = v.with_token(s(&read), &["refvalue", "add", "file", "/x", "ab"]);
    assert_eq!(code, 2);
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = v.with_token(s(&read), &["key", "rotate"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(v.ok_json(&["refvalue", "list"]), Value::Array(vec![]));

    // A wrong CA: the TLS handshake fails before any token is sent.
    let other = tempfile::tempdir().unwrap();
    let w = Verifier::start(other.path());
    let mut a = vec!["policy", "list", "--server", &v.base, "--ca-cert", &w.ca];
    a.extend(["--token-file", &v.admin]);
    let (code, _, err) = vouch_env(&a, &[], None);
    assert_eq!(code, 2);
    assert!(!err.contains("default"), "{err}");
    // The token travels only over https (http on loopback only).
    let (code, _, err) = vouch_env(
        &["policy", "list", "--server", "http://example.org:8443"],
        &[("VOUCH_TOKEN", "x")],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("only over https"), "{err}");

    // No verifier configured, run from a fresh directory: a clear error, no store created.
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        vec!["refvalue", "add", "file", "/x", "ab"],
        vec!["policy", "list"],
        vec!["token", "create"],
        vec!["revoke", "node", "n1", "--reason", "x"],
    ] {
        let (code, _, err) = vouch_env(&args, &[], Some(cwd.path()));
        assert_eq!(code, 2, "{args:?}");
        assert!(
            err.contains("no verifier configured") && err.contains("--server URL"),
            "{err}"
        );
    }
    // The wrong data directory: it says so, and creates nothing there.
    let wrong = cwd.path().join("not-the-verifier");
    let (code, _, err) = vouch_env(&["policy", "list", "--data-dir", s(&wrong)], &[], None);
    assert_eq!(code, 2);
    assert!(err.contains("holds no verifier context"), "{err}");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);

    // Environment variables and a context file reach it too.
    let env = [
        ("VOUCH_SERVER", v.base.as_str()),
        ("VOUCH_SERVER_CA", v.ca.as_str()),
        ("VOUCH_TOKEN_FILE", v.admin.as_str()),
    ];
    let (code, out, err) = vouch_env(&["policy", "list"], &env, Some(cwd.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default"));
    let ctx = d.path().join("contexts.toml");
    let cf = [("VOUCH_CONTEXT_FILE", s(&ctx))];
    let (code, _, err) = vouch_env(
        &[
            "context",
            "add",
            "lab",
            "--server",
            &v.base,
            "--ca",
            &v.ca,
            "--token-file",
            &v.admin,
        ],
        &cf,
        None,
    );
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&ctx).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, out, _) = vouch_env(&["context", "list"], &cf, None);
    assert_eq!(code, 0);
    assert!(out.contains("* ") && out.contains("lab"), "{out}");
    let (code, out, _) = vouch_env(&["context", "show"], &cf, None);
    assert_eq!(code, 0);
    assert!(
        out.contains(&v.base) && !out.contains(admin.trim()),
        "{out}"
    );
    let (code, out, err) = vouch_env(&["policy", "list"], &cf, Some(cwd.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default"));
    let (code, _, err) = vouch_env(&["context", "use", "nope"], &cf, None);
    assert_eq!(code, 2);
    assert!(err.contains("no context nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_reference_values_import_in_one_transaction_or_not_at_all() {
    let d = tempfile::tempdir().unwrap();
    let v = Verifier::start(d.path());
    let row = |i: usize| format!("file,/opt/app/{i},{i:064x}\n");
    let mut csv = String::from("kind,key,value\n");
    (0..5000).for_each(|i| csv.push_str(&row(i)));
    let good = d.path().join("good.csv");
    std::fs::write(&good, &csv).unwrap();

    // A bad row at 4,000 (an empty key): the whole file is refused, naming its line.
    let mut bad = String::from("kind,key,value\n");
    (0..5000).for_each(|i| {
        bad.push_str(&if i == 3999 {
            "file,,00\n".to_string()
        } else {
            row(i + 10_000)
        })
    });
    let badf = d.path().join("bad.csv");
    std::fs::write(&badf, &bad).unwrap();
    let (code, _, err) = v.admin(&["refvalue", "import", s(&badf)]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 4001 (reference value 4000)") && err.contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(v.ok_json(&["refvalue", "list"]), Value::Array(vec![]));
    // A row that is not CSV of three fields: refused before sending, naming the line.
    std::fs::write(&badf, "file,/a,1\nfile,/b\n").unwrap();
    let (code, _, err) = v.admin(&["refvalue", "import", s(&badf)]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2: 2 fields"), "{err}");

    let t = Instant::now();
    let r = v.ok_json(&["refvalue", "import", s(&good)]);
    eprintln!("imported 5,000 reference values in {:?}", t.elapsed());
    assert_eq!(
        (r["count"].as_u64(), r["added"].as_u64()),
        (Some(5000), Some(5000))
    );
    assert_eq!(
        v.ok_json(&["refvalue", "list"]).as_array().unwrap().len(),
        5000
    );
    // One audit entry for the import, naming the count and the caller.
    let log = v.audit().await;
    let imports: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "refvalue.import")
        .collect();
    assert_eq!(imports.len(), 1, "{imports:?}");
    assert_eq!(imports[0]["body"]["count"], 5000);
    assert_eq!(imports[0]["actor"], "admin-api");

    // JSON too; values already there are kept, not duplicated.
    let json = d.path().join("more.json");
    std::fs::write(
        &json,
        r#"[{"kind":"file","key":"/opt/app/0","value":"0000000000000000000000000000000000000000000000000000000000000000"},
            {"kind":"executable","key":"db","value":"ab"}]"#,
    )
    .unwrap();
    let r = v.ok_json(&["refvalue", "import", s(&json)]);
    assert_eq!(
        (r["count"].as_u64(), r["added"].as_u64()),
        (Some(2), Some(1))
    );
    std::fs::write(&json, r#"[{"kind":"file","key":"/x"}]"#).unwrap();
    let (code, _, err) = v.admin(&["refvalue", "import", s(&json)]);
    assert_eq!(code, 2);
    assert!(err.contains("element 1") && err.contains("value"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_reference_values_applied_make_the_node_affirming() {
    let d = tempfile::tempdir().unwrap();
    let v = Verifier::start(d.path());
    let token = v.ok_json(&["token", "create"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let exe = d.path().join("app");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    let conf = d.path().join("app.conf");
    std::fs::write(&conf, "port = 1\n").unwrap();
    let mut agent = vouch_agent::Agent::new(vouch_agent::AgentConfig {
        servers: vec![v.base.clone()],
        ca_cert: Some(PathBuf::from(&v.ca)),
        data_dir: d.path().join("agent"),
        join_token: Some(token),
        workload_name: "app".into(),
        exe: Some(exe),
        files: vec![conf.clone()],
        ..vouch_agent::AgentConfig::default()
    })
    .await
    .unwrap();
    let node = agent.enrollment().node_id.clone();
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, vouch_core::ArStatus::Warning, "{:?}", r.reasons);

    // Learned: the executable and the measured file, for review; nothing applied yet.
    let (code, out, err) = v.admin(&["refvalue", "learn", &node]);
    assert_eq!(code, 0, "{err}");
    let learned: Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(&str, &str)> = learned
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["kind"].as_str().unwrap(), v["key"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("executable", "app")), "{kinds:?}");
    assert!(kinds.contains(&("file", s(&conf))), "{kinds:?}");
    assert_eq!(v.ok_json(&["refvalue", "list"]), Value::Array(vec![]));
    let shown = v.ok_json(&["node", "show", &node]);
    assert_eq!(shown["workloads"][0]["status"], "warning");

    // Applied: the next attestation is affirming.
    let (code, out, err) = v.admin(&["refvalue", "learn", &node, "--apply"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported"), "{out}");
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, vouch_core::ArStatus::Affirming, "{:?}", r.reasons);
    let w = v.ok_json(&["workload", "show", &format!("{node}/app")]);
    assert_eq!(w["workload"]["status"], "affirming");

    // A changed file is no longer what was learned: contraindicated.
    std::fs::write(&conf, "port = 2\n").unwrap();
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, vouch_core::ArStatus::Contraindicated);
    let (code, _, err) = v.admin(&["refvalue", "learn", "no-such-node"]);
    assert_eq!(code, 2);
    assert!(err.contains("no attested workload"), "{err}");
}

#[test]
fn an_older_schema_is_refused_until_migrated_on_purpose() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, how) in ["migrate", "server --migrate"].into_iter().enumerate() {
        let dir = d.path().join(format!("server{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        // The database as an older Vouch (migrations up to 0011) left it.
        rt.block_on(vouch_store::SqliteStore::create_with_schema_upto(
            &dir.join("vouch.db"),
            11,
        ))
        .unwrap();
        let port = free_port();
        let err = try_spawn(&dir, port, &[])
            .err()
            .expect("an old schema must be refused");
        assert!(
            err.contains("schema is out of date") && err.contains("vouch server --migrate"),
            "{err}"
        );
        let server = if how == "migrate" {
            let (code, out, err) = vouch_env(&["migrate", "--data-dir", s(&dir)], &[], None);
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("current schema"), "{out}");
            try_spawn(&dir, port, &[]).unwrap()
        } else {
            try_spawn(&dir, port, &["--migrate"]).unwrap()
        };
        let (code, out, err) = vouch_env(&["policy", "list", "--data-dir", s(&dir)], &[], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("default"), "{out}");
        drop(server);
    }
}

/// A verifier with an operator's certificate, which names its service and not the loopback
/// address: the context it publishes pins that certificate, so admin commands on its host
/// (`kubectl exec … vouch token create`) reach it; another certificate is refused.
#[test]
fn a_verifier_with_its_own_certificate_is_reached_by_pinning_it() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, ck: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let (c, k) = (
            d.path().join(format!("{name}.crt")),
            d.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.signing_key.serialize_pem()).unwrap();
        (c, k)
    };
    let mine = rcgen::generate_simple_self_signed(vec!["vouch-server.vouch.svc".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["vouch-server.vouch.svc".into()]).unwrap();
    let (cert, key) = write("mine", &mine);
    let dir = d.path().join("server");
    let env = [
        ("VOUCH_SERVER_TLS_CERT", cert.as_path()),
        ("VOUCH_SERVER_TLS_KEY", key.as_path()),
    ];
    let _server = try_spawn_env(&dir, free_port(), &[], &env).unwrap();
    let ctx = std::fs::read_to_string(dir.join("context.toml")).unwrap();
    assert!(
        ctx.contains("pinned_cert") && !ctx.contains("ca_cert"),
        "{ctx}"
    );
    let (code, out, err) = vouch_env(&["token", "create", "--data-dir", s(&dir)], &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("vjt_"), "{out}");
    // In the verifier's container, with no flag: its configuration file names the data
    // directory (`kubectl exec vouch-server-0 -- vouch token create`).
    let conf = d.path().join("vouch.toml");
    std::fs::write(&conf, format!("[server]\ndata_dir = {:?}\n", s(&dir))).unwrap();
    let (code, out, err) = vouch_env(&["token", "create"], &[("VOUCH_CONFIG", s(&conf))], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("vjt_"), "{out}");
    // Another certificate (same names, another key) in its place: refused.
    std::fs::write(&cert, other.cert.pem()).unwrap();
    let (code, _, err) = vouch_env(&["token", "create", "--data-dir", s(&dir)], &[], None);
    assert_eq!(code, 2);
    assert!(!err.contains("vjt_"), "{err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

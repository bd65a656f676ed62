//! Tenants from the command line (issue 16 item 2): a `vouch server` configured with
//! `[[server.tenants]]`, its tenants' admins minting scoped tokens with `vouch api-token`, and
//! every admin verb held to the token's tenant (`--tenant`) and role; `vouch migrate`
//! migrates the tenants' stores too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vouch_testkit::free_port;

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

/// Run `vouch` with no configuration from this process's environment.
fn vouch(args: &[&str]) -> (i32, String, String) {
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
        "VOUCH_TENANT",
    ] {
        c.env_remove(v);
    }
    c.env("VOUCH_CONTEXT_FILE", "/nonexistent/vouch-contexts.toml");
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

const CONFIG: &str = r#"
[server]
[[server.tenants]]
name = "acme"
trust_domain = "acme.test"
[[server.tenants]]
name = "globex"
trust_domain = "globex.test"
"#;

fn start(config: &Path, dir: &Path, port: u16) -> Server {
    let log = dir.with_extension("log");
    let child = Command::new(VOUCH)
        .arg("--config")
        .arg(config)
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .env_remove("VOUCH_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "vouch server exited {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && dir.join("context.toml").exists()
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("vouch server did not start");
}

#[test]
fn tenant_admins_mint_scoped_tokens_and_every_verb_is_held_to_tenant_and_role() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("vouch.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let dir = root.path().join("server");
    let port = free_port();
    let server = start(&config, &dir, port);
    let base = format!("https://127.0.0.1:{port}");
    let ca = dir.join("tls/ca.crt");
    let ca = ca.to_str().unwrap();
    let acme_admin = dir.join("tenants/acme/keys/admin.token");
    let acme_admin = acme_admin.to_str().unwrap();
    // `vouch ARGS --server … --ca-cert … --token-file FILE --tenant T`.
    let run = |tenant: &str, token_file: &str, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend([
            "--server",
            &base,
            "--ca-cert",
            ca,
            "--token-file",
            token_file,
            "--tenant",
            tenant,
        ]);
        vouch(&a)
    };

    // Acme's admin mints an operator token for alice; it is printed once.
    let (code, out, err) = run(
        "acme",
        acme_admin,
        &[
            "api-token",
            "create",
            "--name",
            "alice",
            "--role",
            "operator",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let alice = out.trim().to_string();
    assert!(alice.starts_with("vat_"), "{out}");
    assert!(err.contains("operator") && err.contains("acme"), "{err}");
    let alice_file = root.path().join("alice.token");
    std::fs::write(&alice_file, &alice).unwrap();
    let alice_file = alice_file.to_str().unwrap();

    // Listed, by name and role.
    let (code, out, err) = run("acme", acme_admin, &["api-token", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("alice") && out.contains("operator"), "{out}");

    // Alice makes join tokens and entries in acme...
    let (code, out, err) = run("acme", alice_file, &["token", "create", "--ttl", "10m"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("vjt_"), "{out}");
    // ... changes no policy ...
    let policy = root.path().join("p.rego");
    std::fs::write(&policy, vouch_policy::DEFAULT_POLICY).unwrap();
    let (code, _, err) = run(
        "acme",
        alice_file,
        &["policy", "add", "strict", policy.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("forbidden") && err.contains("admin"), "{err}");
    // ... and reads or writes nothing of globex, nor of the default tenant.
    for (tenant, args) in [
        ("globex", &["entry", "list"][..]),
        ("globex", &["token", "create"][..]),
        ("globex", &["workload", "list"][..]),
    ] {
        let (code, _, err) = run(tenant, alice_file, args);
        assert_ne!(code, 0, "{args:?} on {tenant}");
        assert!(err.contains("\"acme\""), "{args:?}: {err}");
    }
    let (code, _, err) = vouch(&[
        "entry",
        "list",
        "--server",
        &base,
        "--ca-cert",
        ca,
        "--token-file",
        alice_file,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("\"acme\""), "{err}");
    // Acme's admin token is not globex's.
    let (code, _, err) = run("globex", acme_admin, &["api-token", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("forbidden"), "{err}");

    // An acme node attests with `--tenant acme` and a join token alice made; the result names
    // acme: `vouch verify --tenant acme` with acme's key set takes it, `--tenant globex` or
    // globex's key set do not.
    let (code, join, err) = run("acme", alice_file, &["token", "create"]);
    assert_eq!(code, 0, "{err}");
    let adir = root.path().join("agent");
    let (code, out, err) = vouch(&[
        "attest",
        "--server",
        &base,
        "--tenant",
        "acme",
        "--ca-cert",
        ca,
        "--agent-dir",
        adir.to_str().unwrap(),
        "--join-token",
        join.trim(),
        "--workload",
        "web",
        "--exe",
        "/bin/sh",
        "--result-audience",
        "db",
    ]);
    assert!(code == 0 || code == 1, "{out}{err}");
    let result = adir.join("result.jwt");
    let verify = |tenant_jwks: &str, tenant: &str| {
        vouch(&[
            "verify",
            "--jwks",
            &format!("{base}/t/{tenant_jwks}/.well-known/jwks.json"),
            "--ca-cert",
            ca,
            "--audience",
            "db",
            "--accept-warning",
            "--tenant",
            tenant,
            result.to_str().unwrap(),
        ])
    };
    let (code, out, err) = verify("acme", "acme");
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = verify("acme", "globex");
    assert_eq!(code, 1);
    assert!(
        err.contains("tenant \"acme\"'s, not tenant \"globex\"'s"),
        "{err}"
    );
    let (code, _, _) = verify("globex", "acme");
    assert_eq!(code, 1);

    // Revoked: refused at once.
    let (code, _, err) = run("acme", acme_admin, &["api-token", "revoke", "alice"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run("acme", alice_file, &["token", "create"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("unauthenticated") || err.contains("401"),
        "{err}"
    );
    // A tenant name that is not one.
    let (code, _, err) = run("../acme", acme_admin, &["api-token", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("tenant"), "{err}");

    // `vouch migrate` brings every tenant's store to the current schema.
    drop(server);
    let (code, out, err) = vouch(&[
        "--config",
        config.to_str().unwrap(),
        "migrate",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for t in ["acme", "globex"] {
        assert!(
            out.contains(&format!("tenant {t}'s store")),
            "{t} not migrated: {out}"
        );
    }
}

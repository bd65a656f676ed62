//! `vouch update` against TUF repositories made by python-tuf (the PyPI `tuf` package, an
//! independent producer; tests/data/tuf_repos.py): the good repository verifies and applies,
//! and each attack of the TUF specification is refused with metadata tampered by the script —
//! rollback (timestamp, snapshot, targets), freeze, mix-and-match, arbitrary software, endless
//! data (target and metadata), key compromise below threshold (targets and root) and a wrong
//! key. End to end with a real verifier and agent: the target's digest is published as the
//! reference value, applied, re-attested affirming; the file replaced outside TUF is
//! contraindicated.
//!
//! Needs target/pyenv with `tuf` (scripts/deps.sh --test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vouch_testkit::free_port;

mod common;
use common::spawn_server;

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

/// The repositories: OUT/root.json, OUT/<scenario>/, OUT/expected.json.
fn make_repos(out: &Path) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("target/pyenv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/deps.sh --test` (it installs the PyPI tuf package)",
        python.display()
    );
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tuf_repos.py"))
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tuf_repos.py failed (is tuf installed in target/pyenv? scripts/deps.sh --test): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("expected.json")).unwrap()).unwrap()
}

/// The cache generation `current` points to (where the verified metadata of the last
/// successful run is).
fn state(cache: &Path) -> PathBuf {
    cache.join(std::fs::read_link(cache.join("current")).unwrap())
}

struct Repos {
    dir: PathBuf,
}

impl Repos {
    /// The repositories made in `d/repos` by [`make_repos`], and what it expects of them.
    fn make(d: &Path) -> (Self, serde_json::Value) {
        let r = Self {
            dir: d.join("repos"),
        };
        let expected = make_repos(&r.dir);
        (r, expected)
    }
    fn root(&self) -> String {
        self.dir.join("root.json").display().to_string()
    }
    fn repo(&self, s: &str) -> String {
        self.dir.join(s).display().to_string()
    }
    /// `vouch update check` of scenario `s` with the cache `cache`.
    fn check(&self, s: &str, cache: &Path) -> (i32, String, String) {
        vouch(&[
            "--json",
            "update",
            "check",
            "--repo",
            &self.repo(s),
            "--root",
            &self.root(),
            "--target",
            "app.conf",
            "--cache",
            cache.to_str().unwrap(),
        ])
    }
    /// `vouch update apply` of `target` from scenario `s` with the cache `cache`, to `to`.
    fn apply(&self, s: &str, target: &str, cache: &Path, to: &Path) -> (i32, String, String) {
        vouch(&[
            "update",
            "apply",
            "--repo",
            &self.repo(s),
            "--root",
            &self.root(),
            "--target",
            target,
            "--cache",
            cache.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ])
    }
    fn refused(&self, s: &str, cache: &Path, why: &str) {
        let (code, out, err) = self.check(s, cache);
        assert_eq!(code, 1, "{s} must be refused: {out} {err}");
        assert!(err.contains(why), "{s}: expected {why:?} in {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["refused"].as_str().unwrap().contains(why), "{out}");
    }
}

#[test]
fn tuf_attacks_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());

    // Good: version 1, then version 2 with the same cache (as two runs on one device).
    let cache = d.path().join("cache");
    let (code, out, err) = r.check("v1", &cache);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sha256"], expected["v1"]["sha256"]);
    assert_eq!(v["length"], expected["v1"]["length"]);
    assert_eq!(v["versions"]["targets"], 1);
    let (code, out, err) = r.check("v2", &cache);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sha256"], expected["v2"]["sha256"]);
    assert_eq!(v["hashes"]["sha256"], expected["v2"]["sha256"]);
    assert_eq!(v["versions"]["timestamp"], 2);

    // Rollback, after version 2 was seen (kept in the cache between runs): the old
    // repository itself, a new timestamp naming the old snapshot, a new snapshot naming the
    // old targets.
    r.refused(
        "rollback_timestamp",
        &cache,
        "version 1 of timestamp metadata when we had previously fetched version 2",
    );
    r.refused(
        "rollback_snapshot",
        &cache,
        "Snapshot version 1 in timestamp 3 is less than 2",
    );
    r.refused(
        "rollback_targets",
        &cache,
        "Role targets.json version 2 in snapshot 2 is greater than version 1 in snapshot 3",
    );
    // The same rollback is accepted by a device that never saw version 2: the protection is
    // the cache, not something else in the files.
    let (code, _, err) = r.check("rollback_timestamp", &d.path().join("fresh"));
    assert_eq!(code, 0, "{err}");

    let fresh = |n: &str| d.path().join(format!("cache-{n}"));
    // Freeze by setting the clock back: the cache keeps the latest time seen. (The clock is
    // not ours to change; the kept time is moved ahead instead.)
    let ahead = fresh("clock");
    let (code, _, err) = r.check("v2", &ahead);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        state(&ahead).join("latest_known_time.json"),
        "\"2999-01-01T00:00:00Z\"",
    )
    .unwrap();
    let (code, _, err) = r.check("v2", &ahead);
    assert_eq!(code, 1);
    assert!(err.contains("stepped backward"), "{err}");
    // Freeze: a validly signed but expired timestamp.
    r.refused("freeze", &fresh("freeze"), "timestamp metadata is expired");
    // Mix-and-match: the snapshot's targets version is not the one served.
    r.refused(
        "mix_and_match",
        &fresh("mix"),
        "targets metadata version mismatch: fetched 1, expected 2",
    );
    // Endless data: metadata over the bound.
    r.refused(
        "endless_metadata",
        &fresh("endless"),
        "Maximum size 16384 (specified by max_timestamp_size argument) exceeded",
    );
    // Key compromise below threshold: targets signed by 1 of the 2 keys needed; a new root
    // signed by 1 of the 2 root keys needed (with a key of the attacker's).
    r.refused(
        "targets_below_threshold",
        &fresh("tbt"),
        "Signature threshold of 2 not met for role targets (1 valid signatures)",
    );
    r.refused(
        "root_below_threshold",
        &fresh("rbt"),
        "Signature threshold of 2 not met for role root (1 valid signatures)",
    );
    // Wrong keys: two signatures, by keys the root does not name.
    r.refused(
        "wrong_key",
        &fresh("wk"),
        "Signature threshold of 2 not met for role targets (0 valid signatures)",
    );
    // A proper root rotation (2 of 3 old and new keys) is followed.
    let (code, out, err) = r.check("rotated", &fresh("rot"));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["versions"]["root"], 2);

    // Root rollback: after a root that retired the old timestamp and snapshot keys (say
    // compromised), the old repository (root 1 only, signed by the old keys) is refused: the
    // next run starts from the root kept in the cache, not the older pinned one.
    let rot = fresh("rotated-online");
    let (code, _, err) = r.check("v1", &rot);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = r.check("rotated_online_keys", &rot);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["versions"]["root"], 2);
    r.refused(
        "v1",
        &rot,
        "Signature threshold of 1 not met for role timestamp (0 valid signatures)",
    );
    // A cache whose root is not root metadata is a local error (exit 2), not a fallback.
    std::fs::write(state(&rot).join("root.json"), "{}").unwrap();
    let (code, _, err) = r.check("v1", &rot);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("root.json is not metadata of its role"),
        "{err}"
    );

    // Arbitrary software (one flipped byte) and endless data (a longer target): the metadata
    // verifies, the download is refused, and the installed file is left as it was.
    let dev = d.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let installed = dev.join("app.conf");
    std::fs::write(&installed, "the old version\n").unwrap();
    for (s, why) in [
        ("arbitrary", "Hash mismatch"),
        (
            "endless_target",
            "Maximum size 37 (specified by targets.json) exceeded",
        ),
    ] {
        let (code, _, err) = r.check(s, &fresh(s));
        assert_eq!(code, 0, "{s}: the metadata itself is valid: {err}");
        let (code, _, err) = r.apply(s, "app.conf", &fresh(s), &installed);
        assert_eq!(code, 1, "{s} must be refused");
        assert!(err.contains(why), "{s}: {err}");
        assert_eq!(std::fs::read(&installed).unwrap(), b"the old version\n");
        assert_eq!(
            std::fs::read_dir(&dev).unwrap().count(),
            1,
            "{s} left a file"
        );
    }

    // A target the repository does not list.
    let (code, _, err) = vouch(&[
        "update",
        "check",
        "--repo",
        &r.repo("v2"),
        "--root",
        &r.root(),
        "--target",
        "other.conf",
        "--cache",
        fresh("other").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not in the repository"), "{err}");
    // A flipped byte in the pinned root is a local error, not an update.
    let bad_root = d.path().join("bad-root.json");
    let mut b = std::fs::read(r.dir.join("root.json")).unwrap();
    let i = b.windows(6).position(|w| w == b"\"sig\":").unwrap() + 10;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&bad_root, &b).unwrap();
    let (code, _, err) = vouch(&[
        "update",
        "check",
        "--repo",
        &r.repo("v2"),
        "--root",
        bad_root.to_str().unwrap(),
        "--target",
        "app.conf",
        "--cache",
        fresh("badroot").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("trusted"), "{err}");
}

#[test]
fn update_is_reattested_and_affirming_only_with_the_tuf_target() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());

    let dir = d.path().join("server");
    let port = free_port();
    let _server = spawn_server(&dir, port);
    let data_dir = dir.to_str().unwrap();

    // The device: its workload's executable is registered; app.conf comes from TUF.
    let dev = d.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let exe = dev.join("app.bin");
    std::fs::write(&exe, "binary of app").unwrap();
    let exe_sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(&exe).unwrap()))
    };
    let (code, _, err) = vouch(&[
        "refvalue",
        "add",
        "executable",
        "app",
        &exe_sha,
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 0, "{err}");
    let installed = dev.join("app.conf");
    let path = installed.to_str().unwrap();
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
    let token: serde_json::Value = serde_json::from_str(&out).unwrap();

    let server = format!("https://127.0.0.1:{port}");
    let ca = dir.join("tls/ca.crt");
    let agent_dir = d.path().join("agent");
    let agent_flags = |join: bool| -> Vec<String> {
        let mut v = vec![
            "--server".to_string(),
            server.clone(),
            "--ca-cert".into(),
            ca.display().to_string(),
            "--agent-dir".into(),
            agent_dir.display().to_string(),
            "--workload".into(),
            "app".into(),
            "--exe".into(),
            exe.display().to_string(),
        ];
        if join {
            v.push("--join-token".into());
            v.push(token["token"].as_str().unwrap().to_string());
        }
        v
    };
    let publish = |s: &str| {
        let (code, out, err) = vouch(&[
            "update",
            "publish",
            "--repo",
            &r.repo(s),
            "--root",
            &r.root(),
            "--target",
            "app.conf",
            "--cache",
            d.path().join("operator-cache").to_str().unwrap(),
            "--path",
            path,
            "--workload",
            "app",
            "--data-dir",
            data_dir,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let apply = |s: &str, join: bool| {
        let mut args: Vec<String> = [
            "--json",
            "update",
            "apply",
            "--repo",
            &r.repo(s),
            "--root",
            &r.root(),
            "--target",
            "app.conf",
            "--cache",
            d.path().join("device-cache").to_str().unwrap(),
            "--to",
            path,
            "--attest",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(agent_flags(join));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        vouch(&a)
    };
    let attest = || {
        let mut args: Vec<String> = vec!["--json".into(), "attest".into()];
        args.extend(agent_flags(false));
        args.extend(["--file".to_string(), path.to_string()]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        vouch(&a)
    };
    let refvalues = || {
        let (code, out, err) = vouch(&["--json", "refvalue", "list", "--data-dir", data_dir]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "file" && r["key"] == path)
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    // Version 1: published by the operator, applied on the device, re-attested affirming.
    let out = publish("v1");
    assert!(
        out.contains(expected["v1"]["sha256"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(
        refvalues(),
        vec![expected["v1"]["sha256"].as_str().unwrap()]
    );
    let (code, out, err) = apply("v1", true);
    assert_eq!(code, 0, "{out} {err}");
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["status"], "affirming", "{out}");
    assert_eq!(
        hex_sha256(&installed),
        expected["v1"]["sha256"].as_str().unwrap()
    );

    // The operator cannot be made to publish a digest the repository's keys did not sign.
    let (code, _, err) = vouch(&[
        "update",
        "publish",
        "--repo",
        &r.repo("targets_below_threshold"),
        "--root",
        &r.root(),
        "--target",
        "app.conf",
        "--cache",
        d.path().join("operator-cache-2").to_str().unwrap(),
        "--path",
        path,
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("Signature threshold of 2 not met"), "{err}");
    assert_eq!(
        refvalues(),
        vec![expected["v1"]["sha256"].as_str().unwrap()]
    );

    // Version 2 published: the reference value is replaced, so the node still running
    // version 1 is contraindicated until it applies version 2.
    publish("v2");
    assert_eq!(
        refvalues(),
        vec![expected["v2"]["sha256"].as_str().unwrap()]
    );
    let (code, out, _) = attest();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("contraindicated"), "{out}");
    let (code, out, err) = apply("v2", false);
    assert_eq!(code, 0, "{out} {err}");
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["status"], "affirming", "{out}");

    // A tampered update is refused before anything is written or attested.
    let (code, _, err) = apply("arbitrary", false);
    assert_eq!(code, 1);
    assert!(err.contains("Hash mismatch"), "{err}");
    assert_eq!(
        hex_sha256(&installed),
        expected["v2"]["sha256"].as_str().unwrap()
    );

    // A node that stops measuring the file is not affirming either (required_file).
    let mut args: Vec<String> = vec!["--json".into(), "attest".into()];
    args.extend(agent_flags(false));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, _) = vouch(&a);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("workload \\\"app\\\" must measure {path}")),
        "{out}"
    );
    let (code, out, err) = vouch(&["--json", "refvalue", "list", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{err}");
    let n = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "required_file")
        .count();
    assert_eq!(n, 1, "published twice, required once: {out}");

    // The file replaced outside TUF: contraindicated, with the path in the reason.
    std::fs::write(&installed, "mode = debug\nbackdoor = on\n").unwrap();
    let (code, out, _) = attest();
    assert_eq!(code, 1, "{out}");
    let res: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["status"], "contraindicated", "{out}");
    assert!(out.contains(path), "{out}");
}

fn hex_sha256(p: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// A small HTTP/1.1 server on loopback (HTTPS with `tls`) serving `root`: `/<scenario>/...` as
/// the files are, and `/forever-target/...` and `/forever-meta/...` as scenario v2 with endless
/// bytes after every target (respectively every metadata file), at most 256 MiB an answer.
fn serve(root: PathBuf, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let (root, tls) = (root.clone(), tls.clone());
            std::thread::spawn(move || match tls {
                None => {
                    let mut c = c;
                    respond(&mut c, &root);
                }
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    let mut s = rustls::StreamOwned::new(conn, c);
                    respond(&mut s, &root);
                    s.conn.send_close_notify();
                    let _ = std::io::Write::flush(&mut s);
                }
            });
        }
    });
    port
}

fn respond(c: &mut (impl std::io::Read + std::io::Write), root: &Path) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) if head.len() < 16 * 1024 => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    let (file, endless) = if let Some(rest) = path.strip_prefix("/forever-target/") {
        (root.join("v2").join(rest), rest.starts_with("targets/"))
    } else if let Some(rest) = path.strip_prefix("/forever-meta/") {
        (root.join("v2").join(rest), rest.starts_with("metadata/"))
    } else {
        (root.join(path.trim_start_matches('/')), false)
    };
    let Ok(body) = std::fs::read(&file) else {
        let _ = c
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if !endless {
        let _ = c.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = c.write_all(&body);
        return;
    }
    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    let _ = c.write_all(&body);
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..4096 {
        if c.write_all(&chunk).is_err() {
            return;
        }
    }
}

#[test]
fn over_http_the_same_checks_hold_and_endless_answers_are_cut() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let port = serve(r.dir.clone(), None);
    let url = |s: &str| format!("http://127.0.0.1:{port}/{s}");
    let root = r.root();
    let run = |s: &str, cache: &str, extra: &[&str]| {
        let c = d.path().join(cache);
        let mut a = vec![
            "update",
            if extra.is_empty() { "check" } else { "apply" },
            "--repo",
        ];
        let u = url(s);
        a.push(&u);
        a.extend(["--root", &root, "--target", "app.conf", "--cache"]);
        a.push(c.to_str().unwrap());
        a.extend(extra);
        vouch(&a)
    };

    let (code, out, err) = run("v2", "c", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(expected["v2"]["sha256"].as_str().unwrap()),
        "{out}"
    );
    // Rollback is caught over HTTP as from a directory.
    let (code, _, err) = run("rollback_timestamp", "c", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("previously fetched version 2"), "{err}");
    // A repository that is not there.
    let (code, _, err) = run("nothing", "c2", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("file not found"), "{err}");

    // A target that never ends: cut at its signed length, nothing written.
    let to = d.path().join("app.conf");
    let to_s = to.to_str().unwrap().to_string();
    let (code, _, err) = run("forever-target", "c3", &["--to", &to_s]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Maximum size 37 (specified by targets.json) exceeded"),
        "{err}"
    );
    assert!(!to.exists());
    // Metadata that never ends: cut at the timestamp's bound.
    let (code, _, err) = run("forever-meta", "c4", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Maximum size 16384 (specified by max_timestamp_size argument) exceeded"),
        "{err}"
    );
    // The good target over HTTP, applied.
    let (code, _, err) = run("v2", "c5", &["--to", &to_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(hex_sha256(&to), expected["v2"]["sha256"].as_str().unwrap());
}

#[test]
fn over_https_the_repository_ca_is_required() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let ca = d.path().join("repo-ca.pem");
    let port = serve_https(r.dir.clone(), &ca);
    let repo = format!("https://127.0.0.1:{port}/v2");
    let root = r.root();
    let check = |cache: &str, ca: Option<&Path>| {
        let c = d.path().join(cache);
        let mut a = vec![
            "update".to_string(),
            "check".into(),
            "--repo".into(),
            repo.clone(),
            "--root".into(),
            root.clone(),
            "--target".into(),
            "app.conf".into(),
            "--cache".into(),
            c.display().to_string(),
        ];
        if let Some(ca) = ca {
            a.extend(["--repo-ca".to_string(), ca.display().to_string()]);
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        vouch(&a)
    };
    let (code, out, err) = check("a", Some(&ca));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(expected["v2"]["sha256"].as_str().unwrap()),
        "{out}"
    );
    // Without the repository's CA (the system's roots): the TLS handshake fails.
    let (code, _, err) = check("b", None);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    // Another CA (the same name, another key): refused too.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other_ca = d.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let (code, _, err) = check("c", Some(&other_ca));
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid peer certificate: BadSignature"),
        "{err}"
    );
}

/// [`serve`] over TLS, with a new self-signed certificate for 127.0.0.1 written to `ca` (PEM).
fn serve_https(root: PathBuf, ca: &Path) -> u16 {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(ca, ck.cert.pem()).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
    serve(root, Some(std::sync::Arc::new(cfg)))
}

/// A loopback HTTP/1.1 server for slow retrieval, serving scenario v2 of `root` at a pace set
/// by the path's first segment: `/fast/...` at once; `/trickle-meta/...` metadata one byte a
/// second; `/trickle-target/...` targets one byte a second; `/slow-meta/...` metadata 100
/// bytes a second (above a 64 bytes/s minimum rate, but longer than a 2 s request deadline);
/// `/late/...` every answer 700 ms late (each in time, the run as a whole too long);
/// `/stall-target/...` a target's headers, then nothing.
fn serve_slow(root: PathBuf) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                let _ = c.set_nodelay(true);
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(1) if head.len() < 16 * 1024 => head.push(b[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let mut parts = path.trim_start_matches('/').splitn(2, '/');
                let mode = parts.next().unwrap_or("").to_string();
                let rest = parts.next().unwrap_or("").to_string();
                let meta = rest.starts_with("metadata/");
                if mode == "late" {
                    std::thread::sleep(Duration::from_millis(700));
                }
                let Ok(body) = std::fs::read(root.join("v2").join(&rest)) else {
                    let _ = c.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                };
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let pace = match mode.as_str() {
                    "trickle-meta" if meta => Some((1, Duration::from_secs(1))),
                    "trickle-target" if !meta => Some((1, Duration::from_secs(1))),
                    "slow-meta" if meta => Some((10, Duration::from_millis(100))),
                    "stall-target" if !meta => {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    _ => None,
                };
                let Some((n, every)) = pace else {
                    let _ = c.write_all(&body);
                    return;
                };
                // At most 60 s a connection; a client that hung up ends it at once.
                for piece in body.chunks(n).take(600) {
                    if c.write_all(piece).is_err() {
                        return;
                    }
                    std::thread::sleep(every);
                }
            });
        }
    });
    port
}

/// Every file under `dir` (a symlink as its target) but the latest time seen, which every run
/// moves on by design.
fn cache_state(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_symlink() {
                m.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                );
            } else if ft.is_dir() {
                todo.push(p);
            } else if !rel.ends_with("latest_known_time.json") {
                m.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

#[test]
fn slow_retrieval_is_cut_within_a_bound_and_nothing_changes() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let port = serve_slow(r.dir.clone());
    let root = r.root();
    let dev = d.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let installed = dev.join("app.conf");
    std::fs::write(&installed, "the old version\n").unwrap();
    let cache = d.path().join("cache");
    let run = |mode: &str, total: &str, apply: bool| {
        let repo = format!("http://127.0.0.1:{port}/{mode}");
        let mut a = vec![
            "update",
            if apply { "apply" } else { "check" },
            "--repo",
            &repo,
            "--root",
            &root,
            "--target",
            "app.conf",
            "--cache",
            cache.to_str().unwrap(),
            "--request-timeout",
            "2",
            "--update-timeout",
            total,
            "--min-rate",
            "64",
            "--rate-window",
            "1",
        ];
        if apply {
            a.extend(["--to", installed.to_str().unwrap()]);
        }
        let t = Instant::now();
        let (code, _, err) = vouch(&a);
        (code, err, t.elapsed())
    };

    // The device has version 1 (from the repository directory) and its cache.
    let (code, _, err) = r.apply("v1", "app.conf", &cache, &installed);
    assert_eq!(code, 0, "{err}");
    let before = cache_state(&cache);
    assert!(!before.is_empty());
    let v1 = std::fs::read(&installed).unwrap();

    for (mode, total, apply, why, bound) in [
        // Metadata trickled a byte a second: under the minimum rate after the first window.
        (
            "trickle-meta",
            "30",
            false,
            "below --min-rate 64 bytes/s",
            4.0,
        ),
        // The target trickled: the metadata verifies, the download is cut.
        (
            "trickle-target",
            "30",
            true,
            "below --min-rate 64 bytes/s",
            4.0,
        ),
        // Headers, then a stalled target body.
        ("stall-target", "30", true, "0 bytes in 1 s", 4.0),
        // Fast enough for the rate, too slow for the request deadline.
        (
            "slow-meta",
            "30",
            false,
            "not received within --request-timeout 2 s",
            5.0,
        ),
        // Each answer in time, the run as a whole past its deadline.
        (
            "late",
            "2",
            true,
            "the update was not done within --update-timeout 2 s",
            5.0,
        ),
    ] {
        let (code, err, took) = run(mode, total, apply);
        assert_eq!(code, 1, "{mode} must be refused: {err}");
        assert!(
            err.contains("slow retrieval") && err.contains(why),
            "{mode}: expected {why:?} in {err}"
        );
        assert!(
            took.as_secs_f64() < bound,
            "{mode}: cut after {took:?}, bound {bound} s"
        );
        eprintln!("{mode}: refused after {took:?}");
        assert_eq!(
            cache_state(&cache),
            before,
            "{mode}: the cache changed on a failed run"
        );
        assert_eq!(std::fs::read(&installed).unwrap(), v1, "{mode}");
        assert_eq!(
            std::fs::read_dir(&dev).unwrap().count(),
            1,
            "{mode} left a file"
        );
    }
    // Two runs on one cache at once: the second is a local error, the first goes on.
    let repo = format!("http://127.0.0.1:{port}/trickle-meta");
    let first = Command::new(VOUCH)
        .args([
            "update",
            "check",
            "--repo",
            &repo,
            "--root",
            &root,
            "--target",
            "app.conf",
            "--cache",
            cache.to_str().unwrap(),
            "--rate-window",
            "3",
        ])
        .env_remove("VOUCH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (code, err, _) = run("fast", "30", false);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another vouch update is using"), "{err}");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slow retrieval"));
    assert_eq!(cache_state(&cache), before);

    // The same server at full speed: version 2 applies (the limits cut only slow answers).
    let (code, err, _) = run("fast", "30", true);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        hex_sha256(&installed),
        expected["v2"]["sha256"].as_str().unwrap()
    );
}

/// One flipped hex digit in the first signature of a metadata file.
fn flip_sig(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.windows(7).position(|w| w == b"\"sig\":\"").unwrap() + 10;
    b[i] = if b[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_cache_that_does_not_verify_from_the_pinned_root_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let cache = d.path().join("cache");
    let (code, _, err) = r.check("v1", &cache);
    assert_eq!(code, 0, "{err}");
    let v1_targets = std::fs::read(state(&cache).join("targets.json")).unwrap();
    let (code, _, err) = r.check("v2", &cache);
    assert_eq!(code, 0, "{err}");
    // One generation, the one `current` names; nothing else left behind.
    let gen_dirs: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gen_dirs, vec!["gen-2".to_string()], "{gen_dirs:?}");
    let good = cache_state(&cache);
    let restore = || {
        let _ = std::fs::remove_file(cache.join("current"));
        std::os::unix::fs::symlink("gen-2", cache.join("current")).unwrap();
        let st = state(&cache);
        for f in [
            "root.json",
            "timestamp.json",
            "snapshot.json",
            "targets.json",
        ] {
            std::fs::write(st.join(f), &good[&format!("gen-2/{f}")]).unwrap();
        }
        let _ = std::fs::remove_dir_all(st.join("roots"));
        std::fs::create_dir_all(st.join("roots")).unwrap();
        std::fs::write(
            st.join("latest_known_time.json"),
            "\"2001-01-01T00:00:00Z\"",
        )
        .unwrap();
        assert_eq!(cache_state(&cache), good);
    };
    let evil_root = std::fs::read(r.dir.join("evil_root.json")).unwrap();
    type Tamper<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Tamper, &str, &str)> = vec![
        // A flipped byte in the cached timestamp: tough skipped it (and the rollback check it
        // is kept for), so the older timestamp would pass.
        (
            "timestamp flipped",
            Box::new(|st| flip_sig(&st.join("timestamp.json"))),
            "rollback_timestamp",
            "timestamp.json does not verify under root version 1: \
             Signature threshold of 1 not met for role timestamp (0 valid signatures)",
        ),
        (
            "snapshot flipped",
            Box::new(|st| flip_sig(&st.join("snapshot.json"))),
            "rollback_targets",
            "snapshot.json does not verify under root version 1",
        ),
        (
            "targets flipped",
            Box::new(|st| flip_sig(&st.join("targets.json"))),
            "v2",
            "targets.json does not verify under root version 1: \
             Signature threshold of 2 not met for role targets (1 valid signatures)",
        ),
        // An older targets, validly signed: not the one the cached snapshot names.
        (
            "targets older",
            Box::new(|st| std::fs::write(st.join("targets.json"), &v1_targets).unwrap()),
            "v2",
            "targets.json is version 1, the cached snapshot names version 2",
        ),
        // A root of the attacker's, signed by its own key only, as tough's root.json (the
        // root `vouch update` started from before this check: the evil repository passed)...
        (
            "root self-signed",
            Box::new(|st| std::fs::write(st.join("root.json"), &evil_root).unwrap()),
            "evil",
            "root.json (version 2) is another root than the one the chain from the pinned root ends in \
             (version 1)",
        ),
        // ...and as the next link of the chain, root.json with it.
        (
            "chain self-signed",
            Box::new(|st| {
                std::fs::write(st.join("roots/2.root.json"), &evil_root).unwrap();
                std::fs::write(st.join("root.json"), &evil_root).unwrap();
            }),
            "evil",
            "roots/2.root.json is not in the chain from the pinned root: not signed by root \
             version 1: Signature threshold of 2 not met for role root (0 valid signatures)",
        ),
        (
            "time garbled",
            Box::new(|st| std::fs::write(st.join("latest_known_time.json"), "\"soon\"").unwrap()),
            "v2",
            "latest_known_time.json is not a time",
        ),
        (
            "current elsewhere",
            Box::new(|_| {
                std::fs::remove_file(cache.join("current")).unwrap();
                std::os::unix::fs::symlink("../elsewhere", cache.join("current")).unwrap();
            }),
            "v2",
            "points to ../elsewhere, not a generation of this cache",
        ),
    ];
    for (what, tamper, repo, why) in &cases {
        restore();
        tamper(&state_or_cache(&cache));
        let after_tamper = cache_state(&cache);
        let (code, _, err) = r.check(repo, &cache);
        assert_eq!(code, 2, "{what}: must be a local error: {err}");
        assert!(
            err.contains(why)
                && (what == &"current elsewhere"
                    || err.contains("does not verify from the pinned root")),
            "{what}: expected {why:?} in {err}"
        );
        assert!(err.contains("--reset-cache"), "{what}: {err}");
        // Refused and left as it was (for an operator to look at).
        assert_eq!(cache_state(&cache), after_tamper, "{what}");
    }
    // The cache untouched, the same runs are refused for what they are (or pass).
    restore();
    r.refused(
        "rollback_timestamp",
        &cache,
        "version 1 of timestamp metadata when we had previously fetched version 2",
    );
    r.refused(
        "evil",
        &cache,
        "Signature threshold of 1 not met for role timestamp (0 valid signatures)",
    );
    // --reset-cache discards a cache that does not verify and starts from the pinned root.
    flip_sig(&state(&cache).join("timestamp.json"));
    let (code, out, err) = vouch(&[
        "--json",
        "update",
        "check",
        "--repo",
        &r.repo("v2"),
        "--root",
        &r.root(),
        "--target",
        "app.conf",
        "--cache",
        cache.to_str().unwrap(),
        "--reset-cache",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("discarded (--reset-cache)"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sha256"], expected["v2"]["sha256"]);
    assert_eq!(
        std::fs::read_link(cache.join("current")).unwrap(),
        Path::new("gen-1")
    );

    // A cache in the flat layout of earlier versions (tough's files in the cache directory)
    // is verified the same way, then moved into a generation.
    let flat = d.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for f in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
    ] {
        std::fs::write(flat.join(f), &good[&format!("gen-2/{f}")]).unwrap();
    }
    flip_sig(&flat.join("snapshot.json"));
    let (code, _, err) = r.check("v2", &flat);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("snapshot.json does not verify"), "{err}");
    std::fs::write(flat.join("snapshot.json"), &good["gen-2/snapshot.json"]).unwrap();
    r.refused(
        "rollback_timestamp",
        &flat,
        "version 1 of timestamp metadata when we had previously fetched version 2",
    );
    let (code, _, err) = r.check("v2", &flat);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_link(flat.join("current")).unwrap(),
        Path::new("gen-1")
    );
    assert!(!flat.join("timestamp.json").exists());

    // A root rotation is kept as a chain from the pinned root, and the next run starts from
    // its end (the chain re-verified).
    let rot = d.path().join("rot");
    for s in ["v1", "rotated_online_keys", "rotated_online_keys"] {
        let (code, _, err) = r.check(s, &rot);
        assert_eq!(code, 0, "{s}: {err}");
    }
    assert!(state(&rot).join("roots/2.root.json").exists());
    r.refused(
        "v1",
        &rot,
        "Signature threshold of 1 not met for role timestamp (0 valid signatures)",
    );
    // The chain's link removed: root.json (version 2) no longer follows from the pinned root.
    std::fs::remove_file(state(&rot).join("roots/2.root.json")).unwrap();
    let (code, _, err) = r.check("rotated_online_keys", &rot);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("root.json (version 2) is another root than the one the chain from the pinned root ends in (version 1)"),
        "{err}"
    );
}

/// `state(cache)` when `current` points into the cache, else the cache itself.
fn state_or_cache(cache: &Path) -> PathBuf {
    let s = state(cache);
    if s.exists() { s } else { cache.to_path_buf() }
}

#[test]
fn delegations_are_followed_as_tuf_specifies_and_as_python_tuf_does() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let good = &expected["deleg"];
    let oracle = &expected["python_tuf"];
    let check = |repo: &str, target: &str| {
        let cache = d
            .path()
            .join(format!("c-{repo}-{}", target.replace('/', "_")));
        vouch(&[
            "--json",
            "update",
            "check",
            "--repo",
            &r.repo(repo),
            "--root",
            &r.root(),
            "--target",
            target,
            "--cache",
            cache.to_str().unwrap(),
        ])
    };
    let accepted = |t: &str| Ok::<&str, &str>(good[t].as_str().unwrap());
    let not_found = Err("is not in the repository's targets metadata");
    let (below, wrong) = (
        Err("Signature threshold of 2 not met for role targets (1 valid signatures)"),
        Err("Signature threshold of 1 not met for role targets (0 valid signatures)"),
    );
    let across = Err("is listed by a role that is not delegated its path in TUF's path matching");
    let targets = [
        "firmware/fw.bin",
        "apps/app.conf",
        "apps/beta-app.conf",
        "apps/extra.conf",
        "firmware/evil.bin",
        "apps/sub/evil.conf",
    ];
    // What vouch must do for each target of each repository.
    let cases: Vec<(&str, [Result<&str, &str>; 6])> = vec![
        // firmware/fw.bin from "firmware" (2 of 3), not the catch-all's shadowing copy;
        // apps/beta-app.conf from the nested "apps-beta"; apps/extra.conf from "catchall"
        // ("apps" does not terminate); firmware/evil.bin never from "catchall" ("firmware"
        // terminates).
        (
            "deleg",
            [
                accepted("firmware/fw.bin"),
                accepted("apps/app.conf"),
                accepted("apps/beta-app.conf"),
                accepted("apps/extra.conf"),
                not_found,
                not_found,
            ],
        ),
        // A delegated role below its threshold, or signed by a key its delegation does not
        // name: tough refuses the whole repository (python-tuf only the targets under that
        // role: stricter, never looser).
        ("deleg_below_threshold", [below; 6]),
        ("deleg_wrong_key", [wrong; 6]),
        // "apps" lists firmware/evil.bin, outside its paths.
        (
            "deleg_outside_paths",
            [
                accepted("firmware/fw.bin"),
                accepted("apps/app.conf"),
                accepted("apps/beta-app.conf"),
                accepted("apps/extra.conf"),
                not_found,
                not_found,
            ],
        ),
        // "apps" (apps/*) lists apps/sub/evil.conf: tough's glob lets `*` match '/', the
        // guard refuses it as python-tuf does.
        (
            "deleg_across_separator",
            [
                accepted("firmware/fw.bin"),
                accepted("apps/app.conf"),
                accepted("apps/beta-app.conf"),
                accepted("apps/extra.conf"),
                not_found,
                across,
            ],
        ),
    ];
    assert_ne!(good["firmware/fw.bin"], expected["evil"]["sha256"]);
    for (repo, want) in &cases {
        for (t, want) in targets.iter().zip(want) {
            let (code, out, err) = check(repo, t);
            let py = &oracle[repo][t];
            match want {
                Ok(sha) => {
                    assert_eq!(code, 0, "{repo} {t}: {err}");
                    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                    assert_eq!(v["sha256"], *sha, "{repo} {t}");
                }
                Err(why) => {
                    assert_eq!(code, 1, "{repo} {t} must be refused: {out}");
                    assert!(err.contains(why), "{repo} {t}: expected {why:?} in {err}");
                }
            }
            // Never looser than python-tuf's own client on the same repository: what vouch
            // accepts, ngclient finds with the same sha256.
            if code == 0 {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(
                    py["sha256"], v["sha256"],
                    "{repo} {t}: python-tuf says {py}"
                );
            } else {
                eprintln!("{repo} {t}: vouch refused; python-tuf: {py}");
            }
        }
    }
    // python-tuf's verdicts on the attacks, as recorded (the reference is not vacuous).
    assert_eq!(oracle["deleg"]["firmware/evil.bin"]["error"], "not found");
    assert_eq!(
        oracle["deleg_across_separator"]["apps/sub/evil.conf"]["error"],
        "not found"
    );
    assert!(
        oracle["deleg_below_threshold"]["firmware/fw.bin"]["error"]
            .as_str()
            .unwrap()
            .contains("signed by 1/2 keys")
    );

    // Applied end to end: targets in directories (consistent snapshots: dir/HASH.name), one
    // from a nested delegation.
    let dev = d.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for t in ["firmware/fw.bin", "apps/beta-app.conf"] {
        let to = dev.join(t.replace('/', "_"));
        let (code, _, err) = r.apply("deleg", t, &d.path().join("apply-cache"), &to);
        assert_eq!(code, 0, "{t}: {err}");
        assert_eq!(hex_sha256(&to), good[t].as_str().unwrap(), "{t}");
    }
    // The stored firmware with one byte flipped: refused, nothing written.
    let fw_sha = good["firmware/fw.bin"].as_str().unwrap();
    let stored = r
        .dir
        .join(format!("deleg/targets/firmware/{fw_sha}.fw.bin"));
    let mut b = std::fs::read(&stored).unwrap();
    b[0] ^= 1;
    std::fs::write(&stored, &b).unwrap();
    let to = dev.join("fw2.bin");
    let (code, _, err) = r.apply(
        "deleg",
        "firmware/fw.bin",
        &d.path().join("apply-cache-2"),
        &to,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the metadata says 13 bytes with sha256 {fw_sha}")),
        "{err}"
    );
    assert!(!to.exists());
    assert_eq!(std::fs::read_dir(&dev).unwrap().count(), 2);
}

#[test]
fn consistent_snapshots_on_and_off_over_https_with_a_pinned_ca() {
    let d = tempfile::tempdir().unwrap();
    let (r, expected) = Repos::make(d.path());
    let ca = d.path().join("repo-ca.pem");
    let port = serve_https(r.dir.clone(), &ca);
    let dev = d.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let apply = |repo: &str, root: &Path, target: &str, to: &Path| {
        let url = format!("https://127.0.0.1:{port}/{repo}");
        let cache = d
            .path()
            .join(format!("c-{repo}-{}", target.replace('/', "_")));
        vouch(&[
            "--json",
            "update",
            "apply",
            "--repo",
            &url,
            "--repo-ca",
            ca.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--target",
            target,
            "--cache",
            cache.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ])
    };
    let plain_root = r.dir.join("root_plain.json");
    let root = r.dir.join("root.json");
    // Off: timestamp.json, snapshot.json, targets.json and the targets under their own names.
    // On: N.snapshot.json, N.targets.json, N.role.json and dir/HASH.name.
    for (repo, root, target, sha) in [
        ("plain", &plain_root, "app.conf", &expected["v2"]["sha256"]),
        (
            "plain",
            &plain_root,
            "firmware/fw.bin",
            &expected["deleg"]["firmware/fw.bin"],
        ),
        ("v2", &root, "app.conf", &expected["v2"]["sha256"]),
        (
            "deleg",
            &root,
            "apps/beta-app.conf",
            &expected["deleg"]["apps/beta-app.conf"],
        ),
    ] {
        let to = dev.join(format!("{repo}-{}", target.replace('/', "_")));
        let (code, out, err) = apply(repo, root, target, &to);
        assert_eq!(code, 0, "{repo} {target}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sha256"], *sha, "{repo} {target}");
        assert_eq!(hex_sha256(&to), sha.as_str().unwrap(), "{repo} {target}");
    }
    // The cache of one root used with the other pinned: a local error, not a fallback.
    let to = dev.join("mixed");
    let (code, _, err) = apply("v2", &plain_root, "app.conf", &to);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("root.json (version 1) is another root than the one the chain"),
        "{err}"
    );
    assert!(!to.exists());
    // Off, a target rewritten in place (one byte): refused, nothing written.
    let stored = r.dir.join("plain/targets/firmware/fw.bin");
    let mut b = std::fs::read(&stored).unwrap();
    b[3] ^= 1;
    std::fs::write(&stored, &b).unwrap();
    let (code, _, err) = apply("plain", &plain_root, "firmware/fw.bin", &to);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Hash mismatch"), "{err}");
    assert!(!to.exists());
}

/// A cached file that is not a regular file, as a local attacker could leave one: a FIFO (its
/// open would block the run for ever) and a symlink to `/dev/zero` (its size says 0, its read
/// never ends). Each is refused at once (exit 2, named), not read; the cache is left as it is.
#[test]
fn cache_files_that_are_not_regular_files_are_refused_unread() {
    use std::os::unix::fs::FileTypeExt as _;
    let d = tempfile::tempdir().unwrap();
    let (r, _) = Repos::make(d.path());
    let cache = d.path().join("cache");
    let (code, _, err) = r.check("v1", &cache);
    assert_eq!(code, 0, "{err}");
    let st = state(&cache);
    let run = |what: &str| -> (i32, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args([
                "update",
                "check",
                "--repo",
                &r.repo("v2"),
                "--root",
                &r.root(),
                "--target",
                "app.conf",
                "--cache",
                cache.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                return (status.code().unwrap_or(-1), err);
            }
            if start.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: vouch update still running after 20 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // A FIFO in place of the cached timestamp.
    let ts = st.join("timestamp.json");
    let good_ts = std::fs::read(&ts).unwrap();
    std::fs::remove_file(&ts).unwrap();
    let c = std::ffi::CString::new(ts.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, err) = run("fifo");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("timestamp.json is not a regular file"),
        "{err}"
    );
    assert!(
        std::fs::symlink_metadata(&ts)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    std::fs::remove_file(&ts).unwrap();
    std::fs::write(&ts, &good_ts).unwrap();
    // A symlink to /dev/zero in place of the cached snapshot.
    let snap = st.join("snapshot.json");
    std::fs::remove_file(&snap).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &snap).unwrap();
    let (code, err) = run("symlink to /dev/zero");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("snapshot.json is a symlink"), "{err}");
}

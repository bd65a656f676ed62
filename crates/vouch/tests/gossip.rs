//! Revocation by gossip between real processes over real UDP, each in its own network
//! namespace joined by veth pairs to a bridge (in a namespace of its own too): one verifier
//! (`vouch server` with `[server.gossip]`) and five relying parties (`vouch rp watch`). One
//! relying party is cut off (its veth link down) while a workload is revoked: the others get
//! the record, it does not; when the link comes back it catches up; with its network cut again
//! it refuses the revoked workload's result from its saved set alone. A relying party that was
//! stopped during a second revocation catches up from its saved state when it restarts.
//! Gossip is authenticated with the cluster's key; a relying party with another key hears
//! nothing. A saved set whose head is older than `--max-revocation-age` is refused.
//!
//! Needs root (network namespaces), as the test command runs on CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");
const SUBNET: &str = "10.213.0";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hub namespace with a bridge, and member namespaces each joined to it by a veth pair.
struct Net {
    prefix: String,
    namespaces: Vec<String>,
}

impl Net {
    fn new() -> Self {
        assert!(
            running_as_root(),
            "this test creates network namespaces and must run as root"
        );
        let prefix = format!("vg{}", std::process::id() % 100_000);
        let hub = format!("{prefix}-hub");
        ip(&["netns", "add", &hub]);
        let net = Self {
            prefix,
            namespaces: vec![hub.clone()],
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        net
    }

    fn hub(&self) -> &str {
        &self.namespaces[0]
    }

    /// Member `i` (its namespace), at `SUBNET.host`.
    fn member(&mut self, i: usize, host: u8) -> String {
        let ns = format!("{}-m{i}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let (h, m) = (
            format!("{}h{i}", self.prefix),
            format!("{}m{i}", self.prefix),
        );
        ip(&["link", "add", &h, "type", "veth", "peer", "name", &m]);
        ip(&["link", "set", &h, "netns", self.hub()]);
        ip(&["link", "set", &m, "netns", &ns]);
        ip(&["-n", self.hub(), "link", "set", &h, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SUBNET}.{host}/24"),
            "dev",
            &m,
        ]);
        ip(&["-n", &ns, "link", "set", &m, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Cut member `i` off the bridge, or reconnect it.
    fn link(&self, i: usize, up: bool) {
        let h = format!("{}h{i}", self.prefix);
        ip(&[
            "-n",
            self.hub(),
            "link",
            "set",
            &h,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, VOUCH]);
    c
}

/// A relying party: `vouch rp watch` in `ns`, its JSON lines on a channel.
struct Rp {
    _proc: Proc,
    lines: mpsc::Receiver<serde_json::Value>,
    last: serde_json::Value,
}

impl Rp {
    fn start(ns: &str, host: u8, bundle: &Path, key: &Path, state: &Path) -> Self {
        let mut child = in_ns(ns)
            .args(["rp", "watch", "--trust-bundle"])
            .arg(bundle)
            .arg("--gossip-key")
            .arg(key)
            .args(["--listen", &format!("{SUBNET}.{host}:7946")])
            .args(["--seed", &format!("{SUBNET}.2:7946")])
            .args([
                "--node-id",
                &format!("rp{host}"),
                "--interval-ms",
                "200",
                "--state",
            ])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Self {
            _proc: Proc(child),
            lines,
            last: serde_json::Value::Null,
        }
    }

    /// Wait until the set satisfies `f`; the time it took.
    fn wait(
        &mut self,
        what: &str,
        within: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            if f(&self.last) {
                return t0.elapsed();
            }
            let left = within.checked_sub(t0.elapsed()).unwrap_or_default();
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(v) => self.last = v,
                Err(_) => panic!("{what}: not within {within:?}; last {}", self.last),
            }
        }
    }

    /// Drain what arrived without waiting.
    fn poll(&mut self) -> &serde_json::Value {
        while let Ok(v) = self.lines.try_recv() {
            self.last = v;
        }
        &self.last
    }
}

fn epoch(v: &serde_json::Value) -> u64 {
    v["complete_through"].as_u64().unwrap_or(0)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify_offline(ns: &str, bundle: &Path, state: &Path, token: &Path) -> (i32, String) {
    verify_offline_within(ns, bundle, state, token, "5m")
}

/// `vouch verify` against a saved set whose head may be at most `max_age` old.
fn verify_offline_within(
    ns: &str,
    bundle: &Path,
    state: &Path,
    token: &Path,
    max_age: &str,
) -> (i32, String) {
    let (code, _, err) = run(in_ns(ns)
        .args([
            "verify",
            "--audience",
            "app-rp",
            "--accept-warning",
            "--max-revocation-age",
            max_age,
            "--trust-bundle",
        ])
        .arg(bundle)
        .arg("--revocations")
        .arg(state)
        .arg(token));
    (code, err)
}

#[test]
fn a_revocation_reaches_every_process_through_a_partition() {
    let mut net = Net::new();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("verifier");
    let cfg = d.path().join("vouch.toml");
    // The cluster's gossip key, given to every member; and another one.
    let key = d.path().join("gossip.key");
    std::fs::write(&key, [0x42u8; 32]).unwrap();
    let other_key = d.path().join("other.key");
    std::fs::write(&other_key, [0x24u8; 32]).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\n[server.gossip]\nlisten = \"{SUBNET}.2:7946\"\nnode_id = \"verifier\"\ninterval_ms = 200\nkey_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let v = net.member(0, 2);
    let _verifier = Proc(
        in_ns(&v)
            .arg("--config")
            .arg(&cfg)
            .args([
                "server",
                "--listen",
                "127.0.0.1:8443",
                "--insecure-http",
                "--data-dir",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bundle = data.join("spiffe/ca.crt");
    let t = Instant::now();
    while !bundle.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "verifier did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = |i: usize| d.path().join(format!("rp{i}.json"));
    let mut rps: Vec<Rp> = Vec::new();
    let mut nss = Vec::new();
    for i in 1..=5 {
        let ns = net.member(i, 10 + i as u8);
        rps.push(Rp::start(&ns, 10 + i as u8, &bundle, &key, &state(i)));
        nss.push(ns);
    }
    // A sixth with another key.
    let ns6 = net.member(6, 16);
    let mut outsider = Rp::start(&ns6, 16, &bundle, &other_key, &state(6));
    // Every relying party hears the verifier's signed head (epoch 0): gossip works.
    for rp in &mut rps {
        rp.wait("head", Duration::from_secs(30), |v| v["head_epoch"] == 0);
    }
    // The one with another key hears nothing: its datagrams and the cluster's are dropped.
    assert!(outsider.poll()["head_epoch"].is_null(), "{}", outsider.last);

    // A workload attests (inside the verifier's namespace) and gets a result.
    // Admin commands reach the verifier's API (its data directory names it) in its namespace.
    let (code, out, err) = run(in_ns(&v)
        .args(["token", "create", "--json", "--data-dir"])
        .arg(&data));
    assert_eq!(code, 0, "{err}");
    let token: serde_json::Value = serde_json::from_str(&out).unwrap();
    let exe = d.path().join("app");
    std::fs::write(&exe, "app").unwrap();
    let (_, out, err) = run(in_ns(&v)
        .args([
            "attest",
            "--json",
            "--server",
            "http://127.0.0.1:8443",
            "--workload",
            "app",
            "--result-audience",
            "app-rp",
        ])
        .arg("--agent-dir")
        .arg(d.path().join("agent"))
        .arg("--exe")
        .arg(&exe)
        .args(["--join-token", token["token"].as_str().unwrap()]));
    let result: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
    let jwt = d.path().join("result.jwt");
    std::fs::write(&jwt, result["result"].as_str().unwrap()).unwrap();
    let workload = result["workload_id"].as_str().unwrap().to_string();
    let (code, err) = verify_offline(&nss[4], &bundle, &state(5), &jwt);
    assert_eq!(code, 0, "accepted before the revocation: {err}");

    // Cut rp5 off, revoke, and watch the other four get it.
    net.link(5, false);
    let t0 = Instant::now();
    let (code, _, err) = run(in_ns(&v)
        .args([
            "revoke",
            "workload",
            &workload,
            "--reason",
            "key leaked",
            "--data-dir",
        ])
        .arg(&data));
    assert_eq!(code, 0, "{err}");
    let mut reached = Vec::new();
    for rp in rps.iter_mut().take(4) {
        rp.wait("record", Duration::from_secs(30), |v| epoch(v) >= 1);
        reached.push(t0.elapsed());
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(epoch(rps[4].poll()), 0, "a cut-off member got the record");
    // Cut off, it still accepts the result while its head is recent (it cannot know), and
    // says how stale it is; past --max-revocation-age it refuses.
    let (code, err) = verify_offline(&nss[4], &bundle, &state(5), &jwt);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("s ago (at most 300 s allowed)"), "{err}");
    let (code, err) = verify_offline_within(&nss[4], &bundle, &state(5), &jwt, "1s");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revocation state is stale"), "{err}");

    // Heal: it catches up.
    net.link(5, true);
    let healed = rps[4].wait("catch-up", Duration::from_secs(60), |v| epoch(v) >= 1);
    let revoked = &rps[4].last["revoked"][0];
    assert_eq!(revoked["kind"], "workload");
    assert_eq!(revoked["target"], workload.as_str());

    // With its network cut again, it refuses the revoked workload from its saved set.
    net.link(5, false);
    let (code, err) = verify_offline(&nss[4], &bundle, &state(5), &jwt);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revoked (revocation epoch 1)"), "{err}");
    net.link(5, true);

    // rp4 is stopped during a second revocation and catches up when it comes back.
    drop(rps.remove(3));
    let (code, _, err) = run(in_ns(&v)
        .args(["revoke", "svid", "0xabc", "--reason", "lost", "--data-dir"])
        .arg(&data));
    assert_ne!(code, 0, "0x is not hex: refused");
    assert!(err.contains("not hexadecimal"), "{err}");
    let (code, _, err) = run(in_ns(&v)
        .args(["revoke", "svid", "0abc", "--reason", "lost", "--data-dir"])
        .arg(&data));
    assert_eq!(code, 0, "{err}");
    for rp in rps.iter_mut() {
        rp.wait("second record", Duration::from_secs(30), |v| epoch(v) >= 2);
    }
    let t1 = Instant::now();
    let mut back = Rp::start(&nss[3], 14, &bundle, &key, &state(4));
    // It starts from its saved set (epoch 1) and gets epoch 2 by gossip.
    back.wait("saved set", Duration::from_secs(10), |v| epoch(v) >= 1);
    let restart = back.wait("restart catch-up", Duration::from_secs(60), |v| {
        epoch(v) >= 2
    });
    println!(
        "{}",
        serde_json::json!({
            "processes": 5,
            "interval_ms": 200,
            "reached_ms": reached.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "partition_heal_catchup_ms": healed.as_millis() as u64,
            "restart_catchup_ms": (t1.elapsed().as_millis() as u64).max(restart.as_millis() as u64),
        })
    );
}

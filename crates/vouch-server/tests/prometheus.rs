//! Observability (issue 16 item 4): a real Prometheus (Debian's `prometheus`, which
//! `scripts/deps.sh --test` installs) started on loopback with a generated configuration
//! scrapes a live verifier (over TLS, with its read token) and a live agent every second; the
//! test asks Prometheus's HTTP API for what it scraped and checks it against what happened.
//! `promtool check metrics` (same package) lints both texts. Request ids: the verifier echoes
//! a valid one and replaces one that is not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vouch_agent::{proto, request};
use vouch_core::ArStatus;
use vouch_core::wire::AttestRequest;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on PATH (or in /usr/bin, /usr/sbin).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A Prometheus server of our own: loopback, a throwaway data directory, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(bin: &Path, scrape_configs: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Wait for `/-/ready` (at most 60 s).
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = reqwest::get(format!("http://127.0.0.1:{}/-/ready", self.port)).await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("prometheus exited: {st}\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector of `q`: each series' labels and value.
    async fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let r: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/query?query={}",
                self.port,
                percent_encode(q)
            ))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map(|r| r.json())
            .unwrap_or_else(|e| panic!("query {q}: {e}"))
            .await
            .unwrap();
        assert_eq!(r["status"], "success", "{q}: {r}");
        r["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = serde_json::from_value(s["metric"].clone()).unwrap();
                let v = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (labels, v)
            })
            .collect()
    }

    /// The single value of `q`, once it is `want` (waiting for scrapes, at most 30 s).
    async fn expect(&self, q: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(q).await;
            if got.len() == 1 && got[0].1 == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{q}: {got:?}, expected {want}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `s` as a URL query value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text`: its findings (empty when clean).
fn promtool(bin: &Path, text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_verifier_and_the_agent() {
    let (Some(prometheus), Some(promtool_bin)) = (find("prometheus"), find("promtool")) else {
        eprintln!(
            "SKIPPED: Debian's prometheus package is not installed (scripts/deps.sh --test \
             installs it: apt-get install prometheus)"
        );
        return;
    };
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    let (agent_addr, metrics_task) =
        vouch_agent::serve_metrics("127.0.0.1:0".parse().unwrap(), agent.metrics())
            .await
            .unwrap();

    // What happens: three affirming attestations, one refused (a flipped signature byte), one
    // X.509-SVID served through the Workload API.
    for _ in 0..3 {
        assert_eq!(
            agent.attest_once().await.unwrap().status,
            ArStatus::Affirming
        );
    }
    let c = h.client();
    let n = c.challenge().await.unwrap().nonce;
    let mut ev = agent.evidence(&n).unwrap();
    let mut sig = B64.decode(&ev.signature).unwrap();
    sig[0] ^= 0x80;
    ev.signature = B64.encode(&sig);
    let refused = c
        .attest(&AttestRequest {
            evidence: ev,
            result_audience: None,
        })
        .await;
    assert_eq!(
        refused.unwrap_err().kind(),
        Some(vouch_core::ErrorKind::EvidenceSignature)
    );
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    h.add_entry(
        "spiffe://vouch.local/svc",
        &["vouch:workload:svc".to_string(), format!("unix:uid:{uid}")],
    )
    .await;
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mut wl = vouch_agent::connect(&sock).await.unwrap();
    let mut stream = wl
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = tokio_stream::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.svids.len(), 1);

    // Prometheus scrapes both: the verifier over TLS with the read token.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("read.token");
    std::fs::write(&token, h.read_token()).unwrap();
    let ca = h.server.ca_cert.clone().unwrap();
    let mut prom = Prometheus::start(
        &prometheus,
        &format!(
            "  - job_name: verifier\n    scheme: https\n    tls_config:\n      ca_file: {}\n\
             \x20   authorization:\n      credentials_file: {}\n    static_configs:\n\
             \x20     - targets: ['{}']\n\
             \x20 - job_name: agent\n    static_configs:\n      - targets: ['{agent_addr}']\n",
            ca.display(),
            token.display(),
            h.server.addr,
        ),
    );
    prom.ready().await;
    prom.expect("up{job=\"verifier\"}", 1.0).await;
    prom.expect("up{job=\"agent\"}", 1.0).await;

    // The verifier's counts are what happened.
    let v = "job=\"verifier\"";
    prom.expect(
        &format!(
            "vouch_attestations_total{{{v},kind=\"software\",tenant=\"default\",outcome=\"affirming\"}}"
        ),
        3.0,
    )
    .await;
    prom.expect(
        &format!("vouch_attestations_total{{{v},kind=\"software\",outcome=\"refused\"}}"),
        1.0,
    )
    .await;
    prom.expect(
        &format!("vouch_refusals_total{{{v},kind=\"evidence_signature\"}}"),
        1.0,
    )
    .await;
    prom.expect(
        &format!("vouch_svids_issued_total{{{v},kind=\"x509\"}}"),
        1.0,
    )
    .await;
    // Every recorded attestation was signed and stored once: the +Inf bucket and the count of
    // those stages; each finite bucket holds no more than the next (cumulative).
    for stage in ["sign", "store", "verify"] {
        prom.expect(
            &format!("vouch_stage_seconds_bucket{{{v},stage=\"{stage}\",le=\"+Inf\"}}"),
            3.0,
        )
        .await;
        prom.expect(
            &format!("vouch_stage_seconds_count{{{v},stage=\"{stage}\"}}"),
            3.0,
        )
        .await;
        let mut buckets: Vec<(f64, f64)> = prom
            .query(&format!(
                "vouch_stage_seconds_bucket{{{v},stage=\"{stage}\"}}"
            ))
            .await
            .into_iter()
            .map(|(l, n)| (l["le"].parse::<f64>().unwrap(), n))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 10, "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        // A stage of a local attestation takes well under 6 s: every one is in a finite bucket.
        assert_eq!(buckets[buckets.len() - 2].1, 3.0, "{stage}: {buckets:?}");
    }
    // The policy ran at least once (then its appraisal may be reused).
    let policy = prom
        .query(&format!(
            "vouch_stage_seconds_count{{{v},stage=\"policy\"}}"
        ))
        .await;
    assert!(
        policy.len() == 1 && (1.0..=3.0).contains(&policy[0].1),
        "{policy:?}"
    );
    prom.expect(&format!("vouch_workloads{{{v},status=\"affirming\"}}"), 1.0)
        .await;
    let pool = prom
        .query(&format!("vouch_store_pool_max_connections{{{v}}}"))
        .await;
    assert!(pool.len() == 1 && pool[0].1 >= 1.0, "{pool:?}");

    // The agent's own view.
    let a = "job=\"agent\"";
    prom.expect(
        &format!("vouch_agent_attestations_total{{{a},outcome=\"affirming\"}}"),
        3.0,
    )
    .await;
    prom.expect(&format!("vouch_agent_svids_held{{{a}}}"), 1.0)
        .await;
    prom.expect(
        &format!(
            "vouch_agent_workload_api_requests_total{{{a},rpc=\"FetchX509SVID\",outcome=\"ok\"}}"
        ),
        1.0,
    )
    .await;
    prom.expect(
        &format!("vouch_agent_workload_api_connections_total{{{a}}}"),
        1.0,
    )
    .await;
    prom.expect(
        &format!("vouch_agent_last_attestation_status{{{a},status=\"affirming\"}}"),
        1.0,
    )
    .await;
    let expiry = prom
        .query(&format!("vouch_agent_svid_expiry_seconds{{{a}}}"))
        .await;
    // The entry's SVIDs live 600 s.
    assert!(
        expiry.len() == 1 && expiry[0].1 > 500.0 && expiry[0].1 <= 600.0,
        "{expiry:?}"
    );
    let age = prom
        .query(&format!("vouch_agent_last_attestation_age_seconds{{{a}}}"))
        .await;
    assert!(
        age.len() == 1 && (0.0..120.0).contains(&age[0].1),
        "{age:?}"
    );

    // Both texts pass promtool's parser and linter.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let verifier_text = http
        .get(format!("{}/metrics", h.server.base_url))
        .bearer_auth(h.read_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent_text = reqwest::get(format!("http://{agent_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (who, text) in [("verifier", &verifier_text), ("agent", &agent_text)] {
        let (ok, findings) = promtool(&promtool_bin, text);
        assert!(
            ok && findings.trim().is_empty(),
            "{who}: {findings}\n{text}"
        );
    }
    // promtool does find what is wrong: a flipped byte in a sample line is a parse error.
    let broken =
        verifier_text.replacen("vouch_attestations_total{", "vouch_attestations_total{{", 1);
    let (ok, findings) = promtool(&promtool_bin, &broken);
    assert!(!ok, "promtool accepted a broken text: {findings}");
    // The agent's health.
    let health = reqwest::get(format!("http://{agent_addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    drop(stream);
    api.stop().await.unwrap();
    metrics_task.abort();
    h.server.shutdown().await;
}

/// The verifier echoes a valid request id, and replaces one outside the safe charset or too
/// long with one of its own (so no caller-chosen bytes reach its logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_when_valid_and_replaced_otherwise() {
    let h = common::Harness::new(|_| {}).await;
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let id_of = |sent: Option<&'static str>| {
        let mut req = http.get(format!("{}/healthz", h.server.base_url));
        if let Some(s) = sent {
            req = req.header("x-request-id", s);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(id_of(Some("agent-7.call:42")).await, "agent-7.call:42");
    let valid_made = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    for bad in [
        "two words",
        "quote\"injection",
        "a=b,level=error",
        // One byte over the limit.
        "0123456789012345678901234567890123456789012345678901234567890123X",
    ] {
        let got = id_of(Some(bad)).await;
        assert!(valid_made(&got) && got != bad, "{bad:?} -> {got:?}");
    }
    let a = id_of(None).await;
    let b = id_of(None).await;
    assert!(valid_made(&a) && valid_made(&b) && a != b, "{a} {b}");
    // Refusals carry it too (the error body is unchanged).
    let r = http
        .post(format!("{}/v1/attest", h.server.base_url))
        .header("x-request-id", "refused-1")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-request-id"], "refused-1");
    h.server.shutdown().await;
}

/// The gossip gauges and the revocation lag: two verifiers in one gossip cluster each see two
/// live members, and a revocation made through the API is published once, its lag observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_peers_and_revocation_lag_are_measured() {
    let udp = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (a, b) = (udp(), udp());
    let gossip = |listen: std::net::SocketAddr, seeds: Vec<String>, name: &str| {
        Some(vouch_server::GossipSettings {
            listen,
            advertise: None,
            seeds,
            node_id: Some(name.into()),
            interval_ms: 100,
            key_file: None,
            accept_key_files: Vec::new(),
            insecure_unauthenticated: true,
        })
    };
    let h1 = common::Harness::new(|c| c.gossip = gossip(a, Vec::new(), "v1")).await;
    let h2 = common::Harness::new(|c| c.gossip = gossip(b, vec![a.to_string()], "v2")).await;
    let mut agent = h1.agent("web").await;
    let r = agent.attest_once().await.unwrap();

    let http = |h: &common::Harness| {
        let ca = reqwest::Certificate::from_pem(
            &std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap()
    };
    let metric = |h: &common::Harness, name: &'static str| {
        let (http, url, token) = (
            http(h),
            format!("{}/metrics", h.server.base_url),
            h.read_token(),
        );
        async move {
            let text = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (p1, p2) = (
            metric(&h1, "vouch_gossip_peers").await,
            metric(&h2, "vouch_gossip_peers").await,
        );
        if p1 == Some(2.0) && p2 == Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "peers {p1:?} {p2:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(&h1, "vouch_revocation_lag_seconds_count").await,
        Some(0.0)
    );

    let admin = std::fs::read_to_string(h1.cfg.data_dir.join("keys/admin.token")).unwrap();
    let res = http(&h1)
        .post(format!("{}/v1/revocations", h1.server.base_url))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({
            "kind": "workload", "target": r.workload_id, "reason": "metrics test",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if metric(&h1, "vouch_revocation_lag_seconds_count").await == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no revocation lag observed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Published within the feed's interval of its creation (whole seconds of `created_at`).
    let lag = metric(&h1, "vouch_revocation_lag_seconds_sum")
        .await
        .unwrap();
    assert!((0.0..5.0).contains(&lag), "{lag}");
    // Each epoch once, however often the feed runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&h1, "vouch_revocation_lag_seconds_count").await,
        Some(1.0)
    );
    h2.server.shutdown().await;
    h1.server.shutdown().await;
}

/// A tenant's attestations are counted on its own metrics page (`/t/<tenant>/metrics`, its read
/// token), labelled with its name, and not on the default tenant's, which its token cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_attestations_are_on_its_own_metrics_page() {
    let h = common::Harness::new(|cfg| {
        cfg.tenants = vec![vouch_server::TenantConfig {
            name: "acme".into(),
            trust_domain: "acme.test".into(),
            database_url: None,
        }];
    })
    .await;
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let token = |dir: &str, name: &str| {
        std::fs::read_to_string(h.cfg.data_dir.join(dir).join("keys").join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let join: serde_json::Value = http
        .post(format!("{}/t/acme/v1/tokens", h.server.base_url))
        .bearer_auth(token("tenants/acme", "admin.token"))
        .json(&serde_json::json!({"ttl": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut agent = h
        .agent_with("web", |c| {
            c.tenant = Some("acme".into());
            c.join_token = Some(join["token"].as_str().unwrap().to_string());
            c.trust_domain = "acme.test".into();
        })
        .await;
    agent.attest_once().await.unwrap();
    let page = |path: &'static str, t: String| {
        let req = http
            .get(format!("{}{path}", h.server.base_url))
            .bearer_auth(t);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, acme) = page("/t/acme/metrics", token("tenants/acme", "read.token")).await;
    assert_eq!(s, 200, "{acme}");
    assert!(
        acme.lines()
            .any(|l| l.starts_with("vouch_attestations_total{")
                && l.contains("tenant=\"acme\"")
                && l.ends_with(" 1")),
        "{acme}"
    );
    assert!(!acme.contains("tenant=\"default\""), "{acme}");
    let (s, default) = page("/metrics", token("", "read.token")).await;
    assert_eq!(s, 200);
    assert!(!default.contains("tenant=\"acme\""), "{default}");
    // The tenant's token does not read the default tenant's page.
    let (s, body) = page("/metrics", token("tenants/acme", "read.token")).await;
    assert!(s == 401 || s == 403, "{s}: {body}");
    h.server.shutdown().await;
}

//! The dashboard (issue 16 item 6) on a real verifier over loopback TLS, with real agents: the
//! sign-in and its session cookie (never the token), CSRF refusals, and the pages as a real
//! headless Chromium renders them (driven over the DevTools protocol: it signs in through the
//! form itself), screenshots of the fleet page with a contraindicated workload, the DOM checked
//! for what is shown, hostile strings from the store shown as text, and the audit page's proofs
//! failing on a database rewritten behind the verifier's back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cdp;
mod common;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use vouch_core::ArStatus;
use vouch_server::unix_now;
use vouch_store::AttestationRecord;

use common::Harness;

/// A workload name no verifier would accept (the store is written directly), with markup in
/// every string the pages show of it.
// No `/`: the store takes a workload's name from after the last one in its id.
const HOSTILE_NAME: &str = "<img src=x onerror=window.__xss=2><script>window.__xss=6;";
const HOSTILE_HOST: &str = "<script>window.__xss=1</script>";
const HOSTILE_REASON: &str =
    "deny configuration (config_file): file </td><script>window.__xss=4</script> differs";

/// A verifier with a warning workload (`web`, no reference values), a contraindicated one
/// (`tampered`, its configuration file changed), a hostile one written to the store, a second
/// version of the default policy, and a revocation.
struct Fleet {
    h: Harness,
    tampered: String,
    hostile: String,
}

async fn fleet() -> Fleet {
    let h = Harness::new(|_| {}).await;
    let mut web = h.agent("web").await;
    assert_eq!(web.attest_once().await.unwrap().status, ArStatus::Warning);
    let mut bad = h.agent("tampered").await;
    h.trust(&mut bad).await;
    assert_eq!(bad.attest_once().await.unwrap().status, ArStatus::Affirming);
    std::fs::write(h.path("tampered.conf"), "setting = 2\n").unwrap();
    let r = bad.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated);
    let tampered = r.workload_id;

    // Hostile strings, as if an older or compromised writer had stored them.
    let now = unix_now();
    h.store
        .create_join_token("hostile-token", None, now, now + 60)
        .await
        .unwrap();
    let node = h
        .store
        .enroll("hostile-token", &[7; 32], HOSTILE_HOST, now)
        .await
        .unwrap()
        .node_id;
    let hostile = format!("{node}/{HOSTILE_NAME}");
    h.store
        .record_attestation(
            &AttestationRecord {
                id: "att-hostile".into(),
                workload_id: hostile.clone(),
                node_id: node.clone(),
                key_id: "k".into(),
                evidence_kind: "software".into(),
                evidence_sha256: "00".into(),
                claims: serde_json::json!({"workload": {"name": HOSTILE_NAME,
                    "exe_sha256": "<script>window.__xss=3</script>"}}),
                status: "contraindicated".into(),
                trust_vector: serde_json::json!({}),
                reasons: vec![HOSTILE_REASON.into()],
                policy_id: "default".into(),
                policy_version: 1,
                result: "<script>window.__xss=5</script>".into(),
                created_at: now,
                expires_at: now + 60,
            },
            now + 600,
            None,
        )
        .await
        .unwrap();

    // An anomaly flag on the contraindicated workload, its reason with markup.
    let node_t = tampered.split('/').next().unwrap().to_string();
    h.store
        .record_anomalies(
            &[vouch_store::AnomalyRecord {
                id: "flag-1".into(),
                kind: "new_measurement".into(),
                group: "tampered".into(),
                node_id: node_t,
                workload_id: tampered.clone(),
                reason: "file tampered.conf: a digest never seen in group <b>tampered</b>".into(),
                detail: serde_json::json!({}),
                first_seen: now - 60,
                last_seen: now,
                count: 3,
            }],
            &[],
        )
        .await
        .unwrap();

    // A second version of the active policy: one line added.
    let id = h.store.active_policy_id().await.unwrap().unwrap();
    let p = h.store.policy(&id, None).await.unwrap().unwrap();
    let sep = if p.rego.ends_with('\n') { "" } else { "\n" };
    let v2 = format!("{}{sep}# v2: reviewed <b>twice</b>\n", p.rego);
    assert_eq!(h.store.add_policy(&id, &v2, true, now).await.unwrap(), 2);

    // A revocation over the API, its reason with markup.
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let r = http(&h)
        .post(format!("{}/v1/revocations", h.server.base_url))
        .bearer_auth(admin.trim())
        .json(
            &serde_json::json!({"kind": "workload", "target": hostile.clone(),
            "reason": "decommissioned <i>today</i>"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    Fleet {
        h,
        tampered,
        hostile,
    }
}

/// A client that trusts the verifier's CA and follows no redirect.
fn http(h: &Harness) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap(),
        )
        .unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn url(h: &Harness, path: &str) -> String {
    format!("{}{path}", h.server.base_url)
}

/// Sign in with `token` (a same-origin form post); the answer.
async fn sign_in(h: &Harness, token: &str) -> reqwest::Response {
    http(h)
        .post(url(h, "/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &h.server.base_url)
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
}

/// The `name=value` of a sign-in's session cookie, and the whole header.
async fn session(h: &Harness, token: &str) -> (String, String) {
    let r = sign_in(h, token).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/dashboard/");
    let header = r.headers()["set-cookie"].to_str().unwrap().to_string();
    (header.split(';').next().unwrap().to_string(), header)
}

async fn get(h: &Harness, path: &str, cookie: Option<&str>) -> (u16, String, String) {
    let mut req = http(h).get(url(h, path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), location, r.text().await.unwrap())
}

#[tokio::test]
async fn sign_in_gives_a_session_cookie_that_is_not_the_token() {
    let h = Harness::new(|_| {}).await;
    let read = h.read_token();
    // Nothing without a session: the pages send the browser to the form.
    assert_eq!(get(&h, "/", None).await.1, "/dashboard/");
    for p in [
        "/dashboard/",
        "/dashboard/workload?id=x",
        "/dashboard/audit",
    ] {
        let (s, to, _) = get(&h, p, None).await;
        assert_eq!((s, to.as_str()), (303, "/dashboard/login"), "{p}");
    }
    // The old address with the token in it signs nobody in.
    let r = http(&h)
        .get(url(&h, &format!("/?token={read}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers().get("set-cookie").is_none());
    // The form, with a policy that lets no script run.
    let r = http(&h)
        .get(url(&h, "/dashboard/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("name=token"));

    // A wrong token, one flipped character of the right one, a cross-site post: no cookie.
    let mut flipped = read.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    for t in ["vrt_wrong", std::str::from_utf8(&flipped).unwrap(), ""] {
        let r = sign_in(&h, t).await;
        assert_eq!(r.status().as_u16(), 401, "{t}");
        assert!(r.headers().get("set-cookie").is_none());
    }
    let r = http(&h)
        .post(url(&h, "/dashboard/login"))
        .header("origin", "https://evil.example")
        .body(format!("token={read}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // The read token: a random session id, scoped, HttpOnly, Secure, SameSite=Strict.
    let (cookie, header) = session(&h, &read).await;
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/dashboard/",
        "Max-Age=28800",
    ] {
        assert!(header.contains(attr), "{attr}: {header}");
    }
    let value = cookie.strip_prefix("vouch_session=").unwrap();
    assert_eq!(value.len(), 43, "{value}");
    assert!(!header.contains(&read) && value != read);
    let (s, _, page) = get(&h, "/dashboard/", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("signed in as read-token (auditor, read-only)"),
        "{page}"
    );

    // A session id with one character changed, the token itself as the cookie, a Bearer
    // token: none is a session.
    let mut forged = value.as_bytes().to_vec();
    forged[10] = if forged[10] == b'a' { b'b' } else { b'a' };
    let forged = format!("vouch_session={}", String::from_utf8(forged).unwrap());
    for c in [forged.as_str(), &format!("vouch_session={read}")] {
        assert_eq!(
            get(&h, "/dashboard/", Some(c)).await.1,
            "/dashboard/login",
            "{c}"
        );
    }
    let r = http(&h)
        .get(url(&h, "/dashboard/"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    // And a session is no credential of the API.
    assert_eq!(get(&h, "/v1/workloads", Some(&cookie)).await.0, 401);

    // The admin token signs in read-only too.
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let (admin_cookie, _) = session(&h, admin.trim()).await;
    let (_, _, page) = get(&h, "/dashboard/", Some(&admin_cookie)).await;
    assert!(page.contains("signed in as admin-api (auditor, read-only)"));

    // Signing out from another site is refused; from the page it ends the session.
    let out = |origin: &'static str| {
        http(&h)
            .post(url(&h, "/dashboard/logout"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
    };
    assert_eq!(
        out("https://evil.example").await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(get(&h, "/dashboard/", Some(&cookie)).await.0, 200);
    let base: &'static str = Box::leak(h.server.base_url.clone().into_boxed_str());
    let r = out(base).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&h, "/dashboard/", Some(&cookie)).await.1,
        "/dashboard/login"
    );
    // The other session is untouched.
    assert_eq!(get(&h, "/dashboard/", Some(&admin_cookie)).await.0, 200);
    h.server.shutdown().await;
}

/// The SPKI SHA-256 of the verifier's TLS key, for Chromium to trust exactly it.
fn spki_pin(h: &Harness) -> String {
    use x509_parser::prelude::FromDer as _;
    let pem = std::fs::read_to_string(h.cfg.data_dir.join("tls/server.crt")).unwrap();
    let der = vouch_x509::pem_certificates(&pem).remove(0);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    let spki = Sha256::digest(cert.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(spki)
}

/// Where screenshots go: `target/dashboard/`.
fn screenshot_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Width and height of a PNG, after checking its signature and that its first chunk is IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The `<tr>` of `dom` that contains `needle`.
fn row_with<'a>(dom: &'a str, needle: &str) -> &'a str {
    let at = dom
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {dom}"));
    let start = dom[..at].rfind("<tr").unwrap();
    let end = at + dom[at..].find("</tr>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_in_headless_chromium_shows_the_contraindicated_workload_and_why() {
    let Fleet {
        h,
        tampered,
        hostile,
    } = fleet().await;
    let base = h.server.base_url.clone();
    let token = h.read_token();
    let pin = spki_pin(&h);
    let conf = h.path("tampered.conf").display().to_string();
    let (was, now) = (
        hex::encode(Sha256::digest(b"setting = 1\n")),
        hex::encode(Sha256::digest(b"setting = 2\n")),
    );
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut b = cdp::Browser::start(&profile_path, &pin);
        // Not signed in: the browser lands on the form, and signs in through it.
        b.call("Page.navigate", serde_json::json!({ "url": format!("{base}/") }));
        b.wait_at(&format!("{base}/dashboard/login"));
        b.eval(&format!(
            "document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit()",
            serde_json::to_string(&token).unwrap()
        ));
        b.wait_at(&format!("{base}/dashboard/"));
        // The session cookie is out of the page's scripts' reach.
        assert_eq!(b.eval("document.cookie"), "");

        // The fleet page, as a picture.
        let png = b.screenshot();
        let (w, ht) = png_size(&png);
        assert!(w >= 1000 && ht >= 600, "{w}x{ht}");
        assert!(png.len() > 20_000, "{} bytes", png.len());
        let file = screenshot_dir().join("fleet.png");
        std::fs::write(&file, &png).unwrap();
        eprintln!("screenshot: {} ({w}x{ht}, {} bytes)", file.display(), png.len());

        // …and as a DOM: counts by status, the contraindicated workload with its reason.
        let dom = b.dom();
        let card = |status: &str| {
            let at = dom.find(&format!("data-status=\"{status}\"")).unwrap();
            let n = &dom[at..];
            let n = &n[n.find("class=\"n\">").unwrap() + 10..];
            n[..n.find('<').unwrap()].to_string()
        };
        assert_eq!(card("contraindicated"), "2", "{dom}");
        assert_eq!(card("warning"), "1");
        let row = row_with(&dom, ">tampered</a>");
        assert!(row.contains("class=\"contraindicated\""), "{row}");
        assert!(row.contains("config_file") && row.contains(&conf), "{row}");
        assert!(row_with(&dom, ">web</a>").contains("class=\"warning\""));
        // Attestations in the last hour, in the chart.
        assert!(dom.contains("contraindicated, 1 warning"), "{dom}");
        // The hostile row is text: no element was made of it, nothing ran.
        assert!(
            dom.contains("&lt;img src=x onerror=window.__xss=2&gt;&lt;script&gt;window.__xss=6;"),
            "{dom}"
        );
        assert_eq!(b.eval("document.querySelectorAll('main img, script').length"), 0);
        assert_eq!(b.eval("typeof window.__xss"), "undefined");

        // The workload's page: the rule, and which measurement differs from which value.
        let link = b.eval("document.querySelector('a[href*=\"tampered\"]').href");
        b.open(link.as_str().unwrap(), &format!("{base}/dashboard/workload"));
        let dom = b.dom();
        let node = tampered.split('/').next().unwrap();
        assert!(dom.contains(&format!("<code>{node}</code>")), "{dom}");
        let row = row_with(&dom, "class=\"rule\">config_file");
        assert!(row.contains("deny") && row.contains("configuration"), "{row}");
        let m = row_with(&dom, "class=\"differs\"");
        assert!(m.contains(&conf), "{m}");
        assert!(m.contains(&format!("class=\"measured\">{now}")), "{m}");
        assert!(m.contains(&format!("class=\"reference\">{was}")), "{m}");
        assert!(m.contains("differs"), "{m}");
        // The executable matches its reference value.
        assert!(dom.contains("<span class=\"ok\">matches</span>"), "{dom}");
        // Its history: the affirming attestation, then the contraindicated one.
        let hist = &dom[dom.find("class=\"history\"").unwrap()..];
        assert_eq!(hist.matches("<tr class=").count(), 2, "{hist}");
        let png = b.screenshot();
        std::fs::write(screenshot_dir().join("workload.png"), &png).unwrap();

        // The hostile workload's page: every string as text.
        b.open(
            &format!("{base}/dashboard/workload?id={}", urlenc(&hostile)),
            &format!("{base}/dashboard/workload"),
        );
        let dom = b.dom();
        assert!(dom.contains("&lt;/td&gt;&lt;script&gt;window.__xss=4&lt;/script&gt;"), "{dom}");
        assert!(dom.contains("&lt;script&gt;window.__xss=5&lt;/script&gt;"), "{dom}");
        assert_eq!(b.eval("document.querySelectorAll('main img, script').length"), 0);
        assert_eq!(b.eval("typeof window.__xss"), "undefined");

        // Nodes, the hostile hostname as text.
        b.open(&format!("{base}/dashboard/nodes"), &format!("{base}/dashboard/nodes"));
        assert!(b.dom().contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"));

        // Failures with their reasons.
        b.open(&format!("{base}/dashboard/failures"), &format!("{base}/dashboard/failures"));
        let dom = b.dom();
        assert!(row_with(&dom, ">tampered</a>").contains("config_file"));
        assert!(!dom[dom.find("id=\"warning\"").unwrap()..].contains(">tampered</a>"));

        // The policy's versions, and the diff from v1 to v2.
        b.open(&format!("{base}/dashboard/policies"), &format!("{base}/dashboard/policies"));
        let link = b.eval("document.querySelector('table.policies a').href");
        b.open(link.as_str().unwrap(), &format!("{base}/dashboard/policy"));
        let link = b.eval("[...document.querySelectorAll('a')].find(a => a.textContent == 'diff from v1').href");
        b.open(link.as_str().unwrap(), &format!("{base}/dashboard/diff"));
        let dom = b.dom();
        assert!(dom.contains("<ins>+ # v2: reviewed &lt;b&gt;twice&lt;/b&gt;</ins>"), "{dom}");
        assert!(dom.contains("1 line(s) added") && dom.contains("0 removed"), "{dom}");
        std::fs::write(screenshot_dir().join("policy-diff.png"), b.screenshot()).unwrap();

        // Revocations.
        b.open(&format!("{base}/dashboard/revocations"), &format!("{base}/dashboard/revocations"));
        assert!(b.dom().contains("decommissioned &lt;i&gt;today&lt;/i&gt;"));

        // The audit log: the signed head checked, each entry's inclusion proof checked.
        b.open(&format!("{base}/dashboard/audit"), &format!("{base}/dashboard/audit"));
        let dom = b.dom();
        assert!(dom.contains("✓ signature checked against the trust bundle"), "{dom}");
        let summary = b.eval("document.getElementById('proof-summary').textContent");
        let summary = summary.as_str().unwrap();
        let n: u32 = summary.split(' ').next().unwrap().parse().unwrap();
        assert!(n >= 5 && summary.starts_with(&format!("{n} of {n} entries")), "{summary}");
        assert!(!dom.contains("✗"), "{dom}");
        assert!(dom.contains("policy.add") && dom.contains("attestation"), "{dom}");
        std::fs::write(screenshot_dir().join("audit.png"), b.screenshot()).unwrap();

        // The anomaly flags, with their reasons (the hostile one as text).
        b.open(&format!("{base}/dashboard/anomalies"), &format!("{base}/dashboard/anomalies"));
        let dom = b.dom();
        let row = row_with(&dom, "never seen in group &lt;b&gt;tampered&lt;/b&gt;");
        assert!(row.contains("new_measurement") && row.contains(">3<"), "{row}");
        assert_eq!(b.eval("document.querySelectorAll('main b').length"), 0);

        // Signing out ends the session: the pages send the browser back to the form.
        b.eval("document.querySelector('header form').submit()");
        b.wait_for(&format!("{base}/dashboard/login"));
        b.call("Page.navigate", serde_json::json!({ "url": format!("{base}/dashboard/") }));
        b.wait_at(&format!("{base}/dashboard/login"));
    })
    .await
    .unwrap();
    h.server.shutdown().await;
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Rewrite audit entry `seq` of the SQLite database at `db` with python3's sqlite3 (as someone
/// with the file would): its bytes only, or its bytes and its leaf hash.
fn rewrite_audit_entry(db: &std::path::Path, seq: u64, with_hash: bool) {
    let script = r#"
import hashlib, json, sqlite3, sys
db, seq, with_hash = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
c = sqlite3.connect(db)
c.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
(entry,) = c.execute("SELECT entry FROM audit_log WHERE seq = ?", (seq,)).fetchone()
forged = entry.replace('"actor":"', '"actor":"forged-', 1)
assert forged != entry
if with_hash:
    h = hashlib.sha256(b"\x00" + forged.encode()).digest()
    c.execute("UPDATE audit_log SET entry = ?, leaf_hash = ? WHERE seq = ?", (forged, h, seq))
else:
    c.execute("UPDATE audit_log SET entry = ? WHERE seq = ?", (forged, seq))
c.commit()
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .arg(seq.to_string())
        .arg(if with_hash { "1" } else { "0" })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_audit_page_shows_rewritten_entries_as_failing_their_proofs() {
    let h = Harness::new(|_| {}).await;
    let mut a = h.agent("app").await;
    h.trust(&mut a).await;
    a.attest_once().await.unwrap();
    a.attest_once().await.unwrap();
    let (cookie, _) = session(&h, &h.read_token()).await;
    let (s, _, page) = get(&h, "/dashboard/audit", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("first head this dashboard has seen"),
        "{page}"
    );
    assert!(!page.contains('✗'), "{page}");
    let size = h.store.audit_size().await.unwrap();
    assert!(size >= 3);

    // An entry's bytes changed, its leaf hash left: its inclusion proof fails.
    rewrite_audit_entry(&h.cfg.database_path(), 1, false);
    let (_, _, page) = get(&h, "/dashboard/audit", Some(&cookie)).await;
    let row = row_with(&page, "<tr data-seq=1>");
    assert!(row.contains("✗") && row.contains("root mismatch"), "{row}");
    assert!(row.contains("forged-"), "{row}");
    assert!(page.contains("1 failed"), "{page}");
    assert!(page.contains("✓ consistent with the head"), "{page}");

    // Bytes and leaf hash changed together: every proof leads to the new root, but the tree
    // no longer extends the head this page checked before.
    rewrite_audit_entry(&h.cfg.database_path(), 0, true);
    let (_, _, page) = get(&h, "/dashboard/audit", Some(&cookie)).await;
    assert!(
        row_with(&page, "<tr data-seq=0>").contains("✓ verified"),
        "{page}"
    );
    assert!(
        page.contains("✗ NOT consistent with the head checked before"),
        "{page}"
    );
    // And it stays flagged.
    let (_, _, page) = get(&h, "/dashboard/audit", Some(&cookie)).await;
    assert!(page.contains("✗ NOT consistent"), "{page}");
    h.server.shutdown().await;
}

/// `POST <prefix>/dashboard/login` with `token`.
async fn sign_in_at(h: &Harness, prefix: &str, token: &str) -> reqwest::Response {
    http(h)
        .post(url(h, &format!("{prefix}/dashboard/login")))
        .header("origin", &h.server.base_url)
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenants_session_sees_only_its_own_tenant() {
    use vouch_server::{API_TOKENS_FILE, Role, TenantConfig, add_api_token, mint_api_token};
    let mut audrey = String::new();
    let h = Harness::new(|cfg| {
        cfg.tenants = vec![TenantConfig {
            name: "acme".into(),
            trust_domain: "acme.test".into(),
            database_url: None,
        }];
        let (token, record) = mint_api_token("audrey", "acme", Role::Auditor, unix_now());
        add_api_token(&cfg.data_dir.join("keys").join(API_TOKENS_FILE), record).unwrap();
        audrey = token;
    })
    .await;
    let mut web = h.agent("web").await;
    web.attest_once().await.unwrap();
    let acme_read = std::fs::read_to_string(h.cfg.data_dir.join("tenants/acme/keys/read.token"))
        .unwrap()
        .trim()
        .to_string();
    let default_read = h.read_token();

    // Each tenant's token signs in on its own tenant's dashboard only.
    assert_eq!(sign_in_at(&h, "", &acme_read).await.status().as_u16(), 401);
    assert_eq!(
        sign_in_at(&h, "/t/acme", &default_read)
            .await
            .status()
            .as_u16(),
        401
    );
    let r = sign_in_at(&h, "/t/acme", &acme_read).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/t/acme/dashboard/");
    let header = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(header.contains("Path=/t/acme/dashboard/"), "{header}");
    let acme = header.split(';').next().unwrap().to_string();
    let (default, _) = session(&h, &default_read).await;

    // acme's fleet: acme's (empty) store, none of the default tenant's workloads.
    let (s, _, page) = get(&h, "/t/acme/dashboard/", Some(&acme)).await;
    assert_eq!(s, 200);
    assert!(page.contains("tenant acme"), "{page}");
    assert!(
        !page.contains(">web</a>") && page.contains("No workload here."),
        "{page}"
    );
    let (_, _, page) = get(&h, "/dashboard/", Some(&default)).await;
    assert!(
        page.contains(">web</a>") && page.contains("tenant default"),
        "{page}"
    );
    // A session is good on its own tenant's pages only, even sent to the other's.
    assert_eq!(
        get(&h, "/dashboard/", Some(&acme)).await.1,
        "/dashboard/login"
    );
    assert_eq!(
        get(&h, "/t/acme/dashboard/", Some(&default)).await.1,
        "/t/acme/dashboard/login"
    );
    let both = format!("{default}; {acme}");
    let (_, _, page) = get(&h, "/t/acme/dashboard/", Some(&both)).await;
    assert!(
        page.contains("tenant acme") && !page.contains(">web</a>"),
        "{page}"
    );
    // A scoped auditor token of acme signs in there, read-only.
    let r = sign_in_at(&h, "/t/acme", &audrey).await;
    assert_eq!(r.status().as_u16(), 303);
    let c = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (_, _, page) = get(&h, "/t/acme/dashboard/", Some(&c)).await;
    assert!(
        page.contains("signed in as audrey (auditor, read-only)"),
        "{page}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn lists_are_pages_of_fifty() {
    let h = Harness::new(|_| {}).await;
    let now = unix_now();
    h.store
        .create_join_token("paging", None, now, now + 60)
        .await
        .unwrap();
    let node = h
        .store
        .enroll("paging", &[9; 32], "host", now)
        .await
        .unwrap()
        .node_id;
    // 60 workloads; the first attested 60 times, a second apart.
    let mut plan: Vec<(String, u64)> = (0..60u64)
        .map(|i| (format!("w{i:02}"), now - 1000 + i))
        .collect();
    plan.extend((1..60u64).map(|k| ("w00".to_string(), now - 900 + k)));
    for (n, (w, at)) in plan.into_iter().enumerate() {
        let r = AttestationRecord {
            id: format!("a-{n}"),
            workload_id: format!("{node}/{w}"),
            node_id: node.clone(),
            key_id: "k".into(),
            evidence_kind: "software".into(),
            evidence_sha256: "00".into(),
            claims: serde_json::json!({}),
            status: "affirming".into(),
            trust_vector: serde_json::json!({}),
            reasons: vec![],
            policy_id: "default".into(),
            policy_version: 1,
            result: "r".into(),
            created_at: at,
            expires_at: at + 600,
        };
        h.store
            .record_attestation(&r, now + 3600, None)
            .await
            .unwrap();
    }
    let (cookie, _) = session(&h, &h.read_token()).await;
    let rows = |page: &str| page.matches("<tr class=\"affirming\">").count();
    let (s, _, first) = get(&h, "/dashboard/", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert_eq!(rows(&first), 50);
    assert!(
        first.contains("href=\"/dashboard/?page=1\">older"),
        "{first}"
    );
    let (_, _, second) = get(&h, "/dashboard/?page=1", Some(&cookie)).await;
    assert_eq!(rows(&second), 10);
    assert!(!second.contains("older") && second.contains("?page=0"));
    let (s, _, far) = get(&h, "/dashboard/?page=99999999999", Some(&cookie)).await;
    assert_eq!((s, rows(&far)), (200, 0));
    // A query that does not parse: a 400 page, not a server error.
    let (s, _, _) = get(&h, "/dashboard/?page=x", Some(&cookie)).await;
    assert_eq!(s, 400);

    // A workload's history pages by time: 50 newest, then the 10 before the oldest shown.
    let id = urlenc(&format!("{node}/w00"));
    let (_, _, latest) = get(&h, &format!("/dashboard/workload?id={id}"), Some(&cookie)).await;
    let hist = |p: &str| {
        let t = &p[p.find("class=history").unwrap()..];
        t.matches("<tr class=\"affirming\">").count()
    };
    assert_eq!(hist(&latest), 50);
    let older = &latest[latest.find("before=").unwrap() + 7..];
    let before: u64 = older[..older.find('"').unwrap()].parse().unwrap();
    assert_eq!(before, now - 900 + 10);
    let (_, _, rest) = get(
        &h,
        &format!("/dashboard/workload?id={id}&before={before}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(hist(&rest), 10);
    h.server.shutdown().await;
}

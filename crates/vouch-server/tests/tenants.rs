//! Tenants and roles (issue 16 item 2), over real HTTP/TLS on loopback: one verifier serves
//! the default tenant at `/` and the tenants `acme` and `globex` at `/t/<name>/…`, each with its
//! own store, keys, trust domain and policy. Agents enrol and attest in their tenant; results
//! name it and verify only against its key set; every token is held to its tenant and role,
//! and a token with one character flipped is nobody's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, RP_AUDIENCE};
use serde_json::{Value, json};
use vouch_agent::{Agent, AgentConfig};
use vouch_rp::{Audience, Requirements, ResultVerifier, RpError};
use vouch_server::{
    API_TOKENS_FILE, Role, ServerConfig, TenantConfig, add_api_token, mint_api_token,
    tenant_configs, unix_now,
};

const TENANTS: [(&str, &str); 2] = [("acme", "acme.test"), ("globex", "globex.test")];

/// The tokens the tests use, by who holds them.
struct Tokens {
    default_admin: String,
    acme_admin: String,
    globex_admin: String,
    acme_operator: String,
    acme_auditor: String,
    globex_operator: String,
}

/// A verifier with the two tenants and scoped tokens minted before it starts.
async fn setup() -> (Harness, Tokens) {
    let mut scoped = Vec::new();
    let h = Harness::new(|cfg| {
        cfg.tenants = TENANTS
            .iter()
            .map(|(name, td)| TenantConfig {
                name: (*name).into(),
                trust_domain: (*td).into(),
                database_url: None,
            })
            .collect();
        let file = cfg.data_dir.join("keys").join(API_TOKENS_FILE);
        for (name, tenant, role) in [
            ("alice", "acme", Role::Operator),
            ("audrey", "acme", Role::Auditor),
            ("gordon", "globex", Role::Operator),
        ] {
            let (token, record) = mint_api_token(name, tenant, role, unix_now());
            add_api_token(&file, record).unwrap();
            scoped.push(token);
        }
    })
    .await;
    let file_token = |dir: &str| {
        std::fs::read_to_string(h.cfg.data_dir.join(dir).join("keys/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    };
    let tokens = Tokens {
        default_admin: file_token(""),
        acme_admin: file_token("tenants/acme"),
        globex_admin: file_token("tenants/globex"),
        acme_operator: scoped[0].clone(),
        acme_auditor: scoped[1].clone(),
        globex_operator: scoped[2].clone(),
    };
    (h, tokens)
}

fn http(h: &Harness) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// One request: its status and JSON body.
async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    call_at(&h.server, method, path, token, body).await
}

/// [`call`] on any running verifier.
async fn call_at(
    server: &vouch_server::RunningServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let ca = std::fs::read(server.ca_cert.as_ref().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let url = format!("{}{path}", server.base_url);
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A join token of `tenant`, minted over its API by `token`.
async fn join_token(h: &Harness, tenant: &str, token: &str) -> String {
    let (s, v) = call(
        h,
        "POST",
        &format!("/t/{tenant}/v1/tokens"),
        Some(token),
        Some(json!({"ttl": 600})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// An agent of `tenant` (or of the default tenant with `None`) for workload `name`.
fn agent_config(h: &Harness, tenant: Option<&str>, name: &str, join: String) -> AgentConfig {
    let exe = h.path(&format!("{name}.bin"));
    std::fs::write(&exe, format!("binary of {name}")).unwrap();
    AgentConfig {
        servers: vec![h.server.base_url.clone()],
        tenant: tenant.map(str::to_string),
        ca_cert: h.server.ca_cert.clone(),
        data_dir: h.path(&format!("agent-{name}")),
        join_token: Some(join),
        workload_name: name.into(),
        exe: Some(exe),
        interval: 1,
        result_audience: Some(RP_AUDIENCE.into()),
        ..AgentConfig::default()
    }
}

/// A relying party trusting `tenant`'s published key set (`""`: the default tenant's).
async fn rp_of(h: &Harness, prefix: &str) -> ResultVerifier {
    let jwks = http(h)
        .get(format!(
            "{}{prefix}/.well-known/jwks.json",
            h.server.base_url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ResultVerifier::from_jwks_json(&jwks).unwrap()
}

/// Any status (the workloads have no reference values), but the audience and, when given,
/// the tenant.
fn inspect(tenant: Option<&str>) -> Requirements {
    Requirements {
        audience: Audience::Required(RP_AUDIENCE.into()),
        accept_any_status: true,
        tenant: tenant.map(str::to_string),
        ..Requirements::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_attests_apart_and_its_results_name_it_and_verify_only_with_its_keys() {
    let (h, t) = setup().await;

    // One agent per tenant, enrolled with a join token its tenant's operator minted remotely.
    let mut acme = Agent::new(agent_config(
        &h,
        Some("acme"),
        "acme-web",
        join_token(&h, "acme", &t.acme_operator).await,
    ))
    .await
    .unwrap();
    let mut globex = Agent::new(agent_config(
        &h,
        Some("globex"),
        "globex-db",
        join_token(&h, "globex", &t.globex_operator).await,
    ))
    .await
    .unwrap();
    let ra = acme.attest_once().await.unwrap();
    let rg = globex.attest_once().await.unwrap();

    let rp_acme = rp_of(&h, "/t/acme").await;
    let rp_globex = rp_of(&h, "/t/globex").await;
    let rp_default = rp_of(&h, "").await;

    // Each result names its tenant and verifies against its tenant's keys, tenant required.
    let va = rp_acme.verify(&ra.result, &inspect(Some("acme"))).unwrap();
    assert_eq!(va.ear.tenant.as_deref(), Some("acme"));
    let vg = rp_globex
        .verify(&rg.result, &inspect(Some("globex")))
        .unwrap();
    assert_eq!(vg.ear.tenant.as_deref(), Some("globex"));

    // ... and under no other tenant's key set, nor the default tenant's.
    for (rp, result, which) in [
        (&rp_globex, &ra.result, "acme's result, globex's keys"),
        (&rp_default, &ra.result, "acme's result, default keys"),
        (&rp_acme, &rg.result, "globex's result, acme's keys"),
    ] {
        assert!(
            rp.verify(result, &inspect(None)).is_err(),
            "{which} verified"
        );
    }
    // A relying party of globex refuses acme's result even with acme's keys.
    assert_eq!(
        rp_acme
            .verify(&ra.result, &inspect(Some("globex")))
            .unwrap_err(),
        RpError::Tenant {
            expected: "globex".into(),
            got: "acme".into()
        }
    );

    // The default tenant's results keep working and name it.
    let default_join = vouch_server::create_join_token(h.store.as_ref(), 600, None)
        .await
        .unwrap();
    let mut plain = Agent::new(agent_config(&h, None, "plain", default_join))
        .await
        .unwrap();
    let rd = plain.attest_once().await.unwrap();
    let vd = rp_default
        .verify(&rd.result, &inspect(Some("default")))
        .unwrap();
    assert_eq!(vd.ear.tenant.as_deref(), Some("default"));

    // Each tenant sees its own workloads only.
    let (s, list) = call(
        &h,
        "GET",
        "/t/acme/v1/workloads",
        Some(&t.acme_auditor),
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"acme-web"), "{ids:?}");
    assert!(
        !ids.contains(&"globex-db") && !ids.contains(&"plain"),
        "{ids:?}"
    );
    // Globex's result is not found through acme's routes, even by id.
    let (s, v) = call(
        &h,
        "GET",
        &format!("/t/acme/v1/results/{}", rg.attestation_id),
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!((s, v["error"]["kind"].as_str()), (404, Some("not_found")));

    // A join token of one tenant enrols nothing in another.
    let acme_join = join_token(&h, "acme", &t.acme_admin).await;
    let err = Agent::new(agent_config(&h, Some("globex"), "stray", acme_join))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");

    // An agent's tenant is a path segment, never a path.
    let mut bad = agent_config(&h, Some("../t/acme"), "bad", "vjt_x".into());
    let err = Agent::new(bad.clone()).await.unwrap_err();
    assert!(err.to_string().contains("tenant"), "{err}");
    bad.tenant = Some("Acme".into());
    assert!(Agent::new(bad).await.is_err());

    // A tenant that is not configured has no routes.
    let (s, v) = call(
        &h,
        "GET",
        "/t/initech/v1/workloads",
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (404, Some("route_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_held_to_their_tenant_and_role() {
    let (h, t) = setup().await;
    let entry = |id: &str| json!({"spiffe_id": format!("spiffe://globex.test/{id}"), "selectors": ["unix:uid:1000"]});

    // Globex's operator registers an entry in globex.
    let (s, e) = call(
        &h,
        "POST",
        "/t/globex/v1/entries",
        Some(&t.globex_operator),
        Some(entry("db")),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let globex_entry = e["id"].as_str().unwrap().to_string();

    // Acme's admin token and acme's operator token, on globex's routes: every read and every
    // write is refused, 403 naming the token's tenant.
    let refused = [
        ("GET", "/t/globex/v1/entries".to_string(), None),
        (
            "POST",
            "/t/globex/v1/entries".to_string(),
            Some(entry("evil")),
        ),
        ("GET", format!("/t/globex/v1/entries/{globex_entry}"), None),
        (
            "DELETE",
            format!("/t/globex/v1/entries/{globex_entry}"),
            None,
        ),
        (
            "POST",
            "/t/globex/v1/tokens".to_string(),
            Some(json!({"ttl": 60})),
        ),
        ("GET", "/t/globex/v1/policies".to_string(), None),
        (
            "POST",
            "/t/globex/v1/policies".to_string(),
            Some(json!({"id": "evil", "rego": vouch_policy::DEFAULT_POLICY})),
        ),
        ("GET", "/t/globex/v1/refvalues".to_string(), None),
        (
            "POST",
            "/t/globex/v1/refvalues".to_string(),
            Some(json!({"kind": "executable", "key": "x", "value": "00"})),
        ),
        ("GET", "/t/globex/v1/workloads".to_string(), None),
        ("GET", "/t/globex/v1/results/anything".to_string(), None),
        ("GET", "/t/globex/v1/audit/head".to_string(), None),
        ("GET", "/t/globex/v1/audit/entries".to_string(), None),
        ("GET", "/t/globex/metrics".to_string(), None),
        (
            "POST",
            "/t/globex/v1/revocations".to_string(),
            Some(json!({"kind": "workload", "target": "n/w", "reason": "x"})),
        ),
        // And the default tenant's routes.
        ("GET", "/v1/entries".to_string(), None),
        ("GET", "/v1/workloads".to_string(), None),
        ("POST", "/v1/tokens".to_string(), Some(json!({"ttl": 60}))),
    ];
    for token in [&t.acme_admin, &t.acme_operator] {
        for (method, path, body) in &refused {
            let (s, v) = call(&h, method, path, Some(token), body.clone()).await;
            assert_eq!(
                (s, v["error"]["kind"].as_str()),
                (403, Some("forbidden")),
                "{method} {path}: {v}"
            );
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains("\"acme\""), "{method} {path}: {msg}");
        }
    }
    // The default tenant's admin token is not globex's either.
    let (s, _) = call(
        &h,
        "GET",
        "/t/globex/v1/entries",
        Some(&t.default_admin),
        None,
    )
    .await;
    assert_eq!(s, 403);
    // Globex's entry is still there and acme's list holds nothing of globex.
    let (s, list) = call(
        &h,
        "GET",
        "/t/globex/v1/entries",
        Some(&t.globex_admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (s, list) = call(&h, "GET", "/t/acme/v1/entries", Some(&t.acme_admin), None).await;
    assert_eq!((s, list), (200, json!([])));

    // Roles within acme. The auditor reads, and writes nothing.
    for path in [
        "/t/acme/v1/entries",
        "/t/acme/v1/workloads",
        "/t/acme/v1/audit/head",
    ] {
        let (s, v) = call(&h, "GET", path, Some(&t.acme_auditor), None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let acme_entry = json!({"spiffe_id": "spiffe://acme.test/web", "selectors": ["unix:uid:1000"]});
    for (method, path, body) in [
        ("POST", "/t/acme/v1/entries", acme_entry.clone()),
        ("POST", "/t/acme/v1/tokens", json!({"ttl": 60})),
        (
            "POST",
            "/t/acme/v1/revocations",
            json!({"kind": "workload", "target": "n/w", "reason": "x"}),
        ),
    ] {
        let (s, v) = call(&h, method, path, Some(&t.acme_auditor), Some(body)).await;
        assert_eq!(
            (s, v["error"]["kind"].as_str()),
            (403, Some("forbidden")),
            "{path}: {v}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("auditor") && msg.contains("operator"), "{msg}");
    }
    // The operator manages entries and join tokens, not policy or reference values.
    let (s, e) = call(
        &h,
        "POST",
        "/t/acme/v1/entries",
        Some(&t.acme_operator),
        Some(acme_entry),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let (s, _) = call(
        &h,
        "POST",
        "/t/acme/v1/tokens",
        Some(&t.acme_operator),
        Some(json!({"ttl": 60})),
    )
    .await;
    assert_eq!(s, 201);
    let policy = json!({"id": "acme-policy", "rego": vouch_policy::DEFAULT_POLICY});
    let refvalue = json!({"kind": "executable", "key": "web", "value": "ab".repeat(32)});
    for (path, body) in [
        ("/t/acme/v1/policies", &policy),
        ("/t/acme/v1/refvalues", &refvalue),
    ] {
        let (s, v) = call(&h, "POST", path, Some(&t.acme_operator), Some(body.clone())).await;
        assert_eq!(
            (s, v["error"]["kind"].as_str()),
            (403, Some("forbidden")),
            "{path}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains("admin"),
            "{v}"
        );
        // Acme's admin may.
        let (s, v) = call(&h, "POST", path, Some(&t.acme_admin), Some(body.clone())).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    // A scoped token cannot put its change on someone else: alice revoking "as mallory" is
    // recorded as alice (mallory).
    let (s, rec) = call(
        &h,
        "POST",
        "/t/acme/v1/revocations",
        Some(&t.acme_operator),
        Some(json!({"kind": "svid", "target": "0A:0B", "reason": "test", "by": "mallory"})),
    )
    .await;
    assert_eq!(s, 201, "{rec}");
    assert_eq!(rec["by"], "alice (mallory)", "{rec}");

    // The audit log names the scoped token's holder as the actor of its change.
    let (_, log) = call(
        &h,
        "GET",
        "/t/acme/v1/audit/entries",
        Some(&t.acme_auditor),
        None,
    )
    .await;
    let actors: Vec<String> = log["entries"]
        .as_array()
        .map(|a| a.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default();
    assert!(
        actors
            .iter()
            .any(|e| e.contains("entry.add") && e.contains("alice")),
        "{log}"
    );
    // Globex's policies are untouched by acme's.
    let (_, pols) = call(
        &h,
        "GET",
        "/t/globex/v1/policies",
        Some(&t.globex_admin),
        None,
    )
    .await;
    assert!(!pols.to_string().contains("acme-policy"), "{pols}");

    // One flipped character: nobody's token, 401.
    for token in [&t.acme_admin, &t.acme_operator, &t.acme_auditor] {
        let mut b = token.clone().into_bytes();
        let i = b.len() / 2;
        b[i] = if b[i] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(b).unwrap();
        let (s, v) = call(&h, "GET", "/t/acme/v1/entries", Some(&flipped), None).await;
        assert_eq!(
            (s, v["error"]["kind"].as_str()),
            (401, Some("unauthenticated")),
            "{v}"
        );
    }
    let (s, _) = call(&h, "GET", "/t/acme/v1/entries", None, None).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_while_the_verifier_runs_is_accepted_within_seconds() {
    let (h, t) = setup().await;
    let file = h.cfg.data_dir.join("keys").join(API_TOKENS_FILE);
    let (token, record) = mint_api_token("late", "globex", Role::Auditor, unix_now());
    add_api_token(&file, record).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _) = call(&h, "GET", "/t/globex/v1/workloads", Some(&token), None).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 401);
        assert!(std::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Still held to its tenant.
    let (s, _) = call(&h, "GET", "/t/acme/v1/workloads", Some(&token), None).await;
    assert_eq!(s, 403);
    drop(t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_mints_and_revokes_its_own_scoped_tokens_only() {
    let (h, t) = setup().await;
    // Acme's admin mints an auditor token for bob; the token is shown once.
    let (s, v) = call(
        &h,
        "POST",
        "/t/acme/v1/api-tokens",
        Some(&t.acme_admin),
        Some(json!({"name": "bob", "role": "auditor"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["tenant"].as_str(), v["role"].as_str()),
        (Some("acme"), Some("auditor"))
    );
    let bob = v["token"].as_str().unwrap().to_string();
    // At once: bob reads acme, writes nothing, and reads nothing of globex.
    let (s, _) = call(&h, "GET", "/t/acme/v1/workloads", Some(&bob), None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&h, "POST", "/t/acme/v1/tokens", Some(&bob), Some(json!({}))).await;
    assert_eq!(s, 403);
    let (s, _) = call(&h, "GET", "/t/globex/v1/workloads", Some(&bob), None).await;
    assert_eq!(s, 403);
    // Only the file's hash is kept, never the token.
    let file = std::fs::read_to_string(h.cfg.data_dir.join("keys").join(API_TOKENS_FILE)).unwrap();
    assert!(!file.contains(&bob) && file.contains("\"bob\""));
    // The same name twice in one tenant is refused; a bad name or role too.
    for body in [
        json!({"name": "bob", "role": "auditor"}),
        json!({"name": "bad name", "role": "auditor"}),
        json!({"name": "admin-api", "role": "operator"}),
        json!({"name": "read-token", "role": "auditor"}),
        json!({"name": "carol", "role": "root"}),
    ] {
        let (s, v) = call(
            &h,
            "POST",
            "/t/acme/v1/api-tokens",
            Some(&t.acme_admin),
            Some(body),
        )
        .await;
        assert_eq!(s, 400, "{v}");
    }
    // Listing shows acme's tokens (names and roles), none of globex's.
    let (s, list) = call(
        &h,
        "GET",
        "/t/acme/v1/api-tokens",
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "audrey", "bob"], "{list}");
    assert!(!list.to_string().contains("sha256"), "{list}");
    // Operators and auditors manage no tokens; acme's admin none of globex's.
    for token in [&t.acme_operator, &t.acme_auditor] {
        let (s, _) = call(
            &h,
            "POST",
            "/t/acme/v1/api-tokens",
            Some(token),
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
        assert_eq!(s, 403);
    }
    let (s, _) = call(
        &h,
        "DELETE",
        "/t/acme/v1/api-tokens/gordon",
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &h,
        "DELETE",
        "/t/globex/v1/api-tokens/gordon",
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(
        &h,
        "GET",
        "/t/globex/v1/workloads",
        Some(&t.globex_operator),
        None,
    )
    .await;
    assert_eq!(s, 200, "gordon's token still works");
    // Revoked: bob's token is nobody's at once.
    let (s, _) = call(
        &h,
        "DELETE",
        "/t/acme/v1/api-tokens/bob",
        Some(&t.acme_admin),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = call(&h, "GET", "/t/acme/v1/workloads", Some(&bob), None).await;
    assert_eq!(s, 401);
    // Both changes are in acme's audit log, by acme's admin.
    let (_, log) = call(
        &h,
        "GET",
        "/t/acme/v1/audit/entries",
        Some(&t.acme_auditor),
        None,
    )
    .await;
    let log = log.to_string();
    assert!(
        log.contains("api-token.create") && log.contains("api-token.delete"),
        "{log}"
    );
}

/// The same isolation on PostgreSQL: the default tenant and each tenant in a database of its
/// own on one real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_each_tenant_has_its_own_database() {
    let pg = tokio::task::spawn_blocking(vouch_testkit::Postgres::start)
        .await
        .unwrap();
    let urls = [
        pg.fresh_database(),
        pg.fresh_database(),
        pg.fresh_database(),
    ];
    pg_isolation(urls).await;
}

/// ... or a schema of its own in one database (`options=-c search_path=<schema>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_each_tenant_may_have_its_own_schema_in_one_database() {
    let pg = tokio::task::spawn_blocking(vouch_testkit::Postgres::start)
        .await
        .unwrap();
    let db = pg.fresh_database();
    for schema in ["acme", "globex"] {
        let out = std::process::Command::new("psql")
            .arg(&db)
            .args(["-c", &format!("CREATE SCHEMA {schema}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let in_schema = |schema: &str| format!("{db}?options=-c%20search_path%3D{schema}");
    pg_isolation([db.clone(), in_schema("acme"), in_schema("globex")]).await;
    // The tenants' tables are in their schemas.
    let out = std::process::Command::new("psql")
        .arg(&db)
        .args(["-At", "-c", "SELECT count(*) FROM acme.workloads"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
}

/// A verifier whose default tenant, acme and globex use `urls`: an acme agent's result is
/// acme's alone, and acme's admin reaches nothing of globex.
async fn pg_isolation(urls: [String; 3]) {
    let [default_url, acme_url, globex_url] = urls;
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        database_url: Some(default_url),
        tenants: TENANTS
            .iter()
            .zip([acme_url, globex_url])
            .map(|((name, td), url)| TenantConfig {
                name: (*name).into(),
                trust_domain: (*td).into(),
                database_url: Some(url),
            })
            .collect(),
        ..ServerConfig::default()
    };
    let server = vouch_server::start(cfg.clone()).await.unwrap();
    let admin = |t: &str| {
        std::fs::read_to_string(cfg.data_dir.join(format!("tenants/{t}/keys/admin.token")))
            .unwrap()
            .trim()
            .to_string()
    };
    let (acme_admin, globex_admin) = (admin("acme"), admin("globex"));

    // An acme agent enrols with an acme join token and attests; its result is acme's.
    let (s, v) = call_at(
        &server,
        "POST",
        "/t/acme/v1/tokens",
        Some(&acme_admin),
        Some(json!({"ttl": 600})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let exe = dir.path().join("w.bin");
    std::fs::write(&exe, "binary").unwrap();
    let mut agent = Agent::new(AgentConfig {
        servers: vec![server.base_url.clone()],
        tenant: Some("acme".into()),
        ca_cert: server.ca_cert.clone(),
        data_dir: dir.path().join("agent"),
        join_token: Some(v["token"].as_str().unwrap().to_string()),
        workload_name: "web".into(),
        exe: Some(exe),
        result_audience: Some(RP_AUDIENCE.into()),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let r = agent.attest_once().await.unwrap();
    let jwks = |prefix: &'static str| {
        let server = &server;
        async move {
            let (_, v) = call_at(
                server,
                "GET",
                &format!("{prefix}/.well-known/jwks.json"),
                None,
                None,
            )
            .await;
            ResultVerifier::from_jwks_json(&v.to_string()).unwrap()
        }
    };
    let v = jwks("/t/acme")
        .await
        .verify(&r.result, &inspect(Some("acme")))
        .unwrap();
    assert_eq!(v.ear.tenant.as_deref(), Some("acme"));
    assert!(
        jwks("/t/globex")
            .await
            .verify(&r.result, &inspect(None))
            .is_err()
    );

    // Globex sees no acme workload and acme's admin reaches nothing of globex.
    let (s, list) = call_at(
        &server,
        "GET",
        "/t/globex/v1/workloads",
        Some(&globex_admin),
        None,
    )
    .await;
    assert_eq!((s, list), (200, json!([])));
    let (s, list) = call_at(
        &server,
        "GET",
        "/t/acme/v1/workloads",
        Some(&acme_admin),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    for (method, path) in [
        ("GET", "/t/globex/v1/workloads"),
        ("GET", "/t/globex/v1/entries"),
        ("POST", "/t/globex/v1/tokens"),
    ] {
        let (s, v) = call_at(&server, method, path, Some(&acme_admin), Some(json!({}))).await;
        assert_eq!(
            (s, v["error"]["kind"].as_str()),
            (403, Some("forbidden")),
            "{path}: {v}"
        );
    }
    server.shutdown().await;
}

#[test]
fn tenant_configurations_are_checked() {
    let base = ServerConfig {
        data_dir: "/srv/vouch".into(),
        ..ServerConfig::default()
    };
    let with = |tenants: Vec<(&str, &str, Option<&str>)>, url: Option<&str>| ServerConfig {
        tenants: tenants
            .into_iter()
            .map(|(n, td, u)| TenantConfig {
                name: n.into(),
                trust_domain: td.into(),
                database_url: u.map(str::to_string),
            })
            .collect(),
        database_url: url.map(str::to_string),
        ..base.clone()
    };
    let ok = tenant_configs(&with(vec![("acme", "acme.test", None)], None)).unwrap();
    assert_eq!(
        ok[0].data_dir,
        std::path::Path::new("/srv/vouch/tenants/acme")
    );
    assert_eq!(
        ok[0].database_path(),
        std::path::Path::new("/srv/vouch/tenants/acme/vouch.db")
    );
    assert_eq!(ok[0].tenant_name(), "acme");
    assert!(ok[0].gossip.is_none() && ok[0].quorum.is_none() && ok[0].nonce_key.is_none());
    for (bad, why) in [
        (with(vec![("default", "d.test", None)], None), "default"),
        (with(vec![("Acme", "a.test", None)], None), "name"),
        (with(vec![("../x", "a.test", None)], None), "name"),
        (
            with(vec![("a", "a.test", None), ("a", "b.test", None)], None),
            "twice",
        ),
        (with(vec![("a", "vouch.local", None)], None), "trust domain"),
        (
            with(vec![("a", "a.test", None), ("b", "a.test", None)], None),
            "trust domain",
        ),
        (
            with(vec![("a", "a.test", None)], Some("postgres://h/db")),
            "database_url",
        ),
        (
            with(
                vec![("a", "a.test", Some("postgres://h/db"))],
                Some("postgres://h/db"),
            ),
            "another",
        ),
        (
            with(vec![("a", "a.test", Some("postgres://h/a"))], None),
            "SQLite",
        ),
    ] {
        let err = tenant_configs(&bad).unwrap_err().to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}

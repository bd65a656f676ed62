//! Secrets per tenant (issue 17 item 4 with issue 16 item 2's tenants), over real HTTP/TLS on
//! loopback: each tenant's secrets live in its own store under its own at-rest key; one tenant's
//! admin cannot put, list or delete another's; two tenants' secrets of the same name are each
//! released only to their own tenant's attested workload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Harness;
use serde_json::{Value, json};
use vouch_agent::{Agent, AgentConfig, AgentError};
use vouch_core::ErrorKind;
use vouch_server::TenantConfig;

const POLICY: &str =
    "package vouch.secret\n\nallow if \"vouch:status:affirming\" in input.selectors\n";

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let mut req = client
        .request(
            method.parse().unwrap(),
            format!("{}{path}", h.server.base_url),
        )
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An agent of `tenant`, enrolled with a join token its admin minted, its executable trusted
/// in that tenant.
async fn agent(h: &Harness, tenant: &str, admin: &str) -> Agent {
    let (s, t) = call(
        h,
        "POST",
        &format!("/t/{tenant}/v1/tokens"),
        admin,
        Some(json!({"ttl": 600})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let name = format!("{tenant}-app");
    let exe = h.path(&format!("{name}.bin"));
    std::fs::write(&exe, format!("binary of {name}")).unwrap();
    let sha = vouch_evidence::sha256_file(&exe).unwrap();
    let rv = json!({"kind": "executable", "key": name, "value": sha});
    let (s, v) = call(
        h,
        "POST",
        &format!("/t/{tenant}/v1/refvalues"),
        admin,
        Some(rv),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    Agent::new(AgentConfig {
        servers: vec![h.server.base_url.clone()],
        tenant: Some(tenant.into()),
        ca_cert: h.server.ca_cert.clone(),
        data_dir: h.path(&format!("agent-{name}")),
        join_token: Some(t["token"].as_str().unwrap().to_string()),
        workload_name: name,
        exe: Some(exe),
        ..AgentConfig::default()
    })
    .await
    .unwrap()
}

fn admin_token(h: &Harness, tenant: &str) -> String {
    std::fs::read_to_string(
        h.cfg
            .data_dir
            .join("tenants")
            .join(tenant)
            .join("keys/admin.token"),
    )
    .unwrap()
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_releases_only_its_own_secrets() {
    let h = Harness::new(|cfg| {
        cfg.tenants = [("acme", "acme.test"), ("globex", "globex.test")]
            .iter()
            .map(|(name, td)| TenantConfig {
                name: (*name).into(),
                trust_domain: (*td).into(),
                database_url: None,
            })
            .collect();
    })
    .await;
    let acme_admin = admin_token(&h, "acme");
    let globex_admin = admin_token(&h, "globex");
    let body = |value: &[u8]| json!({"value": B64.encode(value), "policy": POLICY});

    // Each admin puts its own "db" secret; neither can touch the other's tenant.
    let (s, v) = call(
        &h,
        "PUT",
        "/t/acme/v1/secrets/db",
        &acme_admin,
        Some(body(b"acme's")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &h,
        "PUT",
        "/t/globex/v1/secrets/db",
        &acme_admin,
        Some(body(b"stolen")),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["kind"], "forbidden");
    let (s, _) = call(&h, "GET", "/t/globex/v1/secrets", &acme_admin, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(&h, "DELETE", "/t/acme/v1/secrets/db", &globex_admin, None).await;
    assert_eq!(s, 403);
    let (s, v) = call(
        &h,
        "PUT",
        "/t/globex/v1/secrets/db",
        &globex_admin,
        Some(body(b"globex's")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, list) = call(&h, "GET", "/t/acme/v1/secrets", &acme_admin, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // The default tenant has none.
    let default_admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let (_, list) = call(&h, "GET", "/v1/secrets", default_admin.trim(), None).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    // Each tenant's at-rest key is its own.
    let k = |dir: &str| std::fs::read(h.cfg.data_dir.join(dir).join("keys/secrets.key")).unwrap();
    assert_ne!(k("tenants/acme"), k("tenants/globex"));

    // Same name, each released only within its tenant.
    let mut acme = agent(&h, "acme", &acme_admin).await;
    let mut globex = agent(&h, "globex", &globex_admin).await;
    assert_eq!(acme.get_secret("db", None, &[]).await.unwrap(), b"acme's");
    assert_eq!(
        globex.get_secret("db", None, &[]).await.unwrap(),
        b"globex's"
    );
    // Deleted in acme: gone there, still in globex.
    let (s, _) = call(&h, "DELETE", "/t/acme/v1/secrets/db", &acme_admin, None).await;
    assert_eq!(s, 200);
    match acme.get_secret("db", None, &[]).await {
        Err(AgentError::Refused { kind, .. }) => assert_eq!(kind, ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        globex.get_secret("db", None, &[]).await.unwrap(),
        b"globex's"
    );
    h.server.shutdown().await;
}

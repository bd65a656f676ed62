//! `k8s_psat` node attestation through the real verifier and agent (issue 14 item 2): an agent
//! with no join token joins with its pod's projected service-account token
//! (`POST /v1/node/attest`), as the node the token names, and SVIDs are granted on the
//! token's selectors.
//!
//! The tokens here are **minted in the test**, not recorded: the verifier checks expiry against
//! its own clock, and the one real token in testdata (`k8s/eks_psat_token.jwt`, verified with
//! its cluster's real keys in vouch-nodeattest's tests) expired in November 2025. Each one has
//! the real token's claims (an EKS pod's namespace, service account, pod and node) re-dated,
//! re-addressed to audience `vouch` and signed ES256 with a P-256 key made here, whose JWKS
//! the verifier is configured with — as an API server with an ES256 service-account key signs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use vouch_agent::{Agent, AgentConfig, AgentError, NodeAttestationConfig};
use vouch_core::ErrorKind;
use vouch_server::{RunningServer, ServerConfig, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};
use vouch_testkit::read_testdata;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const NODE_UID: &str = "ceb6b98b-f46f-448d-8a2d-4e036c36a243";

struct Setup {
    dir: tempfile::TempDir,
    server: RunningServer,
    store: Arc<dyn Store>,
    key: rcgen::KeyPair,
}

async fn server() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = key.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "sa-key-1",
        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..]),
    }]});
    let jwks_file = dir.path().join("cluster.jwks.json");
    std::fs::write(&jwks_file, serde_json::to_vec(&jwks).unwrap()).unwrap();
    let mut node_attestor = std::collections::BTreeMap::new();
    node_attestor.insert(
        "k8s_psat".to_string(),
        serde_json::json!({
            "clusters": [{
                "name": "prod",
                "issuer": ISSUER,
                "jwks": jwks_file,
                "service_account_allow_list": ["hakawai:hakawai-litellm-proxy"],
            }],
        }),
    );
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        node_attestors: vec!["k8s_psat".into()],
        node_attestor,
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg, store.clone()).await.unwrap();
    Setup {
        dir,
        server,
        store,
        key,
    }
}

/// The real EKS token's claims, re-dated (`iat` now + `from`, valid `life` seconds),
/// addressed to `aud`, signed with the cluster key made in [`server`].
fn token(
    s: &Setup,
    aud: &str,
    from: i64,
    life: u64,
    edit: impl Fn(&mut serde_json::Value),
) -> Vec<u8> {
    let real = String::from_utf8(read_testdata("k8s/eks_psat_token.jwt")).unwrap();
    let payload = real.trim().split('.').nth(1).unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    let iat = unix_now().saturating_add_signed(from);
    claims["iss"] = ISSUER.into();
    claims["aud"] = serde_json::json!([aud]);
    claims["iat"] = iat.into();
    claims["nbf"] = iat.into();
    claims["exp"] = (iat + life).into();
    edit(&mut claims);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("sa-key-1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&s.key.serialize_der()),
    )
    .unwrap()
    .into_bytes()
}

fn agent_config(s: &Setup, name: &str, token: Vec<u8>) -> AgentConfig {
    let file = s.dir.path().join(format!("{name}.token"));
    std::fs::write(&file, token).unwrap();
    let exe = s.dir.path().join(format!("{name}.bin"));
    std::fs::write(&exe, name).unwrap();
    AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir: s.dir.path().join(format!("agent-{name}")),
        workload_name: "host".into(),
        exe: Some(exe),
        node_attestation: Some(NodeAttestationConfig {
            method: "k8s_psat".into(),
            data_file: Some(file),
            url: None,
            headers: Default::default(),
        }),
        ..AgentConfig::default()
    }
}

/// The refusal's kind, after checking its message says `why`.
fn kind(r: Result<impl std::fmt::Debug, AgentError>, why: &str) -> ErrorKind {
    match r {
        Err(e) => {
            assert!(e.to_string().contains(why), "{why}: {e}");
            e.kind().unwrap_or_else(|| panic!("no kind: {e}"))
        }
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

#[tokio::test]
async fn a_node_joins_with_its_agents_projected_token_as_the_node_the_token_names() {
    let s = server().await;
    let agent = Agent::new(agent_config(&s, "a", token(&s, "vouch", 0, 600, |_| {})))
        .await
        .unwrap();
    let node = agent.enrollment().node_id.clone();
    assert_eq!(
        node,
        vouch_nodeattest::node_id_for(&format!("k8s_psat:prod:{NODE_UID}"))
    );
    let rec = s.store.node_attestation(&node).await.unwrap().unwrap();
    assert_eq!(rec.method, "k8s_psat");
    for want in [
        "k8s_psat:cluster:prod",
        "k8s_psat:agent_ns:hakawai",
        "k8s_psat:agent_sa:hakawai-litellm-proxy",
        "k8s_psat:agent_pod_name:hakawai-litellm-proxy-57456bb9cb-bwzxh",
        "k8s_psat:agent_node_name:ip-10-15-179-190.eu-west-1.compute.internal",
        &format!("k8s_psat:agent_node_uid:{NODE_UID}"),
    ] {
        assert!(
            rec.selectors.iter().any(|s| s == want),
            "{want}: {:?}",
            rec.selectors
        );
    }
    // Tokens are short-lived: the agent pod's next token (a restarted agent, another key)
    // attests the same node again.
    let again = Agent::new(agent_config(&s, "b", token(&s, "vouch", 0, 600, |_| {})))
        .await
        .unwrap();
    assert_eq!(again.enrollment().node_id, node);
    assert_ne!(again.enrollment().key_id, agent.enrollment().key_id);
}

#[tokio::test]
async fn tokens_for_another_audience_expired_forged_or_of_other_service_accounts_are_refused() {
    let s = server().await;
    let refused = |name: &'static str, why: &'static str, t: Vec<u8>| {
        let cfg = agent_config(&s, name, t);
        async move { kind(Agent::new(cfg).await, why) }
    };
    // The same pod's token for AWS STS (the real token's audience).
    assert_eq!(
        refused(
            "sts",
            "audience",
            token(&s, "sts.amazonaws.com", 0, 600, |_| {})
        )
        .await,
        ErrorKind::NodeAttestation
    );
    // Expired a minute and a half ago (beyond the 60 s skew).
    assert_eq!(
        refused("expired", "expired", token(&s, "vouch", -700, 610, |_| {})).await,
        ErrorKind::NodeAttestation
    );
    // Another service account of the cluster.
    assert_eq!(
        refused(
            "other-sa",
            "is not allowed",
            token(&s, "vouch", 0, 600, |c| {
                c["kubernetes.io"]["serviceaccount"]["name"] = "default".into();
                c["sub"] = "system:serviceaccount:hakawai:default".into();
            })
        )
        .await,
        ErrorKind::NodeAttestation
    );
    // One byte of the signature flipped.
    let t = String::from_utf8(token(&s, "vouch", 0, 600, |_| {})).unwrap();
    let (msg, sig) = t.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    sig[5] ^= 1;
    assert_eq!(
        refused(
            "forged",
            "signature",
            format!("{msg}.{}", B64.encode(sig)).into_bytes()
        )
        .await,
        ErrorKind::NodeAttestation
    );
    assert!(
        s.store.nodes().await.unwrap().is_empty(),
        "nothing recorded"
    );
}

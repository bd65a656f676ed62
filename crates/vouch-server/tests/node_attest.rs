//! Zero-touch node attestation through the real verifier and agent (issue 14 item 2):
//! `POST /v1/node/attest` with a real EC2 instance identity document (testdata/cloud/aws, see
//! SOURCES.md) checked against AWS's published certificate for its region. The agent joins with
//! no join token, its node id derives from the document's account, region and instance, it
//! attests affirming, and SVIDs are granted on the document's selectors (the verifier's word,
//! never the agent's). Refused: a flipped byte of the document's signature, a method the
//! verifier does not accept, join tokens when `join_token` is not listed, another agent key
//! with the same long-lived document (until an admin re-enrolment), a replayed request (its
//! nonce is used up), a request signed by another key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::path::PathBuf;
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, AgentError, NodeAttestationConfig, VerifierClient};
use vouch_core::wire::{NodeAttestRequest, SvidRequest, node_attest_signing_input};
use vouch_core::{ArStatus, ErrorKind};
use vouch_evidence::AgentKey;
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_policy::ReferenceValue;
use vouch_server::{RunningServer, ServerConfig, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};
use vouch_testkit::{read_testdata, testdata};

const ACCOUNT: &str = "189292791360";
const INSTANCE: &str = "i-0c5541936caf78c12";

struct Setup {
    dir: tempfile::TempDir,
    server: RunningServer,
    store: Arc<dyn Store>,
}

async fn server(methods: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut node_attestor = std::collections::BTreeMap::new();
    node_attestor.insert(
        "aws_iid".to_string(),
        serde_json::json!({
            "certificates_dir": testdata("cloud/aws/certs"),
            "allowed_accounts": [ACCOUNT],
        }),
    );
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        node_attestors: methods.iter().map(|m| m.to_string()).collect(),
        node_attestor,
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg, store.clone()).await.unwrap();
    Setup { dir, server, store }
}

/// The real document in the form an agent fetches it: the `/rsa2048` PKCS#7, which holds it.
fn document(flip: Option<usize>) -> Vec<u8> {
    let mut rsa2048 = String::from_utf8(read_testdata("cloud/aws/iid_ap-southeast-2.rsa2048"))
        .unwrap()
        .trim()
        .to_string();
    if let Some(at) = flip {
        let e = base64::engine::general_purpose::STANDARD;
        let mut d = e.decode(rsa2048.lines().collect::<String>()).unwrap();
        let n = d.len();
        d[n - at] ^= 0x01;
        rsa2048 = e.encode(d);
    }
    serde_json::to_vec(&serde_json::json!({ "rsa2048": rsa2048 })).unwrap()
}

fn agent_config(s: &Setup, name: &str, doc: Vec<u8>) -> AgentConfig {
    let file = s.dir.path().join(format!("{name}.iid.json"));
    std::fs::write(&file, doc).unwrap();
    let exe = s.dir.path().join(format!("{name}.bin"));
    std::fs::write(&exe, name).unwrap();
    AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir: s.dir.path().join(format!("agent-{name}")),
        workload_name: "host".into(),
        exe: Some(exe),
        node_attestation: Some(NodeAttestationConfig {
            method: "aws_iid".into(),
            data_file: Some(file),
            url: None,
            headers: Default::default(),
        }),
        ..AgentConfig::default()
    }
}

fn client(s: &Setup) -> VerifierClient {
    VerifierClient::new(&s.server.base_url, s.server.ca_cert.as_deref()).unwrap()
}

fn kind(r: Result<impl std::fmt::Debug, AgentError>) -> ErrorKind {
    match r {
        Err(e) => e.kind().unwrap_or_else(|| panic!("no kind: {e}")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

/// A signed node attestation request by `key` for `doc`, with a fresh nonce.
async fn request(s: &Setup, key: &AgentKey, method: &str, doc: &[u8]) -> NodeAttestRequest {
    let nonce = client(s).challenge().await.unwrap().nonce;
    let data = B64.encode(doc);
    let pk = key.public_key_b64();
    NodeAttestRequest {
        signature: key.sign_b64(&node_attest_signing_input(method, &data, &pk, "h", &nonce)),
        method: method.into(),
        data,
        public_key: pk,
        hostname: "h".into(),
        nonce,
    }
}

#[tokio::test]
async fn a_node_joins_on_its_real_ec2_identity_document_and_gets_identities_on_its_fields() {
    let s = server(&["aws_iid"]).await;
    let mut agent = Agent::new(agent_config(&s, "a", document(None)))
        .await
        .unwrap();
    let node = agent.enrollment().node_id.clone();
    assert_eq!(
        node,
        vouch_nodeattest::node_id_for(&format!("aws_iid:{ACCOUNT}:ap-southeast-2:{INSTANCE}"))
    );
    let rec = s.store.node_attestation(&node).await.unwrap().unwrap();
    assert_eq!(rec.method, "aws_iid");
    assert!(
        rec.selectors
            .contains(&format!("aws_iid:account:{ACCOUNT}")),
        "{:?}",
        rec.selectors
    );

    // Trusted, it attests affirming, and an entry naming the document's account and
    // instance grants an SVID; the agent cannot claim those selectors itself.
    let ev = agent.evidence("x").unwrap();
    let m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
    s.store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: "host".into(),
                value: m.workload.exe_sha256.clone(),
            },
            unix_now(),
        )
        .await
        .unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
    let id = SpiffeId::parse("spiffe://vouch.local/ec2/web").unwrap();
    let entry = Entry::new(
        "e-ec2".into(),
        &id,
        vec![
            Selector::parse(&format!("aws_iid:account:{ACCOUNT}")).unwrap(),
            Selector::parse(&format!("aws_iid:instance_id:{INSTANCE}")).unwrap(),
            Selector::parse("vouch:node_attestor:aws_iid").unwrap(),
            Selector::parse("unix:uid:1000").unwrap(),
        ],
        600,
        unix_now(),
    )
    .unwrap();
    s.store.add_entry(&entry).await.unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let pk = B64.encode(rcgen::PublicKeyData::subject_public_key_info(&leaf));
    let ask = |selectors: Vec<String>| {
        let key_id = agent.enrollment().key_id.clone();
        SvidRequest {
            signature: agent.key().sign_b64(&vouch_core::wire::svid_signing_input(
                &key_id, "host", &pk, &selectors,
            )),
            key_id,
            workload: "host".into(),
            public_key: pk.clone(),
            selectors,
        }
    };
    let r = client(&s)
        .svid(&ask(vec!["unix:uid:1000".into()]))
        .await
        .unwrap();
    assert_eq!(r.svids.len(), 1);
    assert_eq!(r.svids[0].spiffe_id, id.to_string());
    assert_eq!(
        kind(
            client(&s)
                .svid(&ask(vec![format!("aws_iid:account:{ACCOUNT}")]))
                .await
        ),
        ErrorKind::MalformedRequest,
        "an agent may not report the node attestor's selectors"
    );

    // The same long-lived document with another agent key: refused (anyone who once read the
    // document could otherwise take the node over), and the first key keeps working.
    assert_eq!(
        kind(Agent::new(agent_config(&s, "b", document(None))).await),
        ErrorKind::NodeAttested
    );
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
}

#[tokio::test]
async fn forged_replayed_and_unaccepted_node_attestations_are_refused() {
    let s = server(&["aws_iid"]).await;
    // One flipped byte of the PKCS#7 (its signature, at the end).
    assert_eq!(
        kind(Agent::new(agent_config(&s, "forged", document(Some(20)))).await),
        ErrorKind::NodeAttestation
    );
    assert!(
        s.store.nodes().await.unwrap().is_empty(),
        "nothing recorded"
    );

    // A request replayed: its nonce is used up by the first.
    let key = AgentKey::generate().unwrap();
    let req = request(&s, &key, "aws_iid", &document(None)).await;
    let e = client(&s).node_attest(&req).await.unwrap();
    assert_eq!(
        kind(client(&s).node_attest(&req).await),
        ErrorKind::NonceReused
    );
    assert_eq!(s.store.nodes().await.unwrap().len(), 1);
    assert_eq!(
        s.store.agent_key(&e.key_id).await.unwrap().unwrap().node_id,
        e.node_id
    );

    // Signed by another key than the one it enrolls.
    let mut req = request(
        &s,
        &AgentKey::generate().unwrap(),
        "aws_iid",
        &document(None),
    )
    .await;
    req.public_key = AgentKey::generate().unwrap().public_key_b64();
    assert_eq!(
        kind(client(&s).node_attest(&req).await),
        ErrorKind::EvidenceSignature
    );

    // A method this verifier does not accept, and join tokens when only aws_iid is listed.
    let req = request(&s, &AgentKey::generate().unwrap(), "gcp_iit", b"x.y.z").await;
    assert_eq!(
        kind(client(&s).node_attest(&req).await),
        ErrorKind::NodeAttestation
    );
    let key = AgentKey::generate().unwrap();
    let pk = key.public_key_b64();
    let token = "a-token";
    let r = client(&s)
        .enroll(&vouch_core::wire::EnrollRequest {
            join_token: token.into(),
            signature: key.sign_b64(&vouch_core::wire::enroll_signing_input(token, &pk)),
            public_key: pk,
            hostname: "h".into(),
        })
        .await;
    assert_eq!(kind(r), ErrorKind::NodeAttestation);
}

#[tokio::test]
async fn a_verifier_refuses_to_start_with_a_node_attestor_it_cannot_build() {
    let dir = tempfile::tempdir().unwrap();
    let base = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&base.database_path()).await.unwrap());
    for (methods, settings, want) in [
        (vec!["nope"], None, "unknown method"),
        (vec!["aws_iid"], None, "no [node_attestor.aws_iid] table"),
        (
            vec!["aws_iid"],
            Some(serde_json::json!({"certificates_dir": PathBuf::from("/nonexistent")})),
            "aws_iid",
        ),
        (
            vec!["aws_iid"],
            Some(serde_json::json!({"certificate_dir": "typo"})),
            "[node_attestor.aws_iid]",
        ),
    ] {
        let mut cfg = base.clone();
        cfg.node_attestors = methods.iter().map(|m| m.to_string()).collect();
        if let Some(v) = settings {
            cfg.node_attestor.insert("aws_iid".into(), v);
        }
        let e = match start_with_store(cfg, store.clone()).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("started with {methods:?}"),
        };
        assert!(e.contains(want), "{e}");
    }
}

//! SPIFFE federation (`https_web`): a verifier fetches a foreign trust domain's bundle from its
//! HTTPS bundle endpoint, keeps it on disk, and its agents hand it to workloads with their
//! SVIDs and bundles. A broken endpoint leaves nothing behind and does not stop the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use tokio_stream::StreamExt as _;

use vouch_agent::{proto, request};
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_server::{FederatedDomain, unix_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_bundle_reaches_workloads_through_the_workload_api() {
    let b = common::Harness::new(|c| c.trust_domain = "b.test".into()).await;
    let b_ca = b.server.ca_cert.clone().unwrap();
    let a = common::Harness::new(|c| {
        c.federation = vec![
            FederatedDomain {
                trust_domain: "b.test".into(),
                bundle_endpoint: format!("{}/v1/bundle", b.server.base_url),
                endpoint_ca: Some(b_ca.clone()),
            },
            // Answers, but not with a bundle.
            FederatedDomain {
                trust_domain: "broken.test".into(),
                bundle_endpoint: format!("{}/healthz", b.server.base_url),
                endpoint_ca: Some(b_ca.clone()),
            },
        ]
    })
    .await;
    let a_client = a.client();
    let mut fed = serde_json::Value::Null;
    for _ in 0..100 {
        fed = a_client.federation().await.unwrap();
        if fed.get("spiffe://b.test").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(fed.get("spiffe://broken.test").is_none(), "{fed}");
    let b_bundle = b.client().bundle().await.unwrap();
    let b_root = base64::engine::general_purpose::STANDARD
        .decode(b_bundle["keys"][0]["x5c"][0].as_str().unwrap())
        .unwrap();
    let fetched = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(fed["spiffe://b.test"]["x509"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(fetched, b_root);
    assert!(
        a.cfg.data_dir.join("spiffe/federated/b.test.json").exists(),
        "kept for restarts"
    );

    // A workload on A's node gets B's authorities with its SVID and in the bundle streams.
    let sock = a.path("agent/api.sock");
    let mut agent = a
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    a.trust(&mut agent).await;
    let e = Entry::new(
        "e-svc".into(),
        &SpiffeId::parse("spiffe://vouch.local/svc").unwrap(),
        vec![Selector::parse("vouch:workload:svc").unwrap()],
        600,
        unix_now(),
    )
    .unwrap();
    a.store.add_entry(&e).await.unwrap();
    agent.attest_once().await.unwrap();
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let x = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x.federated_bundles["spiffe://b.test"], b_root);
    let xb = c
        .fetch_x509_bundles(request(proto::X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(xb.bundles.len(), 2);
    assert_eq!(xb.bundles["spiffe://b.test"], b_root);
    let jb = c
        .fetch_jwt_bundles(request(proto::JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let b_jwks: serde_json::Value = serde_json::from_slice(&jb.bundles["spiffe://b.test"]).unwrap();
    assert_eq!(b_jwks["keys"][0]["use"], "jwt-svid");

    // A JWT-SVID minted in B is validated by A's agent with B's federated JWT bundle.
    let mut peer = b.agent("peer").await;
    b.trust(&mut peer).await;
    let e = Entry::new(
        "e-peer".into(),
        &SpiffeId::parse("spiffe://b.test/peer").unwrap(),
        vec![Selector::parse("vouch:workload:peer").unwrap()],
        600,
        unix_now(),
    )
    .unwrap();
    b.store.add_entry(&e).await.unwrap();
    peer.attest_once().await.unwrap();
    let key_id = peer.enrollment().key_id.clone();
    let minted = b
        .client()
        .jwt_svid(&vouch_core::wire::JwtSvidRequest {
            signature: peer
                .key()
                .sign_b64(&vouch_core::wire::jwt_svid_signing_input(
                    &key_id,
                    "peer",
                    &["database".into()],
                    &[],
                    unix_now(),
                    "federation-test-jti-1",
                )),
            key_id,
            workload: "peer".into(),
            audience: vec!["database".into()],
            selectors: vec![],
            iat: unix_now(),
            jti: "federation-test-jti-1".into(),
        })
        .await
        .unwrap();
    let v = c
        .validate_jwtsvid(request(proto::ValidateJwtsvidRequest {
            audience: "database".into(),
            svid: minted[0].token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, "spiffe://b.test/peer");
    // The same token for another audience, or with one signature byte changed: refused.
    let mut forged = minted[0].token.clone().into_bytes();
    let n = forged.len();
    forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
    for (aud, svid) in [
        ("other", minted[0].token.clone()),
        ("database", String::from_utf8(forged).unwrap()),
    ] {
        let r = c
            .validate_jwtsvid(request(proto::ValidateJwtsvidRequest {
                audience: aud.into(),
                svid,
            }))
            .await;
        assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
    api.stop().await.unwrap();
}

#[test]
fn malformed_bundles_are_refused_with_the_reason() {
    let cert = {
        let td = vouch_identity::TrustDomain::parse("x.test").unwrap();
        let ca = vouch_identity::SvidCa::generate(&td, 3600, unix_now()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(ca.cert_der())
    };
    let ok = serde_json::json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": [cert]}]});
    assert!(vouch_server::parse_bundle(ok.to_string().as_bytes(), 0).is_ok());
    for (doc, why) in [
        ("not json".to_string(), "not JSON"),
        ("{}".to_string(), "keys"),
        (
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [cert, cert]}]}).to_string(),
            "exactly one",
        ),
        (
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]}).to_string(),
            "not a certificate",
        ),
        (
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [cert]}, {"use": "jwt-svid"}]})
                .to_string(),
            "kid",
        ),
        (
            serde_json::json!({"keys": [{"use": "other", "x5c": [cert]}]}).to_string(),
            "unknown use",
        ),
        (serde_json::json!({"keys": []}).to_string(), "no x509-svid"),
    ] {
        let e = vouch_server::parse_bundle(doc.as_bytes(), 0).unwrap_err();
        assert!(e.contains(why), "{why}: {e}");
    }
    let big = vec![b' '; 1024 * 1024 + 1];
    assert!(
        vouch_server::parse_bundle(&big, 0)
            .unwrap_err()
            .contains("too large")
    );
}

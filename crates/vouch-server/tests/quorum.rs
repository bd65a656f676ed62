//! Quorum results (2 of 3) from three replicas on one PostgreSQL, keys made by a distributed
//! key generation: the result is one Ed25519 signature under the group key that a plain JWT
//! library verifies; a verifier signs only what its own appraisal gives (a lying coordinator,
//! a replayed nonce and a clock beyond the tolerance are refused); with two of three verifiers
//! gone, the last one cannot make a result alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use vouch_agent::{Agent, AgentConfig, VerifierClient};
use vouch_core::wire::AttestRequest;
use vouch_core::{ArStatus, ErrorKind, Nonce, NonceKey};
use vouch_policy::ReferenceValue;
use vouch_server::{QuorumSettings, ServerConfig, unix_now};
use vouch_store::{PgStore, Store};

use vouch_testkit::free_port;

/// Three participants run the DKG ceremony in one directory.
fn dkg(dir: &Path) {
    use vouch_server::quorum::dkg;
    for id in 1..=3 {
        dkg::round1(id, 2, 3, dir).unwrap();
    }
    for id in 1..=3 {
        assert_eq!(dkg::round2(id, 3, dir).unwrap().len(), 2);
    }
    for id in 1..=3 {
        dkg::finish(id, 3, dir).unwrap();
    }
    assert!(
        !dir.join("secret-1.round1.json").exists(),
        "round secrets are deleted"
    );
}

/// POST `body` to `url`, with `signature` (a `vouch-quorum-signature` header value) if any.
async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        r = r.header(vouch_server::quorum::PEER_SIGNATURE_HEADER, s);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The body and the signature header of a request to `/v1/quorum/<step>` from the holder of
/// `key`, signed at `at`.
fn signed(
    key: &frost_ed25519::keys::KeyPackage,
    step: &str,
    body: &serde_json::Value,
    at: u64,
) -> (Vec<u8>, String) {
    let bytes = body.to_string().into_bytes();
    let sig = vouch_server::quorum::sign_peer_request(key, step, &bytes, at).unwrap();
    (bytes, sig)
}

/// POST `body` to `url` as quorum member `key` (A's share in this test).
async fn post(
    http: &reqwest::Client,
    url: String,
    body: serde_json::Value,
    key: &frost_ed25519::keys::KeyPackage,
) -> (u16, serde_json::Value) {
    let step = url.rsplit('/').next().unwrap();
    let (bytes, sig) = signed(key, step, &body, unix_now());
    post_raw(http, &url, &bytes, Some(&sig)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_verifiers_sign_one_eddsa_result_and_one_alone_cannot() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let d = tempfile::tempdir().unwrap();
    let keys = d.path().join("quorum");
    std::fs::create_dir_all(&keys).unwrap();
    dkg(&keys);
    let nonce_key = d.path().join("nonce.key");
    std::fs::write(&nonce_key, [0x42; 32]).unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let base = |i: usize| format!("https://127.0.0.1:{}", ports[i]);
    let tls = d.path().join("r0/tls");
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let peers = (0..3).filter(|j| *j != i).map(base).collect();
        let cfg = ServerConfig {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            data_dir: d.path().join(format!("r{i}")),
            database_url: Some(url.clone()),
            nonce_key: Some(nonce_key.clone()),
            spiffe_dir: Some(d.path().join("spiffe")),
            tls_cert: (i > 0).then(|| tls.join("server.crt")),
            tls_key: (i > 0).then(|| tls.join("server.key")),
            quorum: Some(QuorumSettings {
                key_package: keys.join(format!("signer-{}.json", i + 1)),
                group: keys.join("group.json"),
                peers,
                ca_cert: Some(tls.join("ca.crt")),
                required: true,
            }),
            ..ServerConfig::default()
        };
        servers.push(Some(vouch_server::start(cfg).await.unwrap()));
    }
    let ca = tls.join("ca.crt");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let exe = d.path().join("app.bin");
    std::fs::write(&exe, "app v1").unwrap();
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: "app".into(),
                value: vouch_evidence::sha256_file(&exe).unwrap(),
            },
            unix_now(),
        )
        .await
        .unwrap();
    let mut agent = Agent::new(AgentConfig {
        servers: vec![base(0)],
        ca_cert: Some(ca.clone()),
        data_dir: d.path().join("agent"),
        join_token: Some(
            vouch_server::create_join_token(store.as_ref(), 60, None)
                .await
                .unwrap(),
        ),
        workload_name: "app".into(),
        exe: Some(exe.clone()),
        result_audience: Some("rp".into()),
        ..AgentConfig::default()
    })
    .await
    .unwrap();

    // A quorum result: a plain EdDSA JWT check with the group key from A's JWKS.
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming);
    let quorum = r.quorum_result.clone().expect("a quorum result");
    let client = VerifierClient::new(&base(0), Some(&ca)).unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&client.jwks().await.unwrap()).unwrap();
    let group = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str().unwrap().starts_with("quorum-"))
        .unwrap()
        .clone();
    let key = jsonwebtoken::DecodingKey::from_ed_components(group["x"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(&quorum, &key, &v)
        .unwrap()
        .claims;
    let single: serde_json::Value =
        serde_json::from_slice(&B64.decode(r.result.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        claims, single,
        "the quorum signed the very claims of the result"
    );
    // vouch-rp takes it by kid from the same JWKS.
    let rp = vouch_rp::ResultVerifier::from_jwks_json(&jwks.to_string()).unwrap();
    rp.verify(&quorum, &vouch_rp::Requirements::for_audience("rp"))
        .unwrap();
    // With pq_signatures (the default) the coordinator adds its ML-DSA-65 signature beside the
    // group's FROST one (issue 17 item 3); a relying party requiring both accepts it.
    let quorum_pq = r.quorum_result_pq.clone().expect("quorum_result_pq");
    let parsed = vouch_core::jws::GeneralJws::parse(&quorum_pq).unwrap();
    assert_eq!(parsed.compact(0).unwrap(), quorum);
    rp.verify(
        &quorum_pq,
        &vouch_rp::Requirements {
            signatures: vouch_rp::SignatureMode::Both,
            ..vouch_rp::Requirements::for_audience("rp")
        },
    )
    .unwrap();
    assert_eq!(
        rp.verify(
            &quorum,
            &vouch_rp::Requirements {
                signatures: vouch_rp::SignatureMode::Both,
                ..vouch_rp::Requirements::for_audience("rp")
            },
        ),
        Err(vouch_rp::RpError::PostQuantumMissing)
    );
    // One flipped signature byte: refused.
    let mut parts: Vec<String> = quorum.split('.').map(str::to_string).collect();
    let mut sig = B64.decode(&parts[2]).unwrap();
    sig[10] ^= 1;
    parts[2] = B64.encode(sig);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &v).is_err());

    // B as a peer: it commits to an honest proposal, once per nonce; it refuses a proposal
    // whose claims are not its own appraisal's, and one stamped beyond its clock tolerance.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let header = quorum.split('.').next().unwrap().to_string();
    let mut propose = |claims: &serde_json::Value, nonce: &str, session: &str| {
        let evidence = agent.evidence(nonce).unwrap();
        serde_json::json!({
            "session": session,
            "request": AttestRequest { evidence, result_audience: Some("rp".into()) },
            "signing_input": format!("{header}.{}", B64.encode(claims.to_string())),
        })
    };
    let fresh = |nonce: &str, iat: u64| {
        let mut c = claims.clone();
        c["eat_nonce"] = vouch_core::eat_nonce(nonce).into();
        c["iat"] = iat.into();
        c["exp"] = (iat + 60).into();
        c
    };
    let share = |i: u16| {
        vouch_server::quorum::read_key_package(&keys.join(format!("signer-{i}.json"))).unwrap()
    };
    let a_key = share(1);
    let commit = format!("{}/v1/quorum/commit", base(1));
    let n1 = client.challenge().await.unwrap().nonce;
    let honest = propose(&fresh(&n1, unix_now() - 3), &n1, "s1");
    let (status, body) = post(&http, commit.clone(), honest, &a_key).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["commitments"].is_object(), "{body}");
    let again = propose(&fresh(&n1, unix_now()), &n1, "s2");
    let (status, body) = post(&http, commit.clone(), again, &a_key).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (409, Some("nonce_reused")),
        "{body}"
    );

    let n2 = client.challenge().await.unwrap().nonce;
    let mut lie = fresh(&n2, unix_now());
    lie["submods"]["workload"]["ear.trustworthiness-vector"]["executables"] = 96.into();
    lie["submods"]["workload"]["ear.status"] = "affirming".into();
    lie["sub"] = "someone-else/app".into();
    let (status, body) = post(&http, commit.clone(), propose(&lie, &n2, "s3"), &a_key).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["kind"], "quorum_disagrees");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("own appraisal differs")
    );

    let n3 = client.challenge().await.unwrap().nonce;
    let skewed = propose(&fresh(&n3, unix_now() - 60), &n3, "s4");
    let (status, body) = post(&http, commit.clone(), skewed, &a_key).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tolerance 5 s"),
        "{body}"
    );

    // Round two only for the agreed message and session.
    let sign = format!("{}/v1/quorum/sign", base(1));
    let (status, _) = post(
        &http,
        sign.clone(),
        serde_json::json!({"session": "never", "signing_package": serde_json::Value::Null}),
        &a_key,
    )
    .await;
    assert_eq!(status, 400);

    // Issue 12 item 11: only members of this quorum are heard, before any appraisal.
    let unauthenticated = |(status, body): (u16, serde_json::Value)| {
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (401, Some("unauthenticated")),
            "{body}"
        );
    };
    // Unsigned: refused before the body is even read as JSON.
    unauthenticated(post_raw(&http, &commit, b"not json", None).await);
    unauthenticated(post_raw(&http, &sign, b"{}", None).await);
    let n4 = client.challenge().await.unwrap().nonce;
    let proposal = propose(&fresh(&n4, unix_now()), &n4, "s5");
    unauthenticated(post_raw(&http, &commit, proposal.to_string().as_bytes(), None).await);
    // Signed by a share of another group (same identifier 1), by B's own share (a reflection),
    // too long ago, for the other step, or over a body changed by one byte afterwards.
    let other = d.path().join("other-group");
    std::fs::create_dir_all(&other).unwrap();
    vouch_server::quorum::dealer(2, 3, &other).unwrap();
    let stranger = vouch_server::quorum::read_key_package(&other.join("signer-1.json")).unwrap();
    let (bytes, sig) = signed(&stranger, "commit", &proposal, unix_now());
    unauthenticated(post_raw(&http, &commit, &bytes, Some(&sig)).await);
    let (bytes, sig) = signed(&share(2), "commit", &proposal, unix_now());
    unauthenticated(post_raw(&http, &commit, &bytes, Some(&sig)).await);
    let (bytes, sig) = signed(&a_key, "commit", &proposal, unix_now() - 60);
    unauthenticated(post_raw(&http, &commit, &bytes, Some(&sig)).await);
    let (bytes, sig) = signed(&a_key, "sign", &proposal, unix_now());
    unauthenticated(post_raw(&http, &commit, &bytes, Some(&sig)).await);
    let (mut bytes, sig) = signed(&a_key, "commit", &proposal, unix_now());
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    unauthenticated(post_raw(&http, &commit, &bytes, Some(&sig)).await);
    bytes[at] ^= 1;
    // The same, as A signed it: agreed (none of the above reached the commitment for n4).
    let (status, body) = post_raw(&http, &commit, &bytes, Some(&sig)).await;
    assert_eq!(status, 200, "{body}");
    // That signed request again: heard once.
    let (status, body) = post_raw(&http, &commit, &bytes, Some(&sig)).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (409, Some("nonce_reused")),
        "{body}"
    );
    // A peer flooding B (C's share here) is held to its rate: 503 overloaded past its burst,
    // while the other peer (A) is still heard.
    let c_key = share(3);
    let mut statuses = Vec::new();
    for i in 0..100 {
        let body = serde_json::json!({"session": format!("flood-{i}"), "signing_package": null});
        let (bytes, sig) = signed(&c_key, "sign", &body, unix_now());
        let (status, body) = post_raw(&http, &sign, &bytes, Some(&sig)).await;
        if status == 503 {
            assert_eq!(body["error"]["kind"], "overloaded", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses[0], 400,
        "a peer's requests are heard (and this one is malformed)"
    );
    assert!(statuses.contains(&503), "{statuses:?}");
    let (status, _) = post(
        &http,
        sign.clone(),
        serde_json::json!({"session": "after-flood", "signing_package": null}),
        &a_key,
    )
    .await;
    assert_eq!(status, 400);

    // C goes: A and B still make quorum results.
    servers[2].take().unwrap().shutdown().await;
    let r = agent.attest_once().await.unwrap();
    assert!(r.quorum_result.is_some());
    let recorded = store.attestation_count().await.unwrap();

    // B goes too: A alone holds one share and makes no result; nothing is recorded.
    servers[1].take().unwrap().shutdown().await;
    let e = agent.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::QuorumUnavailable), "{e}");
    assert!(e.to_string().contains("1 of the 2"), "{e}");
    assert_eq!(store.attestation_count().await.unwrap(), recorded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_from_a_replica_with_a_skewed_clock_is_accepted_within_tolerance_only() {
    let pg = vouch_testkit::Postgres::start();
    let url = pg.fresh_database();
    let d = tempfile::tempdir().unwrap();
    let key_path = d.path().join("nonce.key");
    std::fs::write(&key_path, [0x24; 32]).unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: d.path().join("b"),
        database_url: Some(url.clone()),
        nonce_key: Some(key_path),
        clock_skew: 5,
        ..ServerConfig::default()
    };
    let b = vouch_server::start(cfg.clone()).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let mut agent = Agent::new(AgentConfig {
        servers: vec![b.base_url.clone()],
        ca_cert: b.ca_cert.clone(),
        data_dir: d.path().join("agent"),
        join_token: Some(
            vouch_server::create_join_token(store.as_ref(), 60, None)
                .await
                .unwrap(),
        ),
        workload_name: "app".into(),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let client = VerifierClient::new(&b.base_url, b.ca_cert.as_deref()).unwrap();
    // Replica A's clock runs ahead by `ahead` seconds when it issues the nonce.
    let key = NonceKey::from_slice(&[0x24; 32]).unwrap();
    let mut attest_with_nonce_from = |ahead: u64| {
        let nonce = Nonce::issue(&key, unix_now() + ahead, [ahead as u8; 32], &cfg.audience);
        let evidence = agent.evidence(&nonce).unwrap();
        let client = client.clone();
        async move {
            client
                .attest(&AttestRequest {
                    evidence,
                    result_audience: None,
                })
                .await
        }
    };
    attest_with_nonce_from(3).await.unwrap();
    let e = attest_with_nonce_from(30).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NonceFromFuture), "{e}");
}

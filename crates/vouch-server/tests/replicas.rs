//! Verifier replicas on one PostgreSQL: a nonce issued by one replica is accepted by another
//! and then spent for all of them; every replica signs results with its own key; an agent
//! fails over when its first verifier goes away, and nothing acknowledged is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, VerifierClient};
use vouch_core::wire::AttestRequest;
use vouch_core::{ArStatus, ErrorKind};
use vouch_policy::ReferenceValue;
use vouch_rp::{Requirements, ResultVerifier};
use vouch_server::{ServerConfig, create_join_token, unix_now};
use vouch_store::{PgStore, Store};

/// Two replicas, A and B, on a fresh database of `pg`, sharing the nonce key and A's loopback
/// TLS certificate (so agents trust one CA for the cluster).
struct Cluster {
    dir: tempfile::TempDir,
    a: vouch_server::RunningServer,
    b: vouch_server::RunningServer,
    ca: std::path::PathBuf,
    store: Arc<dyn Store>,
}

async fn cluster(pg: &vouch_testkit::Postgres) -> Cluster {
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let nonce_key = dir.path().join("cluster-nonce.key");
    std::fs::write(&nonce_key, vouch_server::random_bytes::<32>()).unwrap();
    let replica = |name: &str, tls: Option<std::path::PathBuf>| ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join(name),
        database_url: Some(url.clone()),
        nonce_key: Some(nonce_key.clone()),
        spiffe_dir: Some(dir.path().join("spiffe")),
        tls_cert: tls.as_ref().map(|d| d.join("server.crt")),
        tls_key: tls.as_ref().map(|d| d.join("server.key")),
        ..ServerConfig::default()
    };
    let a = vouch_server::start(replica("a", None)).await.unwrap();
    let b = vouch_server::start(replica("b", Some(dir.path().join("a/tls"))))
        .await
        .unwrap();
    let ca = a.ca_cert.clone().unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    Cluster {
        dir,
        a,
        b,
        ca,
        store,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_nonces_and_records_and_agents_fail_over() {
    let pg = vouch_testkit::Postgres::start();
    let Cluster {
        dir,
        a,
        b,
        ca,
        store,
    } = cluster(&pg).await;

    let exe = dir.path().join("app.bin");
    std::fs::write(&exe, "app v1").unwrap();
    let mut agent = Agent::new(AgentConfig {
        servers: vec![a.base_url.clone(), b.base_url.clone()],
        ca_cert: Some(ca.clone()),
        data_dir: dir.path().join("agent"),
        join_token: Some(create_join_token(store.as_ref(), 60, None).await.unwrap()),
        workload_name: "app".into(),
        exe: Some(exe.clone()),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let digest = vouch_evidence::sha256_file(&exe).unwrap();
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: "app".into(),
                value: digest,
            },
            unix_now(),
        )
        .await
        .unwrap();

    // A nonce from A, evidence to B: accepted. The same evidence again, to A: the nonce is
    // spent cluster-wide.
    let ca_client = |url: &str| VerifierClient::new(url, Some(&ca)).unwrap();
    let read_a = std::fs::read_to_string(dir.path().join("a/keys/read.token")).unwrap();
    let (ca_a, ca_b) = (
        ca_client(&a.base_url).with_read_token(read_a.trim()),
        ca_client(&b.base_url),
    );
    let nonce = ca_a.challenge().await.unwrap().nonce;
    let evidence = agent.evidence(&nonce).unwrap();
    let req = AttestRequest {
        evidence,
        result_audience: Some("rp".into()),
    };
    let r = ca_b.attest(&req).await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let replay = ca_a.attest(&req).await.unwrap_err();
    assert_eq!(replay.kind(), Some(ErrorKind::NonceReused));

    // Each replica signs with its own key: B's result verifies with B's JWKS, not with A's.
    let jwks = |c: VerifierClient| async move { c.jwks().await.unwrap() };
    let rp_b = ResultVerifier::from_jwks_json(&jwks(ca_b.clone()).await).unwrap();
    let rp_a = ResultVerifier::from_jwks_json(&jwks(ca_a.clone()).await).unwrap();
    let rp_req = Requirements::for_audience("rp");
    rp_b.verify(&r.result, &rp_req).unwrap();
    assert!(rp_a.verify(&r.result, &rp_req).is_err());
    // Both see the same record.
    assert_eq!(
        ca_a.result(&r.attestation_id).await.unwrap().attestation_id,
        r.attestation_id
    );

    // Both replicas' keys are certified by the one trust-domain CA: a relying party with the
    // trust bundle accepts both without a JWKS, and revoking A's certificate refuses A's
    // results alone.
    let nonce = ca_a.challenge().await.unwrap().nonce;
    let ra = ca_a
        .attest(&AttestRequest {
            evidence: agent.evidence(&nonce).unwrap(),
            result_audience: Some("rp".into()),
        })
        .await
        .unwrap();
    let td = vouch_identity::TrustDomain::parse("vouch.local").unwrap();
    let ca_set =
        vouch_identity::CaSet::load_or_create(&dir.path().join("spiffe"), &td, 3600, unix_now())
            .unwrap();
    let auth: Vec<Vec<u8>> = ca_set
        .authorities(unix_now())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let bundle =
        vouch_rp::SpiffeVerifier::new(&td, &auth, vouch_rp::AllowedIds::AnyInTrustDomain).unwrap();
    let rp = ResultVerifier::from_trust_bundle(bundle.clone());
    let va = rp.verify(&ra.result, &rp_req).unwrap();
    let vb = rp.verify(&r.result, &rp_req).unwrap();
    assert_ne!(va.signer, vb.signer);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let admin_b = std::fs::read_to_string(dir.path().join("b/keys/admin.token")).unwrap();
    let created = http
        .post(format!("{}/v1/revocations", b.base_url))
        .bearer_auth(admin_b.trim())
        .json(&serde_json::json!({
            "kind": "svid",
            "target": va.signer_serial.clone().unwrap(),
            "reason": "replica A's key leaked",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // A's feed serves the record B signed: one log for the cluster.
    let get_feed = |base: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{base}/v1/revocations")).send().await;
            r.unwrap().json::<serde_json::Value>().await.unwrap()
        }
    };
    let feed = get_feed(a.base_url.clone()).await;
    let mut set = vouch_rp::RevocationSet::new(bundle);
    set.insert_record(feed["records"][0].as_str().unwrap(), unix_now())
        .unwrap();
    // A's head is signed with the revoked certificate: refused. B's is taken.
    assert!(matches!(
        set.insert_head(feed["head"].as_str().unwrap(), unix_now()),
        Err(vouch_rp::RpError::Revoked { .. })
    ));
    let feed_b = get_feed(b.base_url.clone()).await;
    set.insert_head(feed_b["head"].as_str().unwrap(), unix_now())
        .unwrap();
    assert!(set.view().is_complete());
    assert!(matches!(
        set.check_result(&va, unix_now()),
        Err(vouch_rp::RpError::Revoked { .. })
    ));
    set.check_result(&vb, unix_now()).unwrap();

    // A goes away: the agent carries on through B; every acknowledged attestation is stored.
    let mut acknowledged = vec![r.attestation_id.clone(), ra.attestation_id.clone()];
    acknowledged.push(agent.attest_once().await.unwrap().attestation_id);
    a.shutdown().await;
    for _ in 0..3 {
        let r = agent.attest_once().await.unwrap();
        assert_eq!(r.status, ArStatus::Affirming);
        acknowledged.push(r.attestation_id);
    }
    for id in &acknowledged {
        assert!(store.attestation(id).await.unwrap().is_some(), "{id} lost");
    }
    assert_eq!(
        store.attestation_count().await.unwrap(),
        acknowledged.len() as u64
    );
    b.shutdown().await;
}

/// PostgreSQL is killed (immediate stop) and restarted while three agents attest through two
/// replicas: requests during the outage fail with `store_unavailable` (nothing else), the
/// replicas reconnect by themselves, and every acknowledged attestation is in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_nothing_acknowledged() {
    let pg = Arc::new(vouch_testkit::Postgres::start());
    let Cluster {
        dir,
        a,
        b,
        ca,
        store,
    } = cluster(&pg).await;
    let mut agents = Vec::new();
    for n in 0..3 {
        let name = format!("w{n}");
        let exe = dir.path().join(format!("{name}.bin"));
        std::fs::write(&exe, format!("binary {n}")).unwrap();
        store
            .add_reference_value(
                &ReferenceValue {
                    kind: "executable".into(),
                    key: name.clone(),
                    value: vouch_evidence::sha256_file(&exe).unwrap(),
                },
                unix_now(),
            )
            .await
            .unwrap();
        // Spread the agents over the replicas.
        let servers = if n % 2 == 0 {
            vec![a.base_url.clone(), b.base_url.clone()]
        } else {
            vec![b.base_url.clone(), a.base_url.clone()]
        };
        agents.push(
            Agent::new(AgentConfig {
                servers,
                ca_cert: Some(ca.clone()),
                data_dir: dir.path().join(format!("agent-{name}")),
                join_token: Some(create_join_token(store.as_ref(), 60, None).await.unwrap()),
                workload_name: name,
                exe: Some(exe),
                ..AgentConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let mut tasks = Vec::new();
    for mut agent in agents {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (Vec::new(), Vec::new());
            while std::time::Instant::now() < until {
                match agent.attest_once().await {
                    Ok(r) => ok.push((std::time::Instant::now(), r.attestation_id)),
                    Err(e) => {
                        errors.push(e.kind());
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            (ok, errors)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let restarted = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.restart())
            .await
            .unwrap();
        std::time::Instant::now()
    };
    let mut acknowledged = Vec::new();
    let mut after_restart = 0;
    for t in tasks {
        let (ok, errors) = t.await.unwrap();
        eprintln!("errors during the outage: {errors:?}");
        for kind in &errors {
            assert_eq!(
                *kind,
                Some(ErrorKind::StoreUnavailable),
                "only a clear store_unavailable during the outage: {errors:?}"
            );
        }
        after_restart += ok.iter().filter(|(at, _)| *at > restarted).count();
        acknowledged.extend(ok.into_iter().map(|(_, id)| id));
    }
    eprintln!(
        "acknowledged {}, after the restart {after_restart}",
        acknowledged.len()
    );
    assert!(after_restart > 0, "the replicas reconnected");
    for id in &acknowledged {
        assert!(store.attestation(id).await.unwrap().is_some(), "{id} lost");
    }
    assert!(store.attestation_count().await.unwrap() >= acknowledged.len() as u64);
    a.shutdown().await;
    b.shutdown().await;
}

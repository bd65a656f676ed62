//! The whole flow on loopback TLS: verifier, agent and relying party, and every rejection the
//! verifier must make, each with a real tampered input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::time::Duration;

use vouch_agent::{Agent, AgentConfig, AgentError};
use vouch_core::wire::AttestRequest;
use vouch_core::{ArStatus, ErrorKind, Nonce, NonceKey};
use vouch_rp::RpError;
use vouch_server::{ServerConfig, create_join_token, unix_now};

mod common;
use common::{Harness, rp_requirements};

fn kind(r: Result<vouch_core::wire::AttestationResult, AgentError>) -> ErrorKind {
    match r {
        Err(e) => e.kind().unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

#[tokio::test]
async fn attests_affirming_then_contraindicated_after_a_measured_file_changes() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    // Before reference values exist the default policy warns and says how to fix it.
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Warning, "{:?}", r.reasons);
    assert!(r.reasons[0].contains("vouch refvalue add executable app"));

    h.trust(&mut agent).await;
    let good = agent.attest_once().await.unwrap();
    assert_eq!(good.status, ArStatus::Affirming, "{:?}", good.reasons);
    assert!(good.valid);
    let rp = h.rp().await;
    let v = rp.verify(&good.result, &rp_requirements()).unwrap();
    assert_eq!(v.subject.as_deref(), Some(good.workload_id.as_str()));
    assert_eq!(
        std::fs::read_to_string(h.path("agent-app/result.jwt")).unwrap(),
        good.result
    );

    std::fs::write(h.path("app.conf"), "setting = 2\n").unwrap();
    let bad = agent.attest_once().await.unwrap();
    assert_eq!(bad.status, ArStatus::Contraindicated);
    assert!(
        bad.reasons.iter().any(|r| r.contains("config_file")),
        "{:?}",
        bad.reasons
    );
    assert_eq!(
        rp.verify(&bad.result, &rp_requirements()),
        Err(RpError::Status("contraindicated".into()))
    );
    // The earlier affirming result no longer stands at the verifier.
    let looked = h.client().result(&good.attestation_id).await.unwrap();
    assert!(!looked.valid);
    let w = h.store.workload(&bad.workload_id).await.unwrap().unwrap();
    assert_eq!(w.status, "contraindicated");
    h.server.shutdown().await;
}

#[tokio::test]
async fn continuous_agent_reacts_to_a_file_change_within_the_interval() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("svc").await;
    h.trust(&mut agent).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = {
        let mut a = agent;
        a = {
            // Long interval: only the file watch can trigger the second round in time.
            let cfg = a.config().clone();
            drop(a);
            Agent::new(AgentConfig {
                interval: 3600,
                join_token: None,
                ..cfg
            })
            .await
            .unwrap()
        };
        a
    };
    let task = tokio::spawn(agent.run(
        async {
            let _ = stop_rx.await;
        },
        move |r| {
            let _ = tx.send(r.as_ref().map(|r| r.status).map_err(|e| e.to_string()));
        },
    ));
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap();
    assert_eq!(first.unwrap().unwrap(), ArStatus::Affirming);
    std::fs::write(h.path("svc.conf"), "tampered\n").unwrap();
    let second = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap();
    assert_eq!(second.unwrap().unwrap(), ArStatus::Contraindicated);
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
    h.server.shutdown().await;
}

#[tokio::test]
async fn missed_deadline_makes_a_workload_contraindicated() {
    let h = Harness::new(|c| {
        c.attest_interval = 1;
        c.deadline_intervals = 2;
    })
    .await;
    let mut agent = h.agent("quiet").await;
    h.trust(&mut agent).await;
    let r = agent.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming);
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = h
            .store
            .workload(&r.workload_id)
            .await
            .unwrap()
            .unwrap()
            .status;
        if status == "contraindicated" {
            break;
        }
    }
    assert_eq!(status, "contraindicated");
    assert!(!h.client().result(&r.attestation_id).await.unwrap().valid);
    // Attesting again restores it.
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn tampered_and_unauthorised_evidence_is_refused_and_never_recorded() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let c = h.client();
    let before = h.store.attestation_count().await.unwrap();

    // A flipped byte in the signed payload.
    let n = c.challenge().await.unwrap().nonce;
    let mut ev = agent.evidence(&n).unwrap();
    let mut raw = B64.decode(&ev.payload).unwrap();
    let i = raw.len() / 2;
    raw[i] ^= 0x01;
    ev.payload = B64.encode(&raw);
    let req = AttestRequest {
        evidence: ev,
        result_audience: None,
    };
    assert_eq!(kind(c.attest(&req).await), ErrorKind::EvidenceSignature);

    // A flipped byte in the signature.
    let n = c.challenge().await.unwrap().nonce;
    let mut ev = agent.evidence(&n).unwrap();
    let mut sig = B64.decode(&ev.signature).unwrap();
    sig[0] ^= 0x80;
    ev.signature = B64.encode(&sig);
    let req = AttestRequest {
        evidence: ev,
        result_audience: None,
    };
    assert_eq!(kind(c.attest(&req).await), ErrorKind::EvidenceSignature);

    // Evidence signed by a key that was never enrolled, naming an enrolled key id.
    let n = c.challenge().await.unwrap().nonce;
    let good = agent.evidence(&n).unwrap();
    let rogue = vouch_evidence::AgentKey::generate().unwrap();
    let m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&good.payload).unwrap()).unwrap();
    let forged = vouch_evidence::sign_software_evidence(&rogue, &good.key_id, &m).unwrap();
    let req = AttestRequest {
        evidence: forged.clone(),
        result_audience: None,
    };
    assert_eq!(kind(c.attest(&req).await), ErrorKind::EvidenceSignature);
    // ... and naming a key id nobody enrolled.
    let req = AttestRequest {
        evidence: vouch_evidence::sign_software_evidence(&rogue, "ak-nobody", &m).unwrap(),
        result_audience: None,
    };
    assert_eq!(kind(c.attest(&req).await), ErrorKind::UnknownKey);

    // Issue 12: unsigned sample evidence naming this agent's key is refused outright by a
    // verifier that did not allow it (anyone who knows a key id could send it).
    let n = c.challenge().await.unwrap().nonce;
    let mut sample = agent.evidence(&n).unwrap();
    sample.kind = vouch_core::EvidenceKind::Sample;
    let req = AttestRequest {
        evidence: sample,
        result_audience: None,
    };
    assert_eq!(kind(c.attest(&req).await), ErrorKind::UnsupportedEvidence);

    // Nothing above was recorded.
    assert_eq!(h.store.attestation_count().await.unwrap(), before);
    h.server.shutdown().await;
}

#[tokio::test]
async fn nonces_expired_reused_future_forged_or_for_another_audience_are_refused() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    let c = h.client();
    let key = h.nonce_key();
    let now = unix_now();
    let send = |nonce: String, agent: &mut Agent| {
        let ev = agent.evidence(&nonce).unwrap();
        AttestRequest {
            evidence: ev,
            result_audience: None,
        }
    };

    let expired = Nonce::issue(&key, now - 120, [1; 32], &h.cfg.audience);
    assert_eq!(
        kind(c.attest(&send(expired, &mut agent)).await),
        ErrorKind::NonceExpired
    );
    let future = Nonce::issue(&key, now + 600, [2; 32], &h.cfg.audience);
    assert_eq!(
        kind(c.attest(&send(future, &mut agent)).await),
        ErrorKind::NonceFromFuture
    );
    let forged = Nonce::issue(&NonceKey::new([7; 32]), now, [3; 32], &h.cfg.audience);
    assert_eq!(
        kind(c.attest(&send(forged, &mut agent)).await),
        ErrorKind::NonceInvalid
    );
    let other = Nonce::issue(&key, now, [4; 32], "another-cluster");
    assert_eq!(
        kind(c.attest(&send(other, &mut agent)).await),
        ErrorKind::NonceAudience
    );
    let garbage = "not-a-nonce".to_string();
    assert_eq!(
        kind(c.attest(&send(garbage, &mut agent)).await),
        ErrorKind::NonceInvalid
    );

    // A nonce issued by this cluster's key but by "another replica" (never seen here) works once.
    let replica = Nonce::issue(&key, now, [5; 32], &h.cfg.audience);
    let req = send(replica, &mut agent);
    c.attest(&req).await.unwrap();
    // Replaying the same evidence (same nonce) is refused.
    assert_eq!(kind(c.attest(&req).await), ErrorKind::NonceReused);
    // So is new evidence over a used nonce.
    let n = req.evidence.key_id.clone();
    let _ = n;
    let again = send(
        Nonce::issue(&key, now, [5; 32], &h.cfg.audience),
        &mut agent,
    );
    assert_eq!(kind(c.attest(&again).await), ErrorKind::NonceReused);
    h.server.shutdown().await;
}

#[tokio::test]
async fn join_tokens_are_single_use_and_malformed_or_oversized_bodies_are_refused() {
    let h = Harness::new(|c| c.body_limit = 256 * 1024).await;
    let token = create_join_token(h.store.as_ref(), 600, None)
        .await
        .unwrap();
    let mk = |name: &str, token: &str| AgentConfig {
        servers: vec![h.server.base_url.clone()],
        ca_cert: h.server.ca_cert.clone(),
        data_dir: h.path(name),
        join_token: Some(token.to_string()),
        ..AgentConfig::default()
    };
    Agent::new(mk("a1", &token)).await.unwrap();
    match Agent::new(mk("a2", &token)).await {
        Err(e) => assert_eq!(e.kind(), Some(ErrorKind::TokenReused)),
        Ok(_) => panic!("a join token was accepted twice"),
    }
    match Agent::new(mk("a3", "vjt_made_up")).await {
        Err(e) => assert_eq!(e.kind(), Some(ErrorKind::TokenInvalid)),
        Ok(_) => panic!("an unknown join token was accepted"),
    }
    let expired = create_join_token(h.store.as_ref(), 0, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    match Agent::new(mk("a4", &expired)).await {
        Err(e) => assert_eq!(e.kind(), Some(ErrorKind::TokenExpired)),
        Ok(_) => panic!("an expired join token was accepted"),
    }

    let c = h.client();
    assert_eq!(
        kind(c.attest_raw(b"{\"evidence\": ".to_vec()).await),
        ErrorKind::MalformedRequest
    );
    assert_eq!(
        kind(
            c.attest_raw(b"{\"evidence\": {\"kind\": \"tpm9\"}}".to_vec())
                .await
        ),
        ErrorKind::MalformedRequest
    );
    let mut big = b"{\"evidence\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'A', 512 * 1024));
    big.extend(b"\"}");
    assert_eq!(kind(c.attest_raw(big).await), ErrorKind::BodyTooLarge);
    h.server.shutdown().await;
}

#[tokio::test]
async fn results_survive_key_rotation_and_do_not_verify_under_another_verifier() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let before = agent.attest_once().await.unwrap();
    let old_kid = jsonwebtoken::decode_header(&before.result)
        .unwrap()
        .kid
        .unwrap();
    vouch_server::Keyring::rotate(
        &h.cfg.data_dir.join("keys"),
        vouch_server::SigningAlg::ES256,
        unix_now(),
    )
    .unwrap();
    // The server notices the rotation within its key-watch period.
    let mut after = before.clone();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = agent.attest_once().await.unwrap();
        if jsonwebtoken::decode_header(&after.result)
            .unwrap()
            .kid
            .unwrap()
            != old_kid
        {
            break;
        }
    }
    let header = jsonwebtoken::decode_header(&after.result).unwrap();
    assert_ne!(header.kid.as_deref(), Some(old_kid.as_str()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let rp = h.rp().await;
    rp.verify(&before.result, &rp_requirements()).unwrap();
    rp.verify(&after.result, &rp_requirements()).unwrap();

    let other = Harness::new(|_| {}).await;
    let foreign = other.rp().await;
    assert!(matches!(
        foreign.verify(&after.result, &rp_requirements()),
        Err(RpError::UnknownKey(_))
    ));
    h.server.shutdown().await;
    other.server.shutdown().await;
}

#[tokio::test]
async fn health_jwks_openapi_dashboard_and_metrics_answer() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("web").await;
    agent.attest_once().await.unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let get = |p: &str| {
        let url = format!("{}{p}", h.server.base_url);
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (s, body) = get("/openapi.json").await;
    assert_eq!(s, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    for p in [
        "/v1/challenge",
        "/v1/enroll",
        "/v1/attest",
        "/v1/tpm/enroll",
        "/v1/tpm/activate",
        "/v1/svid",
        "/v1/jwt-svid",
        "/v1/bundle",
        "/v1/entries",
        "/v1/entries/{id}",
        "/v1/federation",
        "/v1/results/{id}",
        "/v1/workloads",
        "/v1/workloads/{node}/{name}",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "OpenAPI lacks {p}");
    }
    // Issue 12: the read-only views need the read token (or the admin token).
    for p in [
        "/metrics",
        "/v1/workloads",
        "/v1/workloads/x/web",
        "/v1/results/nope",
    ] {
        let (s, body) = get(p).await;
        assert_eq!(s, 401, "{p}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["kind"], "unauthenticated", "{p}");
    }
    let read = h.read_token();
    let get = |p: &str, token: &str| {
        let url = format!("{}{p}", h.server.base_url);
        let req = http.get(url).bearer_auth(token);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/metrics", "vrt_not-the-token-at-all-00000000000")
            .await
            .0,
        401
    );
    let (_, metrics) = get("/metrics", &read).await;
    assert!(
        metrics.contains(
            "vouch_attestations_total{kind=\"software\",tenant=\"default\",outcome=\"warning\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(get("/v1/results/nope", &read).await.0, 404);
    let (s, body) = get("/v1/workloads", &read).await;
    assert_eq!(s, 200);
    assert!(body.contains("\"name\":\"web\""));
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    assert_eq!(get("/v1/workloads", admin.trim()).await.0, 200);
    // The dashboard signs in with a form and keeps a session: tests/dashboard.rs.
    h.server.shutdown().await;
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        insecure_http: true,
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let e = vouch_server::start(cfg).await.unwrap_err().to_string();
    assert!(e.contains("loopback"), "{e}");
}

#[tokio::test]
async fn svids_only_for_affirming_workloads_with_a_matching_entry() {
    use rcgen::PublicKeyData;
    use vouch_core::wire::{SvidRequest, svid_signing_input};
    use vouch_identity::{Entry, Selector, SpiffeId};
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("db").await;
    h.trust(&mut agent).await;
    let sel = |s: &str| Selector::parse(s).unwrap();
    let id = SpiffeId::parse("spiffe://vouch.local/db").unwrap();
    let entry = Entry::new(
        "e-db".into(),
        &id,
        vec![
            sel("vouch:workload:db"),
            sel("vouch:status:affirming"),
            sel("unix:uid:1000"),
        ],
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&entry).await.unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let pk = B64.encode(leaf.subject_public_key_info());
    let c = h.client();
    let ask = |selectors: Vec<&str>, agent: &Agent| {
        let selectors: Vec<String> = selectors.into_iter().map(String::from).collect();
        let key_id = agent.enrollment().key_id.clone();
        SvidRequest {
            signature: agent
                .key()
                .sign_b64(&svid_signing_input(&key_id, "db", &pk, &selectors)),
            key_id,
            workload: "db".into(),
            public_key: pk.clone(),
            selectors,
        }
    };
    let refused = |r: Result<vouch_core::wire::SvidResponse, AgentError>| match r {
        Err(e) => e.kind().unwrap(),
        Ok(v) => panic!("issued: {v:?}"),
    };

    // Not attested yet: no identity.
    assert_eq!(
        refused(c.svid(&ask(vec!["unix:uid:1000"], &agent)).await),
        ErrorKind::NotAttested
    );
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );

    let r = c.svid(&ask(vec!["unix:uid:1000"], &agent)).await.unwrap();
    assert_eq!(r.svids.len(), 1);
    assert_eq!(r.svids[0].spiffe_id, "spiffe://vouch.local/db");
    let der = B64.decode(&r.svids[0].x509_svid).unwrap();
    assert_eq!(vouch_rp::svid_spiffe_id(&der).unwrap(), id);
    // The SVID chains to the bundle, checked by the relying party's SPIFFE verifier.
    let ca = B64.decode(&r.bundle[0]).unwrap();
    let td = id.trust_domain().clone();
    let verifier =
        vouch_rp::SpiffeVerifier::new(&td, &[ca], vouch_rp::AllowedIds::Only(vec![id.clone()]))
            .unwrap();
    use rustls::server::danger::ClientCertVerifier;
    verifier
        .verify_client_cert(
            &rustls::pki_types::CertificateDer::from(der.clone()),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();

    // Node selectors come from what the verifier verified: the OS of the latest evidence and
    // its kind. An entry needing TPM evidence does not apply to this software-attested node.
    let os_id = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ID=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();
    for (path, kind) in [("/db-on-os", "software"), ("/db-on-tpm", "tpm")] {
        let e = Entry::new(
            format!("e{path}"),
            &SpiffeId::parse(&format!("spiffe://vouch.local{path}")).unwrap(),
            vec![
                sel("vouch:workload:db"),
                sel("unix:uid:1000"),
                sel(&format!("os:id:{os_id}")),
                sel(&format!("vouch:evidence:{kind}")),
            ],
            600,
            unix_now(),
        )
        .unwrap();
        h.store.add_entry(&e).await.unwrap();
    }
    let r = c.svid(&ask(vec!["unix:uid:1000"], &agent)).await.unwrap();
    let mut ids: Vec<&str> = r.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["spiffe://vouch.local/db", "spiffe://vouch.local/db-on-os"]
    );

    // A workload whose selectors match no entry gets nothing.
    assert_eq!(
        refused(c.svid(&ask(vec!["unix:uid:0"], &agent)).await),
        ErrorKind::NoIdentity
    );
    // An agent cannot claim the verifier's own selectors.
    assert_eq!(
        refused(
            c.svid(&ask(
                vec!["unix:uid:1000", "vouch:status:affirming"],
                &agent
            ))
            .await
        ),
        ErrorKind::MalformedRequest
    );
    // A request not signed by the agent key.
    let mut forged = ask(vec!["unix:uid:1000"], &agent);
    forged.selectors = vec!["unix:uid:1000".into(), "unix:gid:0".into()];
    assert_eq!(refused(c.svid(&forged).await), ErrorKind::EvidenceSignature);

    // The workload fails attestation: identities stop.
    std::fs::write(h.path("db.conf"), "tampered\n").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Contraindicated
    );
    assert_eq!(
        refused(c.svid(&ask(vec!["unix:uid:1000"], &agent)).await),
        ErrorKind::NotAttested
    );
    h.server.shutdown().await;
}

/// Issue 12 item 11: a JWT-SVID is a bearer token, so the request that mints one is dated and
/// carries a one-time jti under the agent's signature. The same signed request twice, one
/// dated outside the clock tolerance (either way), one with a byte changed after signing, and
/// one signed the old way (no iat or jti) are all refused.
#[tokio::test]
async fn issue_12_a_replayed_stale_or_altered_jwt_svid_request_is_refused() {
    use vouch_core::wire::{JwtSvidRequest, jwt_svid_signing_input, svid_signing_input};
    use vouch_identity::{Entry, Selector, SpiffeId};
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("db").await;
    h.trust(&mut agent).await;
    let e = Entry::new(
        "e-db".into(),
        &SpiffeId::parse("spiffe://vouch.local/db").unwrap(),
        vec![Selector::parse("vouch:workload:db").unwrap()],
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&e).await.unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
    let c = h.client();
    let key_id = agent.enrollment().key_id.clone();
    let audience = vec!["database".to_string()];
    let signed = |iat: u64, jti: &str| JwtSvidRequest {
        signature: agent.key().sign_b64(&jwt_svid_signing_input(
            &key_id,
            "db",
            &audience,
            &[],
            iat,
            jti,
        )),
        key_id: key_id.clone(),
        workload: "db".into(),
        audience: audience.clone(),
        selectors: vec![],
        iat,
        jti: jti.into(),
    };
    let refused = |r: Result<Vec<vouch_core::wire::IssuedJwtSvid>, AgentError>| match r {
        Err(e) => e.kind().unwrap(),
        Ok(v) => panic!("issued: {v:?}"),
    };

    let req = signed(unix_now(), "jti-0123456789abcdef");
    let first = c.jwt_svid(&req).await.unwrap();
    assert_eq!(first[0].spiffe_id, "spiffe://vouch.local/db");
    // The same signed request again: no second token.
    assert_eq!(refused(c.jwt_svid(&req).await), ErrorKind::NonceReused);
    // A fresh jti and time: issued.
    c.jwt_svid(&signed(unix_now(), "jti-fedcba9876543210"))
        .await
        .unwrap();
    // Dated 60 s ago or ahead (tolerance 5 s).
    assert_eq!(
        refused(
            c.jwt_svid(&signed(unix_now() - 60, "jti-old-0123456789"))
                .await
        ),
        ErrorKind::NonceExpired
    );
    assert_eq!(
        refused(
            c.jwt_svid(&signed(unix_now() + 60, "jti-new-0123456789"))
                .await
        ),
        ErrorKind::NonceFromFuture
    );
    // One byte changed after signing, in the jti, the time, the audience or the signature.
    let fresh = signed(unix_now(), "jti-flip-0123456789");
    let mut flipped = fresh.clone();
    flipped.jti = "jti-flip-0123456788".into();
    assert_eq!(
        refused(c.jwt_svid(&flipped).await),
        ErrorKind::EvidenceSignature
    );
    let mut flipped = fresh.clone();
    flipped.iat ^= 1;
    assert_eq!(
        refused(c.jwt_svid(&flipped).await),
        ErrorKind::EvidenceSignature
    );
    let mut flipped = fresh.clone();
    flipped.audience = vec!["databasf".into()];
    assert_eq!(
        refused(c.jwt_svid(&flipped).await),
        ErrorKind::EvidenceSignature
    );
    let mut flipped = fresh.clone();
    let mut sig = B64.decode(&flipped.signature).unwrap();
    sig[7] ^= 1;
    flipped.signature = B64.encode(sig);
    assert_eq!(
        refused(c.jwt_svid(&flipped).await),
        ErrorKind::EvidenceSignature
    );
    // Unaltered, it still passes: the refusals above used nothing up.
    c.jwt_svid(&fresh).await.unwrap();
    // A request signed the old way (no iat or jti under the signature) is refused.
    let mut old = signed(unix_now(), "jti-old-format-0123");
    old.signature = agent
        .key()
        .sign_b64(&svid_signing_input(&key_id, "db", "jwt:database", &[]));
    assert_eq!(
        refused(c.jwt_svid(&old).await),
        ErrorKind::EvidenceSignature
    );
    // A jti too short to be random.
    assert_eq!(
        refused(c.jwt_svid(&signed(unix_now(), "1")).await),
        ErrorKind::MalformedRequest
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn ca_rotation_reaches_a_running_verifier_without_breaking_svids_in_flight() {
    use base64::engine::general_purpose::STANDARD;
    use rcgen::PublicKeyData;
    use rustls::server::danger::ClientCertVerifier;
    use vouch_core::wire::{SvidRequest, svid_signing_input};
    use vouch_identity::{CaSet, Entry, Selector, SpiffeId, TrustDomain};
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("db").await;
    h.trust(&mut agent).await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
    let id = SpiffeId::parse("spiffe://vouch.local/db").unwrap();
    let e = Entry::new(
        "e-db".into(),
        &id,
        vec![Selector::parse("vouch:workload:db").unwrap()],
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&e).await.unwrap();
    let c = h.client();
    let issue = || async {
        let leaf = rcgen::KeyPair::generate().unwrap();
        let pk = B64.encode(leaf.subject_public_key_info());
        let key_id = agent.enrollment().key_id.clone();
        let r = c
            .svid(&SvidRequest {
                signature: agent
                    .key()
                    .sign_b64(&svid_signing_input(&key_id, "db", &pk, &[])),
                key_id,
                workload: "db".into(),
                public_key: pk,
                selectors: vec![],
            })
            .await
            .unwrap();
        B64.decode(&r.svids[0].x509_svid).unwrap()
    };
    let bundle = || async {
        let b = c.bundle().await.unwrap();
        let cas: Vec<Vec<u8>> = b["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "x509-svid")
            .map(|k| STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap())
            .collect();
        (cas, b["spiffe_sequence"].as_u64().unwrap())
    };
    let accepts = |cas: &[Vec<u8>], der: &[u8]| {
        let td = TrustDomain::parse("vouch.local").unwrap();
        vouch_rp::SpiffeVerifier::new(&td, cas, vouch_rp::AllowedIds::AnyInTrustDomain)
            .unwrap()
            .verify_client_cert(
                &rustls::pki_types::CertificateDer::from(der.to_vec()),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .is_ok()
    };

    let a = issue().await;
    let (cas, seq) = bundle().await;
    assert_eq!((cas.len(), seq), (1, 1));
    let first = cas[0].clone();

    // `vouch ca prepare` (the same code, on the verifier's directory): the next CA appears in
    // the bundle at once, and signs nothing yet.
    let td = TrustDomain::parse("vouch.local").unwrap();
    let dir = h.cfg.data_dir.join("spiffe");
    let mut set = CaSet::load_or_create(&dir, &td, h.cfg.svid_ca_ttl, unix_now()).unwrap();
    set.prepare(h.cfg.svid_ca_ttl, unix_now()).unwrap();
    let (cas, seq) = bundle().await;
    assert_eq!((cas.len(), seq), (2, 2));
    let b = issue().await;
    assert!(accepts(std::slice::from_ref(&first), &b));

    // `vouch ca activate`: new SVIDs come from the new CA; the bundle still carries the old
    // one, so SVIDs issued before keep verifying.
    set.activate(h.cfg.svid_ttl, unix_now()).unwrap();
    let c3 = issue().await;
    let (cas, seq) = bundle().await;
    assert_eq!((cas.len(), seq), (2, 3));
    assert!(!accepts(std::slice::from_ref(&first), &c3));
    for svid in [&a, &b, &c3] {
        assert!(accepts(&cas, svid));
    }
}

#[tokio::test]
async fn the_entries_api_needs_the_admin_token_and_manages_entries() {
    let h = Harness::new(|_| {}).await;
    let token = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", h.server.base_url);
    let kind = |v: &serde_json::Value| v["error"]["kind"].as_str().unwrap_or("").to_string();
    let body = serde_json::json!({
        "spiffe_id": "spiffe://vouch.local/billing",
        "selectors": ["vouch:workload:billing", "unix:uid:1000"],
        "ttl": 900,
    });

    // No token, a wrong token, a token of the right length with one byte changed: 401.
    let mut wrong = token.clone().into_bytes();
    wrong[10] ^= 1;
    let wrong = String::from_utf8(wrong).unwrap();
    for auth in [
        None,
        Some("Bearer nope".to_string()),
        Some(format!("Bearer {wrong}")),
    ] {
        let mut r = http.post(url("/v1/entries")).json(&body);
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        assert_eq!(kind(&r.json().await.unwrap()), "unauthenticated");
    }
    assert_eq!(
        http.get(url("/v1/entries")).send().await.unwrap().status(),
        401
    );
    assert!(
        h.store.entries().await.unwrap().is_empty(),
        "nothing created"
    );

    // With the token: create, list, show, delete.
    let bearer = format!("Bearer {token}");
    let r = http
        .post(url("/v1/entries"))
        .header("authorization", &bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let e: serde_json::Value = r.json().await.unwrap();
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["ttl"], 900);
    let list: serde_json::Value = http
        .get(url("/v1/entries"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let one = http
        .get(url(&format!("/v1/entries/{id}")))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status().as_u16(), 200);

    // Bad input is refused with the reason: an invalid SPIFFE ID, an invalid selector, none.
    for bad in [
        serde_json::json!({"spiffe_id": "spiffe://Vouch.local/x", "selectors": ["a:b"]}),
        serde_json::json!({"spiffe_id": "spiffe://vouch.local/x", "selectors": ["no colon"]}),
        serde_json::json!({"spiffe_id": "spiffe://vouch.local/x", "selectors": []}),
        serde_json::json!({"spiffe_id": "spiffe://vouch.local/x", "selectors": ["a:b"], "extra": 1}),
    ] {
        let r = http
            .post(url("/v1/entries"))
            .header("authorization", &bearer)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        assert_eq!(kind(&r.json().await.unwrap()), "malformed_request");
    }

    let del = |id: String| {
        let (http, bearer) = (http.clone(), bearer.clone());
        let u = url(&format!("/v1/entries/{id}"));
        async move {
            http.delete(u)
                .header("authorization", bearer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(del(id.clone()).await, 204);
    assert_eq!(del(id).await, 404);
    assert!(h.store.entries().await.unwrap().is_empty());
}

/// Issue 12: with sample evidence allowed (development), it is appraised as unsigned and
/// refused by the default policy, and its result is kept apart: the enrolled workload whose key
/// it names keeps its own status.
#[tokio::test]
async fn sample_evidence_never_changes_an_enrolled_workloads_status() {
    let h = Harness::new(|c| c.allow_sample_evidence = true).await;
    let mut agent = h.agent("app").await;
    h.trust(&mut agent).await;
    let first = agent.attest_once().await.unwrap();
    assert_eq!(first.status, ArStatus::Affirming);
    let c = h.client();
    let n = c.challenge().await.unwrap().nonce;
    let mut sample = agent.evidence(&n).unwrap();
    sample.kind = vouch_core::EvidenceKind::Sample;
    let r = c
        .attest(&AttestRequest {
            evidence: sample,
            result_audience: None,
        })
        .await
        .unwrap();
    assert_eq!(r.status, ArStatus::Contraindicated);
    assert!(r.reasons.iter().any(|x| x.contains("sample_evidence")));
    assert!(r.workload_id.ends_with("/sample:app"), "{}", r.workload_id);
    let w = h.store.workload(&first.workload_id).await.unwrap().unwrap();
    assert_eq!(w.status, "affirming");
    assert_eq!(w.last_attestation_id, Some(first.attestation_id.clone()));
    h.server.shutdown().await;
}

/// Issue 13: an agent sends the parts of its measurements the verifier holds by digest, and
/// when the verifier no longer holds them (here: restarted, its memory gone) it is told
/// `parts_unknown` and sends them in full within the same round.
#[tokio::test]
async fn unchanged_parts_go_by_digest_and_a_verifier_that_lost_them_gets_them_in_full() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("parts").await;
    h.trust(&mut agent).await;
    assert!(agent.held_parts().is_empty());
    let first = agent.attest_once().await.unwrap();
    assert_eq!(first.held_parts.len(), 4, "{:?}", first.held_parts);
    assert_eq!(agent.held_parts(), first.held_parts);
    let again = agent.attest_once().await.unwrap();
    assert_eq!(again.status, ArStatus::Affirming, "{:?}", again.reasons);

    // Restart the verifier on the same address and store: it holds no part now.
    let Harness {
        dir,
        server,
        store,
        mut cfg,
    } = h;
    cfg.listen = server.addr;
    server.shutdown().await;
    let h = Harness {
        server: vouch_server::start_with_store(cfg.clone(), store.clone())
            .await
            .unwrap(),
        dir,
        store,
        cfg,
    };
    let after = agent.attest_once().await.unwrap();
    assert_eq!(after.status, ArStatus::Affirming, "{:?}", after.reasons);
    assert_eq!(after.held_parts.len(), 4);
    // The round's first evidence went by digest and was refused as parts_unknown.
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let metrics = http
        .get(format!("{}/metrics", h.server.base_url))
        .bearer_auth(h.read_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("parts_unknown") && l.trim_end().ends_with(" 1")),
        "{metrics}"
    );
    h.server.shutdown().await;
}

/// Issue 13: each result carries a nonce for the agent's next round (one round trip per
/// attestation); it is a nonce like any other: used by the next round, single-use, and for
/// this verifier's audience only.
#[tokio::test]
async fn a_result_gives_the_nonce_of_the_next_round_and_it_is_single_use() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("next").await;
    h.trust(&mut agent).await;
    let first = agent.attest_once().await.unwrap();
    let given = first.next_nonce.clone().expect("a next nonce");
    assert_eq!(given.audience, h.cfg.audience);
    assert!(given.expires_at > unix_now());
    let second = agent.attest_once().await.unwrap();
    assert_eq!(second.status, ArStatus::Affirming, "{:?}", second.reasons);
    let payload = second.result.split('.').nth(1).unwrap();
    let ear: serde_json::Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    assert_eq!(
        ear["eat_nonce"],
        vouch_core::eat_nonce(&given.nonce),
        "the second round used the nonce the first result gave"
    );
    // Used: evidence bound to it again is a replay.
    let ev = agent.evidence(&given.nonce).unwrap();
    let e = h
        .client()
        .attest(&AttestRequest {
            evidence: ev,
            result_audience: None,
        })
        .await;
    assert_eq!(kind(e), ErrorKind::NonceReused);
    // An unused one from a result is accepted once, by evidence signed for it.
    let third_nonce = second.next_nonce.unwrap().nonce;
    let ok = h
        .client()
        .attest(&AttestRequest {
            evidence: agent.evidence(&third_nonce).unwrap(),
            result_audience: None,
        })
        .await
        .unwrap();
    assert_eq!(ok.status, ArStatus::Affirming);
    // Another verifier (its own nonce key) refuses it.
    let other = Harness::new(|_| {}).await;
    let mut stranger = other.agent("next").await;
    other.trust(&mut stranger).await;
    let e = other
        .client()
        .attest(&AttestRequest {
            evidence: stranger.evidence(&ok.next_nonce.unwrap().nonce).unwrap(),
            result_audience: None,
        })
        .await;
    assert_eq!(kind(e), ErrorKind::NonceInvalid);
    h.server.shutdown().await;
    other.server.shutdown().await;
}

//! Secret release (issue 17 item 4), end to end on a real verifier over loopback TLS with real
//! agents: released to an affirming workload whose selectors the secret's policy accepts, and
//! only sealed to the key its evidence bound; refused to a contraindicated workload, to another
//! node, after the node's revocation, on a replay, and for a key the evidence did not bind; an
//! intercepted answer opens with no other key, and one changed byte does not open.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Harness;
use vouch_agent::{Agent, AgentError};
use vouch_core::ErrorKind;
use vouch_core::wire::{
    SecretReleaseRequest, SecretReleaseResponse, secret_release_info, secret_release_signing_input,
};
use vouch_evidence::{ReleaseKey, sign_software_evidence};

fn http(h: &Harness) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

fn admin(h: &Harness) -> String {
    std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

async fn put(
    h: &Harness,
    token: &str,
    name: &str,
    value: &[u8],
    policy: &str,
) -> reqwest::Response {
    http(h)
        .put(format!("{}/v1/secrets/{name}", h.server.base_url))
        .bearer_auth(token)
        .json(&serde_json::json!({"value": B64.encode(value), "policy": policy}))
        .send()
        .await
        .unwrap()
}

fn policy_for(node: &str) -> String {
    format!(
        "package vouch.secret\n\ndefault allow := false\n\nallow if {{\n    \"vouch:workload:db\" in input.selectors\n    input.node_id == \"{node}\"\n}}\n"
    )
}

fn refused(r: Result<Vec<u8>, AgentError>) -> (ErrorKind, String) {
    match r {
        Err(AgentError::Refused { kind, message, .. }) => (kind, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A release request made by hand, as the agent makes it, with `key` in the measurements.
async fn request(
    h: &Harness,
    agent: &mut Agent,
    name: &str,
    key: &ReleaseKey,
) -> (SecretReleaseRequest, String) {
    let ch = h.client().challenge().await.unwrap();
    let ev = agent.evidence(&ch.nonce).unwrap();
    let mut m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
    m.release_key = Some(key.public_b64());
    let key_id = agent.enrollment().key_id.clone();
    let evidence = sign_software_evidence(agent.key(), &key_id, &m).unwrap();
    let signature = agent.key().sign_b64(&secret_release_signing_input(
        &key_id,
        name,
        &evidence.payload,
        &[],
    ));
    (
        SecretReleaseRequest {
            key_id,
            name: name.into(),
            evidence,
            selectors: vec![],
            signature,
        },
        ch.nonce,
    )
}

async fn send(
    h: &Harness,
    req: &SecretReleaseRequest,
) -> Result<SecretReleaseResponse, AgentError> {
    h.client().secret_release(req).await
}

fn flip(b64: &str, at: usize) -> String {
    let mut b = B64.decode(b64).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    B64.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_only_attested_workloads_the_policy_names() {
    let h = Harness::new(|_| {}).await;
    let token = admin(&h);
    let mut db = h.agent("db").await;
    h.trust(&mut db).await;
    let node = db.enrollment().node_id.clone();
    let secret: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();

    // The admin API: a token is needed, the read token is not enough, the policy must compile.
    assert_eq!(
        put(&h, "wrong", "db-password", &secret, &policy_for(&node))
            .await
            .status(),
        401
    );
    let reader = h.read_token();
    let r = put(&h, &reader, "db-password", &secret, &policy_for(&node)).await;
    assert!(matches!(r.status().as_u16(), 401 | 403), "{}", r.status());
    let r = put(
        &h,
        &token,
        "db-password",
        &secret,
        "package vouch.appraisal\nallow := true\n",
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
    let r = put(&h, &token, "db-password", &secret, &policy_for(&node)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let s: serde_json::Value = r.json().await.unwrap();
    assert_eq!(s["version"], 1);
    assert_eq!(s["size"], 1000);
    let list: serde_json::Value = http(&h)
        .get(format!("{}/v1/secrets", h.server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "db-password");
    assert!(list[0].get("value").is_none());
    // At rest the database holds it sealed, not in the clear.
    let rec = h.store.secret("db-password").await.unwrap().unwrap();
    assert!(!rec.sealed.windows(32).any(|w| w == &secret[..32]));

    // Released to the affirming workload the policy names: the exact bytes.
    let got = db.get_secret("db-password", None, &[]).await.unwrap();
    assert_eq!(got, secret);
    // An unknown secret.
    let (kind, _) = refused(db.get_secret("no-such", None, &[]).await);
    assert_eq!(kind, ErrorKind::NotFound);

    // Another node, running the same workload, affirming: its own evidence does not match the
    // secret's policy (another node id).
    let mut other = h
        .agent_with("db", |c| c.data_dir = h.path("agent-db-2"))
        .await;
    assert_ne!(other.enrollment().node_id, node);
    assert_eq!(
        other.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    let (kind, msg) = refused(other.get_secret("db-password", None, &[]).await);
    assert_eq!(kind, ErrorKind::Forbidden, "{msg}");
    assert!(msg.contains("policy"), "{msg}");

    // Contraindicated: a measured file changed.
    let conf = h.path("db.conf");
    std::fs::write(&conf, "setting = 2\n").unwrap();
    let (kind, msg) = refused(db.get_secret("db-password", None, &[]).await);
    assert_eq!(kind, ErrorKind::NotAttested, "{msg}");
    assert!(msg.contains("contraindicated"), "{msg}");
    std::fs::write(&conf, "setting = 1\n").unwrap();
    assert_eq!(
        db.get_secret("db-password", None, &[]).await.unwrap(),
        secret
    );

    // A new version replaces the old; its policy follows.
    let r = put(&h, &token, "db-password", b"v2", &policy_for(&node)).await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["version"], 2);
    assert_eq!(
        db.get_secret("db-password", None, &[]).await.unwrap(),
        b"v2"
    );

    // Someone who can write the database but not read keys/secrets.key gives the row a policy
    // that allows everyone, or copies it under another name: it no longer opens, and is
    // released to no one (the name and the policy's digest are the at-rest associated data).
    let rec = h.store.secret("db-password").await.unwrap().unwrap();
    let everyone = "package vouch.secret\nallow := true\n";
    h.store
        .put_secret("db-password", &rec.sealed, everyone, rec.size, 0)
        .await
        .unwrap();
    let (kind, msg) = refused(other.get_secret("db-password", None, &[]).await);
    assert_eq!(kind, ErrorKind::Internal, "{msg}");
    assert!(msg.contains("does not open"), "{msg}");
    h.store
        .put_secret("copied", &rec.sealed, &rec.policy, rec.size, 0)
        .await
        .unwrap();
    let (kind, msg) = refused(db.get_secret("copied", None, &[]).await);
    assert_eq!(kind, ErrorKind::Internal, "{msg}");

    // After the node's revocation: nothing more.
    let r = http(&h)
        .post(format!("{}/v1/revocations", h.server.base_url))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kind": "node", "target": node, "reason": "stolen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (kind, msg) = refused(db.get_secret("db-password", None, &[]).await);
    assert!(
        matches!(kind, ErrorKind::UnknownKey | ErrorKind::Revoked),
        "{kind:?} {msg}"
    );

    // Deleted: gone for everyone.
    let r = http(&h)
        .delete(format!("{}/v1/secrets/db-password", h.server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(h.store.secret("db-password").await.unwrap().is_none());

    // Every release and refusal is in the audit log, never the secret.
    let size = h.store.audit_size().await.unwrap();
    let entries = h.store.audit_entries(0, size).await.unwrap();
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.entry).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for k in [
        "secret.put",
        "secret.release",
        "secret.refuse",
        "secret.delete",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "secret.release").count(), 3);
    let all: String = entries.iter().map(|e| e.entry.clone()).collect();
    assert!(!all.contains(&B64.encode(&secret)));
    assert!(!all.contains(&hex::encode(&secret[..16])));
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_or_altered_release_opens_nowhere_else() {
    let h = Harness::new(|_| {}).await;
    let token = admin(&h);
    let mut db = h.agent("db").await;
    h.trust(&mut db).await;
    let node = db.enrollment().node_id.clone();
    let secret = b"correct horse battery staple".to_vec();
    assert_eq!(
        put(&h, &token, "k", &secret, &policy_for(&node))
            .await
            .status(),
        200
    );

    // The routes are in the OpenAPI document.
    let doc: serde_json::Value = http(&h)
        .get(format!("{}/openapi.json", h.server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/v1/secrets", "get"),
        ("/v1/secrets/{name}", "put"),
        ("/v1/secrets/{name}", "delete"),
        ("/v1/secrets/release", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }

    let k1 = ReleaseKey::generate();
    let (req1, nonce1) = request(&h, &mut db, "k", &k1).await;
    let r1 = send(&h, &req1).await.unwrap();
    let info1 = secret_release_info("k", r1.version, &node, &nonce1);
    assert_eq!(k1.open(&r1.enc, &r1.ciphertext, &info1).unwrap(), secret);

    // Intercepted: it opens with no other X25519 key.
    let k2 = ReleaseKey::generate();
    assert!(k2.open(&r1.enc, &r1.ciphertext, &info1).is_err());
    // The same request again (its nonce spent): refused.
    let e = send(&h, &req1).await.unwrap_err();
    assert!(
        matches!(
            &e,
            AgentError::Refused {
                kind: ErrorKind::NonceReused,
                ..
            }
        ),
        "{e:?}"
    );
    // A second, fresh request with another key: its answer is sealed to that key, and the
    // first answer opens neither with that request's key nor for that request's info.
    let (req2, nonce2) = request(&h, &mut db, "k", &k2).await;
    let r2 = send(&h, &req2).await.unwrap();
    let info2 = secret_release_info("k", r2.version, &node, &nonce2);
    assert_eq!(k2.open(&r2.enc, &r2.ciphertext, &info2).unwrap(), secret);
    assert!(k2.open(&r1.enc, &r1.ciphertext, &info2).is_err());
    assert!(k1.open(&r1.enc, &r1.ciphertext, &info2).is_err());
    // One flipped byte of the ciphertext, of its tag, of the encapsulated key: refused.
    for ct in [flip(&r1.ciphertext, 0), flip(&r1.ciphertext, 10_000)] {
        assert!(k1.open(&r1.enc, &ct, &info1).is_err());
    }
    assert!(k1.open(&flip(&r1.enc, 3), &r1.ciphertext, &info1).is_err());

    // A key the evidence did not bind: the measurements' release_key changed after signing.
    let k3 = ReleaseKey::generate();
    let (mut req3, _) = request(&h, &mut db, "k", &k1).await;
    let mut m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&req3.evidence.payload).unwrap()).unwrap();
    m.release_key = Some(k3.public_b64());
    req3.evidence.payload = B64.encode(serde_json::to_vec(&m).unwrap());
    // Even with the request itself signed again over the changed payload, the evidence's
    // signature does not cover k3.
    req3.signature = db.key().sign_b64(&secret_release_signing_input(
        &req3.key_id,
        "k",
        &req3.evidence.payload,
        &[],
    ));
    let e = send(&h, &req3).await.unwrap_err();
    assert!(
        matches!(
            &e,
            AgentError::Refused {
                kind: ErrorKind::EvidenceSignature,
                ..
            }
        ),
        "{e:?}"
    );
    // Evidence that binds no key at all.
    let ch = h.client().challenge().await.unwrap();
    let ev = db.evidence(&ch.nonce).unwrap();
    let sig = db.key().sign_b64(&secret_release_signing_input(
        &req1.key_id,
        "k",
        &ev.payload,
        &[],
    ));
    let req4 = SecretReleaseRequest {
        key_id: req1.key_id.clone(),
        name: "k".into(),
        evidence: ev,
        selectors: vec![],
        signature: sig,
    };
    let e = send(&h, &req4).await.unwrap_err();
    assert!(
        matches!(
            &e,
            AgentError::Refused {
                kind: ErrorKind::MalformedRequest,
                ..
            }
        ),
        "{e:?}"
    );
    // The request's own signature covers the name: asking for another secret with it fails.
    let (mut req5, _) = request(&h, &mut db, "k", &k1).await;
    req5.name = "other".into();
    let e = send(&h, &req5).await.unwrap_err();
    assert!(
        matches!(
            &e,
            AgentError::Refused {
                kind: ErrorKind::EvidenceSignature,
                ..
            }
        ),
        "{e:?}"
    );
    h.server.shutdown().await;
}

/// A local caller asks the running agent over its secret socket (what `vouch secret get`
/// does): the agent passes the caller's `unix:` selectors from its peer credentials, so a
/// policy naming this test binary's uid and SHA-256 releases to it, and one naming another uid
/// refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_caller_gets_a_secret_through_the_agent_socket() {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt as _;
    let h = Harness::new(|_| {}).await;
    let token = admin(&h);
    let sock = h.path("agent-db/secrets.sock");
    let mut db = h
        .agent_with("db", |c| c.secret_socket = Some(sock.clone()))
        .await;
    h.trust(&mut db).await;
    let node = db.enrollment().node_id.clone();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let exe_sha = hex::encode(sha2::Sha256::digest(&exe));
    let mine = format!(
        "package vouch.secret\n\ndefault allow := false\n\nallow if {{\n    \"unix:uid:{uid}\" in input.selectors\n    \"unix:sha256:{exe_sha}\" in input.selectors\n    input.node_id == \"{node}\"\n}}\n"
    );
    let theirs = "package vouch.secret\n\ndefault allow := false\n\nallow if {\n    \"unix:uid:4242424\" in input.selectors\n}\n";
    assert_eq!(
        put(&h, &token, "for-me", b"s3cr3t", &mine).await.status(),
        200
    );
    assert_eq!(
        put(&h, &token, "not-for-me", b"nope", theirs)
            .await
            .status(),
        200
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(db.run(
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    ));
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let got = vouch_agent::ask_secret_socket(&sock, "for-me", None)
        .await
        .unwrap();
    assert_eq!(got, b"s3cr3t");
    let (kind, msg) = refused(vouch_agent::ask_secret_socket(&sock, "not-for-me", None).await);
    assert_eq!(kind, ErrorKind::Forbidden, "{msg}");
    // A workload the agent does not have.
    let e = vouch_agent::ask_secret_socket(&sock, "for-me", Some("nobody"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no workload"), "{e}");
    // A caller that execs another binary while its request is answered: the agent pinned the
    // process at accept, and passes nothing on to what it became.
    let uid_only =
        format!("package vouch.secret\n\nallow if \"unix:uid:{uid}\" in input.selectors\n");
    assert_eq!(
        put(&h, &token, "uid-only", b"u1d", &uid_only)
            .await
            .status(),
        200
    );
    let script = format!(
        "import os, socket, time\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect({path:?})\n\
         time.sleep(0.3)\n\
         s.sendall(b'{{\"name\": \"uid-only\"}}\\n')\n\
         os.dup2(s.fileno(), 0)\n\
         os.execv('/bin/cat', ['cat'])\n",
        path = sock.to_str().unwrap()
    );
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("reconnect"),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!answer.contains(&B64.encode(b"u1d")), "{answer}");
    // The same caller not changing gets it.
    assert_eq!(
        vouch_agent::ask_secret_socket(&sock, "uid-only", None)
            .await
            .unwrap(),
        b"u1d"
    );
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
    h.server.shutdown().await;
}

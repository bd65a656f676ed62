//! Secret release on a TPM node (issue 17 item 4), on a real software TPM (swtpm): the
//! one-time HPKE key rides in the measurements that the quote's `extraData` binds, so the
//! secret is released on `tpm` evidence to a policy that asks for hardware-backed claims; and a
//! key swapped into the measurements afterwards, with the agent's signature redone (an attacker
//! holding the agent key but not the TPM), is refused by the quote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, AgentError, TpmConfig};
use vouch_core::wire::{SecretReleaseRequest, secret_release_signing_input};
use vouch_core::{ArStatus, ErrorKind, EvidenceKind};
use vouch_policy::ReferenceValue;
use vouch_server::{ServerConfig, create_join_token, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};
use vouch_testkit::Swtpm;

const POLICY: &str = "package vouch.secret\n\ndefault allow := false\n\nallow if {\n    input.claims.evidence.kind == \"tpm\"\n    input.claims.evidence.hardware_backed == true\n    \"vouch:workload:app\" in input.selectors\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_node_gets_its_secret_and_a_swapped_key_fails_the_quote() {
    let tpm = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        tpm_ca_dir: Some(tpm.path("ca")),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg.clone(), store.clone()).await.unwrap();
    let exe = dir.path().join("app.bin");
    std::fs::write(&exe, "app").unwrap();
    let mut a = Agent::new(AgentConfig {
        servers: vec![server.base_url.clone()],
        ca_cert: server.ca_cert.clone(),
        data_dir: dir.path().join("agent"),
        join_token: Some(create_join_token(store.as_ref(), 600, None).await.unwrap()),
        workload_name: "app".into(),
        exe: Some(exe.clone()),
        tpm: Some(TpmConfig {
            tcti: tpm.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7],
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        }),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
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
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);

    let secret = b"disk key of app".to_vec();
    // Through the admin API, so that it is sealed at rest with the verifier's key.
    let admin = std::fs::read_to_string(cfg.data_dir.join("keys/admin.token")).unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let r = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
        .put(format!("{}/v1/secrets/disk", server.base_url))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({"value": B64.encode(&secret), "policy": POLICY}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    // Released on tpm evidence, the key bound by the quote.
    assert_eq!(a.get_secret("disk", None, &[]).await.unwrap(), secret);

    // The agent key signs a key the TPM never quoted: the quote's extraData does not match.
    let ch = a.client().challenge().await.unwrap();
    let ev = a.tpm_evidence(&ch.nonce).await.unwrap();
    assert_eq!(ev.kind, EvidenceKind::Tpm);
    let mut payload: vouch_core::TpmPayload =
        serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
    let mut m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&payload.measurements).unwrap()).unwrap();
    assert!(m.release_key.is_none());
    m.release_key = Some(vouch_evidence::ReleaseKey::generate().public_b64());
    payload.measurements = B64.encode(serde_json::to_vec(&m).unwrap());
    let payload = B64.encode(serde_json::to_vec(&payload).unwrap());
    let key_id = a.enrollment().key_id.clone();
    let evidence = vouch_core::Evidence {
        kind: EvidenceKind::Tpm,
        key_id: key_id.clone(),
        signature: a.key().sign_b64(&vouch_core::evidence_signing_input(
            EvidenceKind::Tpm,
            &payload,
        )),
        payload,
    };
    let req = SecretReleaseRequest {
        signature: a.key().sign_b64(&secret_release_signing_input(
            &key_id,
            "disk",
            &evidence.payload,
            &[],
        )),
        key_id,
        name: "disk".into(),
        evidence,
        selectors: vec![],
    };
    match a.client().secret_release(&req).await {
        Err(AgentError::Refused { kind, message, .. }) => {
            assert_eq!(kind, ErrorKind::TpmQuote, "{message}");
        }
        other => panic!("expected the quote to refuse it, got {other:?}"),
    }
    server.shutdown().await;
}

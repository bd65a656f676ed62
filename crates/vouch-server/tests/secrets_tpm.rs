//! Secret release on a TPM node (issue 17 item 4), on a real software TPM (swtpm): the
//! one-time HPKE key rides in the measurements that the quote's `extraData` binds, so the
//! secret is released on `tpm` evidence to a policy that asks for hardware-backed claims; and a
//! key swapped into the measurements afterwards, with the agent's signature redone (an attacker
//! holding the agent key but not the TPM), is refused by the quote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, AgentError, TpmConfig};
use vouch_core::wire::{SecretReleaseRequest, secret_release_signing_input};
use vouch_core::{ArStatus, ErrorKind, EvidenceKind};
use vouch_policy::ReferenceValue;
use vouch_server::{RunningServer, ServerConfig, create_join_token, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};
use vouch_testkit::Swtpm;

mod tpm_ima;
use tpm_ima::{ima_line, measure, real_ima_log};

const POLICY: &str = "package vouch.secret\n\ndefault allow := false\n\nallow if {\n    input.claims.evidence.kind == \"tpm\"\n    input.claims.evidence.hardware_backed == true\n    \"vouch:workload:app\" in input.selectors\n}\n";

/// A verifier trusting `tpm`'s EK CA, its data in `dir/server`, and an agent `app` on that
/// TPM quoting `pcrs` (and sending `ima_log`), enrolled, its executable a reference value.
async fn tpm_node(
    tpm: &Swtpm,
    dir: &Path,
    pcrs: Vec<u8>,
    ima_log: Option<PathBuf>,
) -> (RunningServer, Arc<dyn Store>, Agent) {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("server"),
        tpm_ca_dir: Some(tpm.path("ca")),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.database_path()).await.unwrap());
    let server = start_with_store(cfg, store.clone()).await.unwrap();
    let exe = dir.join("app.bin");
    std::fs::write(&exe, "app").unwrap();
    let a = Agent::new(AgentConfig {
        servers: vec![server.base_url.clone()],
        ca_cert: server.ca_cert.clone(),
        data_dir: dir.join("agent"),
        join_token: Some(create_join_token(store.as_ref(), 600, None).await.unwrap()),
        workload_name: "app".into(),
        exe: Some(exe.clone()),
        tpm: Some(TpmConfig {
            tcti: tpm.tcti(),
            key_alg: "rsa".into(),
            pcrs,
            ima_log,
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
    (server, store, a)
}

/// Store secret `name` with `policy` through the admin API (so that it is sealed at rest with
/// the verifier's key), with the admin token in `dir/server`.
async fn put_secret(server: &RunningServer, dir: &Path, name: &str, value: &[u8], policy: &str) {
    let admin = std::fs::read_to_string(dir.join("server/keys/admin.token")).unwrap();
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    let r = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
        .put(format!("{}/v1/secrets/{name}", server.base_url))
        .bearer_auth(admin.trim())
        .json(&serde_json::json!({"value": B64.encode(value), "policy": policy}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_node_gets_its_secret_and_a_swapped_key_fails_the_quote() {
    let tpm = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let (server, _store, mut a) =
        tpm_node(&tpm, dir.path(), vec![0, 1, 2, 3, 4, 5, 6, 7], None).await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);

    let secret = b"disk key of app".to_vec();
    // Through the admin API, so that it is sealed at rest with the verifier's key.
    put_secret(&server, dir.path(), "disk", &secret, POLICY).await;

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

/// A release on a node with an IMA log moves the verifier's IMA replay like a round: the
/// agent's next round sends its slice from where the release left it (before the answer said
/// so, the next round's slice started behind the verifier and was refused), and after a
/// refused release it starts over from entry 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_after_a_release_continue_the_ima_replay() {
    let tpm = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let log = real_ima_log(&tpm, dir.path());
    let (server, store, mut a) = tpm_node(&tpm, dir.path(), vec![10, 16], Some(log.clone())).await;
    let r = a.attest_once().await.unwrap();
    assert_eq!((r.status, r.ima_position), (ArStatus::Affirming, Some(2)));
    put_secret(&server, dir.path(), "disk", b"k", POLICY).await;
    put_secret(
        &server,
        dir.path(),
        "never",
        b"k",
        "package vouch.secret\n\nallow := false\n",
    )
    .await;

    // A file measured, then a release: its evidence carries the new entry (position 3).
    measure(&tpm, &log, &ima_line("/usr/bin/tool", b"tool v1"));
    assert_eq!(a.get_secret("disk", None, &[]).await.unwrap(), b"k");
    let r = a.attest_once().await.unwrap();
    assert_eq!(
        (r.status, r.ima_position),
        (ArStatus::Affirming, Some(3)),
        "{:?}",
        r.reasons
    );
    let rec = store.attestation(&r.attestation_id).await.unwrap().unwrap();
    assert_eq!(rec.claims["tpm"]["ima"]["new_entries"], 0);

    // Another entry, and a release the policy refuses after recording its evidence: the agent
    // does not know where the replay stands, and the next round starts over from entry 0.
    measure(&tpm, &log, &ima_line("/usr/bin/tool2", b"tool v2"));
    match a.get_secret("never", None, &[]).await {
        Err(AgentError::Refused { kind, .. }) => assert_eq!(kind, ErrorKind::Forbidden),
        other => panic!("{other:?}"),
    }
    let r = a.attest_once().await.unwrap();
    assert_eq!(
        (r.status, r.ima_position),
        (ArStatus::Affirming, Some(4)),
        "{:?}",
        r.reasons
    );
    server.shutdown().await;
}

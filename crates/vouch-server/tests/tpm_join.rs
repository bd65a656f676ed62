//! Zero-touch TPM node attestation on real software TPMs (issue 14 item 2, method `tpm`): a
//! node whose swtpm holds an EK certificate from the swtpm-localca the verifier trusts joins
//! with no join token at all, gets the node id its EK derives (the same after its agent's state
//! is wiped), and attests affirming; and the refusals: an untrusted CA, a certificate swapped
//! between two TPMs, a stolen certificate without its TPM, no certificate, a wrong (one byte
//! flipped) or replayed activation, an expired challenge, and zero-touch turned off.
//!
//! tpm2-tools (`tpm2_nvread`) and openssl read the EK certificate and its modulus
//! independently of the agent, and the expected node id is computed from those.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vouch_agent::{Agent, AgentConfig, AgentError, Tpm, TpmConfig, VerifierClient};
use vouch_core::wire::{
    TpmJoinActivateRequest, TpmJoinRequest, TpmJoinResponse, tpm_join_signing_input,
};
use vouch_core::{ArStatus, ErrorKind};
use vouch_evidence::AgentKey;
use vouch_server::{ServerConfig, start_with_store, unix_now};
use vouch_store::{SqliteStore, Store};
use vouch_testkit::Swtpm;

mod common;
use common::Harness as Setup;

/// A verifier trusting the EK CAs in `ca_dir`, accepting join tokens and TPM node
/// attestation, changed by `f`.
async fn server_with(ca_dir: PathBuf, f: impl FnOnce(&mut ServerConfig)) -> Setup {
    Setup::new(|c| {
        c.tpm_ca_dir = Some(ca_dir);
        c.node_attestors = vec!["join_token".into(), "tpm".into()];
        f(c);
    })
    .await
}

async fn server(ca_dir: PathBuf) -> Setup {
    server_with(ca_dir, |_| {}).await
}

fn tpm_config(tpm: &Swtpm) -> TpmConfig {
    TpmConfig {
        tcti: tpm.tcti(),
        key_alg: "rsa".into(),
        pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7, 16],
        ima_log: None,
        eventlog: None,
        ek_handle: None,
    }
}

/// An agent with a TPM and no join token: it can only join through its TPM.
async fn tokenless_agent(s: &Setup, tpm: &Swtpm, name: &str) -> Result<Agent, AgentError> {
    let exe = s.dir.path().join(format!("{name}.bin"));
    std::fs::write(&exe, name).unwrap();
    Agent::new(AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir: s.dir.path().join(format!("agent-{name}")),
        join_token: None,
        workload_name: name.into(),
        exe: Some(exe),
        tpm: Some(tpm_config(tpm)),
        ..AgentConfig::default()
    })
    .await
}

/// Directory trusting the EK CAs of these TPMs.
fn ca_dir(tpms: &[&Swtpm]) -> PathBuf {
    let d = tpms[0].path("trusted-cas");
    std::fs::create_dir_all(&d).unwrap();
    for (i, t) in tpms.iter().enumerate() {
        std::fs::copy(t.ca_cert(), d.join(format!("ca{i}.pem"))).unwrap();
    }
    d
}

/// The node id a TPM must get, from tools independent of the agent and the verifier: the EK
/// certificate read from NV by tpm2-tools, its RSA modulus read by openssl, hashed as the
/// verifier's EK key (`"rsa\0" ‖ len ‖ n ‖ len ‖ e`) and derived as `tpm:ek:<key>`.
fn expected_node(tpm: &Swtpm) -> (String, String, Vec<u8>) {
    tpm.tool(&[
        "tpm2_nvread",
        "0x01c00002",
        "-C",
        "o",
        "-o",
        "ekcert-tools.der",
    ]);
    let cert = tpm.read("ekcert-tools.der");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-inform", "der", "-noout", "-modulus", "-in"])
        .arg(tpm.path("ekcert-tools.der"))
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl x509 -modulus");
    let text = String::from_utf8(out.stdout).unwrap();
    let n = hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap();
    assert_eq!(n.len(), 256, "RSA-2048 EK");
    let e = [1u8, 0, 1];
    let mut h = sha2::Sha256::new();
    h.update(b"rsa\0");
    h.update((n.len() as u32).to_be_bytes());
    h.update(&n);
    h.update((e.len() as u32).to_be_bytes());
    h.update(e);
    let ek_key = hex::encode(h.finalize());
    let node = vouch_nodeattest::node_id_for(&format!("tpm:ek:{ek_key}"));
    (node, ek_key, cert)
}

fn client(s: &Setup) -> VerifierClient {
    VerifierClient::new(&s.server.base_url, s.server.ca_cert.as_deref()).unwrap()
}

/// A TPM driven by hand (the agent's own TPM code, its AK kept in `dir`), with a fresh key.
struct Hand {
    key: AgentKey,
    tpm: Tpm,
}

impl Hand {
    fn new(tpm: &Swtpm, dir: &Path) -> Self {
        Self {
            key: AgentKey::generate().unwrap(),
            tpm: Tpm::new(tpm_config(tpm), dir),
        }
    }

    /// A join request for these EK, certificate and AK, signed by this key.
    fn request(&self, ek_public: &[u8], ek_cert: &[u8], ak_public: &[u8]) -> TpmJoinRequest {
        let pk = self.key.public_key_b64();
        let (ek, cert, ak) = (
            B64.encode(ek_public),
            B64.encode(ek_cert),
            B64.encode(ak_public),
        );
        TpmJoinRequest {
            signature: self.key.sign_b64(&tpm_join_signing_input(
                "join",
                &pk,
                &["host", &ek, &cert, &ak],
            )),
            public_key: pk,
            hostname: "host".into(),
            ek_public: ek,
            ek_cert: cert,
            ak_public: ak,
        }
    }

    /// The request for this TPM's own EK, certificate and AK.
    fn own_request(&self) -> TpmJoinRequest {
        let id = self.tpm.identity().unwrap();
        self.request(&id.ek_public, &id.ek_cert.unwrap(), &id.ak_public)
    }

    /// `TPM2_ActivateCredential` on this TPM.
    fn activate(&self, c: &TpmJoinResponse) -> Result<Vec<u8>, AgentError> {
        self.tpm.activate_credential(
            &B64.decode(&c.credential_blob).unwrap(),
            &B64.decode(&c.encrypted_secret).unwrap(),
        )
    }

    fn activation(&self, c: &TpmJoinResponse, secret: &[u8]) -> TpmJoinActivateRequest {
        let secret = B64.encode(secret);
        TpmJoinActivateRequest {
            signature: self.key.sign_b64(&tpm_join_signing_input(
                "activate",
                &self.key.public_key_b64(),
                &[&c.challenge_id, &secret],
            )),
            challenge_id: c.challenge_id.clone(),
            secret,
        }
    }
}

async fn no_nodes(s: &Setup) {
    assert_eq!(
        s.store.nodes().await.unwrap(),
        vec![],
        "nothing was enrolled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_node_joins_without_a_token_as_the_node_its_ek_names() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let (expected, ek_key, nv_cert) = expected_node(&tpm);

    let mut a = tokenless_agent(&s, &tpm, "app").await.unwrap();
    let first = a.enrollment().clone();
    assert_eq!(first.node_id, expected, "node id derived from the EK");

    // The verifier recorded how the node joined, and bound it to its TPM at activation.
    let att = s.store.node_attestation(&expected).await.unwrap().unwrap();
    assert_eq!(
        (att.method.as_str(), att.node_key.as_str()),
        ("tpm", format!("tpm:ek:{ek_key}").as_str())
    );
    assert!(att.selectors.contains(&format!("tpm:ek:{ek_key}")));
    assert!(
        att.selectors
            .iter()
            .any(|x| x.starts_with("tpm:ek_issuer:") && x.contains("swtpm-localca")),
        "{:?}",
        att.selectors
    );
    // Registration entries can name every one of them.
    for sel in &att.selectors {
        vouch_identity::Selector::parse(sel).unwrap();
    }
    let bound = s.store.tpm_key(&expected).await.unwrap().unwrap();
    assert_eq!(bound.ek_cert.as_deref(), Some(nv_cert.as_slice()));
    assert_eq!(bound.ek_key.as_deref(), Some(ek_key.as_str()));
    assert!(bound.activated_at.is_some() && bound.bound_at.is_some());

    // The node attests affirming with TPM evidence.
    let exe_sha = vouch_evidence::sha256_file(&s.dir.path().join("app.bin")).unwrap();
    s.refvalue("executable", "app", &exe_sha).await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    let rec = s
        .store
        .attestation(&r.attestation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.evidence_kind, "tpm");
    assert_eq!(rec.node_id, expected);

    // An entry naming the TPM (the verifier's word about the node) grants an SVID.
    let spiffe = vouch_identity::SpiffeId::parse("spiffe://vouch.local/tpm-node/app").unwrap();
    let entry = vouch_identity::Entry::new(
        "e-tpm".into(),
        &spiffe,
        vec![
            vouch_identity::Selector::parse(&format!("tpm:ek:{ek_key}")).unwrap(),
            vouch_identity::Selector::parse("vouch:node_attestor:tpm").unwrap(),
            vouch_identity::Selector::parse("unix:uid:1000").unwrap(),
        ],
        600,
        unix_now(),
    )
    .unwrap();
    s.store.add_entry(&entry).await.unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let leaf_pk = B64.encode(rcgen::PublicKeyData::subject_public_key_info(&leaf));
    let ask = |sel: &[&str]| {
        let sel: Vec<String> = sel.iter().map(|x| x.to_string()).collect();
        let key_id = a.enrollment().key_id.clone();
        vouch_core::wire::SvidRequest {
            signature: a.key().sign_b64(&vouch_core::wire::svid_signing_input(
                &key_id, "app", &leaf_pk, &sel,
            )),
            key_id,
            workload: "app".into(),
            public_key: leaf_pk.clone(),
            selectors: sel,
        }
    };
    let issued = client(&s).svid(&ask(&["unix:uid:1000"])).await.unwrap();
    assert_eq!(issued.svids.len(), 1);
    assert_eq!(issued.svids[0].spiffe_id, spiffe.to_string());
    let e = client(&s).svid(&ask(&["unix:uid:1001"])).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NoIdentity), "{e}");

    // Re-installed: the agent's state is wiped (key, AK blobs, enrollment). It joins again as
    // the same node with a new key and a new AK; the old key is revoked.
    std::fs::remove_dir_all(s.dir.path().join("agent-app")).unwrap();
    let mut b = tokenless_agent(&s, &tpm, "app").await.unwrap();
    assert_eq!(b.enrollment().node_id, expected);
    assert_ne!(b.enrollment().key_id, first.key_id);
    assert!(s.store.agent_key(&first.key_id).await.unwrap().is_none());
    assert!(
        s.store
            .agent_key(&b.enrollment().key_id)
            .await
            .unwrap()
            .is_some()
    );
    let rebound = s.store.tpm_key(&expected).await.unwrap().unwrap();
    assert_ne!(rebound.ak_public, bound.ak_public, "a new AK was activated");
    assert_eq!(rebound.bound_at, bound.bound_at);
    assert_eq!(s.store.nodes().await.unwrap().len(), 1);
    let att = s.store.node_attestation(&expected).await.unwrap().unwrap();
    assert_eq!(att.attestations, 2);
    let r = b.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    // The old agent, still running with its old key, is refused.
    let e = a.attest_once().await.unwrap_err();
    assert!(
        matches!(e.kind(), Some(ErrorKind::UnknownKey | ErrorKind::Revoked)),
        "{e}"
    );

    // Revoked (the machine was stolen): its TPM cannot bring the node back.
    let token = std::fs::read_to_string(s.dir.path().join("server/keys/admin.token")).unwrap();
    let ca = std::fs::read(s.server.ca_cert.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/v1/revocations", s.server.base_url))
        .header("authorization", format!("Bearer {token}"))
        .json(&serde_json::json!({"kind": "node", "target": expected, "reason": "stolen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    std::fs::remove_dir_all(s.dir.path().join("agent-app")).unwrap();
    let e = tokenless_agent(&s, &tpm, "app").await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Revoked), "{e}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_touch_turned_off_refuses_a_tokenless_tpm_agent() {
    let tpm = Swtpm::start("sha256");
    let s = server_with(tpm.path("ca"), |c| {
        c.node_attestors = vec!["join_token".into()];
    })
    .await;
    let e = tokenless_agent(&s, &tpm, "app").await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NodeAttestation), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("node_attestors") && msg.contains("join token"),
        "{msg}"
    );
    // Nor does a join made by hand get a challenge.
    let h = Hand::new(&tpm, &s.dir.path().join("hand"));
    let e = client(&s).tpm_join(&h.own_request()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::NodeAttestation), "{e}");
    no_nodes(&s).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ek_certificate_from_an_untrusted_ca_never_joins() {
    let tpm = Swtpm::start("sha256");
    let other = Swtpm::start("sha256");
    // The verifier trusts only the other TPM's manufacturer.
    let s = server(other.path("ca")).await;
    let e = tokenless_agent(&s, &tpm, "app").await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("no trusted manufacturer CA"), "{e}");
    no_nodes(&s).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_or_stolen_ek_certificate_never_joins() {
    let a = Swtpm::start("sha256");
    let b = Swtpm::start("sha256");
    let s = server(ca_dir(&[&a, &b])).await;
    let c = client(&s);
    let ha = Hand::new(&a, &s.dir.path().join("hand-a"));
    let hb = Hand::new(&b, &s.dir.path().join("hand-b"));
    let (ia, ib) = (ha.tpm.identity().unwrap(), hb.tpm.identity().unwrap());
    let (cert_a, cert_b) = (ia.ek_cert.clone().unwrap(), ib.ek_cert.clone().unwrap());

    // TPM a's EK with TPM b's certificate (a valid certificate from a trusted CA, for
    // another EK): refused before any challenge.
    let e = c
        .tpm_join(&ha.request(&ia.ek_public, &cert_b, &ia.ak_public))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    // And the other way round.
    let e = c
        .tpm_join(&hb.request(&ib.ek_public, &cert_a, &ib.ak_public))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");

    // TPM b's EK and certificate, copied by someone who holds only TPM a: the verifier
    // challenges b's EK, which a cannot answer, and a guessed secret is refused.
    let stolen = c
        .tpm_join(&ha.request(&ib.ek_public, &cert_b, &ia.ak_public))
        .await
        .unwrap();
    assert!(ha.activate(&stolen).is_err(), "only TPM b can activate");
    let guess = [7u8; 32];
    let e = c
        .tpm_join_activate(&ha.activation(&stolen, &guess))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    // A request signed by another key than the one it enrolls.
    let mut forged = ha.own_request();
    forged.public_key = hb.key.public_key_b64();
    let e = c.tpm_join(&forged).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::EvidenceSignature), "{e}");
    no_nodes(&s).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_must_be_right_used_once_and_in_time() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let c = client(&s);
    let h = Hand::new(&tpm, &s.dir.path().join("hand"));

    // The right secret with one byte flipped: refused, and the challenge is used up (the
    // right secret afterwards is refused too). Nothing was enrolled.
    let ch = c.tpm_join(&h.own_request()).await.unwrap();
    let secret = h.activate(&ch).unwrap();
    let mut flipped = secret.clone();
    flipped[5] ^= 0x01;
    let e = c
        .tpm_join_activate(&h.activation(&ch, &flipped))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("secret is wrong"), "{e}");
    let e = c
        .tpm_join_activate(&h.activation(&ch, &secret))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no such TPM join challenge"), "{e}");
    no_nodes(&s).await;

    // A right activation joins; the same activation replayed is refused, and the node keeps
    // the one key.
    let ch = c.tpm_join(&h.own_request()).await.unwrap();
    let ok = h.activation(&ch, &h.activate(&ch).unwrap());
    let joined = c.tpm_join_activate(&ok).await.unwrap();
    assert_eq!(joined.node_id, ch.node_id);
    let e = c.tpm_join_activate(&ok).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("no such TPM join challenge"), "{e}");
    assert!(s.store.agent_key(&joined.key_id).await.unwrap().is_some());
    assert_eq!(s.store.nodes().await.unwrap().len(), 1);

    // An activation signed by another key than the one that joined.
    let ch = c.tpm_join(&h.own_request()).await.unwrap();
    let other = Hand::new(&tpm, &s.dir.path().join("hand"));
    let e = c
        .tpm_join_activate(&other.activation(&ch, &h.activate(&ch).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::EvidenceSignature), "{e}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let tpm = Swtpm::start("sha256");
    let s = server_with(tpm.path("ca"), |c| c.nonce_ttl = 1).await;
    let c = client(&s);
    let h = Hand::new(&tpm, &s.dir.path().join("hand"));
    let ch = c.tpm_join(&h.own_request()).await.unwrap();
    assert!(ch.expires_at <= unix_now() + 1);
    let secret = h.activate(&ch).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let e = c
        .tpm_join_activate(&h.activation(&ch, &secret))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    // Either refused as expired, or already swept by the verifier's periodic sweep (which
    // drops expired joins) and so no longer known: both say it expired.
    assert!(e.to_string().contains("expired"), "{e}");
    no_nodes(&s).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncertified_ek_never_joins_without_a_token() {
    let tpm = Swtpm::start("sha256");
    // Even where the token path accepts uncertified EKs.
    let s = server_with(tpm.path("ca"), |c| c.tpm_allow_uncertified_ek = true).await;
    let h = Hand::new(&tpm, &s.dir.path().join("hand"));
    let id = h.tpm.identity().unwrap();
    let e = client(&s)
        .tpm_join(&h.request(&id.ek_public, &[], &id.ak_public))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("no EK certificate"), "{e}");
    // A TPM whose NV holds no EK certificate: the agent says so before asking the verifier.
    tpm.tool(&["tpm2_nvundefine", "-C", "p", "0x01c00002"]);
    let e = tokenless_agent(&s, &tpm, "app").await.unwrap_err();
    assert!(
        matches!(&e, AgentError::Config(m) if m.contains("no EK certificate")),
        "{e}"
    );
    no_nodes(&s).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecc_p384_ek_joins_with_its_own_certificate() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let exe = s.dir.path().join("ecc.bin");
    std::fs::write(&exe, "ecc").unwrap();
    let mut cfg = tpm_config(&tpm);
    cfg.key_alg = "ecc".into();
    let mut a = Agent::new(AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir: s.dir.path().join("agent-ecc"),
        workload_name: "ecc".into(),
        exe: Some(exe.clone()),
        tpm: Some(cfg),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    // The certificate bound is the one tpm2-tools reads from the ECC EK certificate index.
    tpm.tool(&[
        "tpm2_nvread",
        "0x01c00016",
        "-C",
        "o",
        "-o",
        "ekcert-ecc.der",
    ]);
    let node = a.enrollment().node_id.clone();
    let bound = s.store.tpm_key(&node).await.unwrap().unwrap();
    assert_eq!(bound.ek_cert.unwrap(), tpm.read("ekcert-ecc.der"));
    let ek_key = bound.ek_key.unwrap();
    assert_eq!(
        node,
        vouch_nodeattest::node_id_for(&format!("tpm:ek:{ek_key}"))
    );
    // Another EK of the same TPM is another key: not the RSA EK's node.
    let (rsa_node, _, _) = expected_node(&tpm);
    assert_ne!(node, rsa_node);
    s.refvalue(
        "executable",
        "ecc",
        &vouch_evidence::sha256_file(&exe).unwrap(),
    )
    .await;
    let r = a.attest_once().await.unwrap();
    assert_eq!(r.status, ArStatus::Affirming, "{:?}", r.reasons);
    s.server.shutdown().await;
}

/// A machine enrolled with a join token keeps its TPM: the same TPM cannot also join without
/// one as a second node, until the token-enrolled node is revoked (which frees the EK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_bound_to_a_token_enrolled_node_joins_only_once_that_node_is_revoked() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let exe = s.dir.path().join("tok.bin");
    std::fs::write(&exe, "tok").unwrap();
    let token = vouch_server::create_join_token(s.store.as_ref(), 600, None)
        .await
        .unwrap();
    let old = Agent::new(AgentConfig {
        servers: vec![s.server.base_url.clone()],
        ca_cert: s.server.ca_cert.clone(),
        data_dir: s.dir.path().join("agent-tok"),
        join_token: Some(token),
        workload_name: "tok".into(),
        exe: Some(exe),
        tpm: Some(tpm_config(&tpm)),
        ..AgentConfig::default()
    })
    .await
    .unwrap();
    let held = old.enrollment().node_id.clone();
    assert!(s.store.node_attestation(&held).await.unwrap().is_none());

    let e = tokenless_agent(&s, &tpm, "app").await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::TpmEkInUse), "{e}");
    assert!(e.to_string().contains(&held), "{e}");
    assert_eq!(s.store.nodes().await.unwrap().len(), 1);

    let token = std::fs::read_to_string(s.dir.path().join("server/keys/admin.token")).unwrap();
    let ca = std::fs::read(s.server.ca_cert.as_ref().unwrap()).unwrap();
    let r = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap()
        .post(format!("{}/v1/revocations", s.server.base_url))
        .header("authorization", format!("Bearer {token}"))
        .json(&serde_json::json!({"kind": "node", "target": held, "reason": "moved to zero-touch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    std::fs::remove_dir_all(s.dir.path().join("agent-app")).ok();
    let a = tokenless_agent(&s, &tpm, "app").await.unwrap();
    assert_eq!(a.enrollment().node_id, expected_node(&tpm).0);
    assert_ne!(a.enrollment().node_id, held);
    s.server.shutdown().await;
}

/// Replicas sharing a store share the open joins: a join answered by one verifier is
/// completed at another (behind a load balancer the two requests may reach different
/// replicas), and taken there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_opened_at_one_replica_is_activated_at_another() {
    let tpm = Swtpm::start("sha256");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("shared.db"))
            .await
            .unwrap(),
    );
    let replica = |name: &str| ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join(name),
        tpm_ca_dir: Some(tpm.path("ca")),
        node_attestors: vec!["tpm".into()],
        ..ServerConfig::default()
    };
    let a = start_with_store(replica("a"), store.clone()).await.unwrap();
    let b = start_with_store(replica("b"), store.clone()).await.unwrap();
    let ca = VerifierClient::new(&a.base_url, a.ca_cert.as_deref()).unwrap();
    let cb = VerifierClient::new(&b.base_url, b.ca_cert.as_deref()).unwrap();
    let h = Hand::new(&tpm, &dir.path().join("hand"));
    let ch = ca.tpm_join(&h.own_request()).await.unwrap();
    let ok = h.activation(&ch, &h.activate(&ch).unwrap());
    let joined = cb.tpm_join_activate(&ok).await.unwrap();
    assert_eq!(joined.node_id, ch.node_id);
    assert!(store.agent_key(&joined.key_id).await.unwrap().is_some());
    // Taken: neither replica completes it again.
    for c in [&ca, &cb] {
        let e = c.tpm_join_activate(&ok).await.unwrap_err();
        assert!(e.to_string().contains("no such TPM join challenge"), "{e}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Tampered and hostile join requests, built from a real swtpm's EK, certificate and AK: each
/// refused with a clear kind before any challenge, and nothing enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_hostile_join_requests_are_refused() {
    let tpm = Swtpm::start("sha256");
    let s = server(tpm.path("ca")).await;
    let c = client(&s);
    let h = Hand::new(&tpm, &s.dir.path().join("hand"));
    let id = h.tpm.identity().unwrap();
    let cert = id.ek_cert.clone().unwrap();
    let refused = |r: Result<TpmJoinResponse, AgentError>| r.unwrap_err();

    // One flipped byte in the signed part of the real EK certificate (its validity dates,
    // inside the TBSCertificate) breaks the manufacturer's signature.
    let mut bad = cert.clone();
    let at = bad.len() / 3;
    bad[at] ^= 0x01;
    let e = refused(
        c.tpm_join(&h.request(&id.ek_public, &bad, &id.ak_public))
            .await,
    );
    assert!(
        matches!(
            e.kind(),
            Some(ErrorKind::TpmEnrollment | ErrorKind::MalformedRequest)
        ),
        "{e}"
    );
    // One flipped byte of the EK's modulus: the certificate no longer certifies it.
    let mut ek = id.ek_public.clone();
    let last = ek.len() - 10;
    ek[last] ^= 0x01;
    let e = refused(c.tpm_join(&h.request(&ek, &cert, &id.ak_public)).await);
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    // The EK offered as the AK (a decryption key, not a restricted signing key): refused, or
    // a credential for it would let a key that can sign anything pass as the AK.
    let e = refused(
        c.tpm_join(&h.request(&id.ek_public, &cert, &id.ek_public))
            .await,
    );
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    assert!(e.to_string().contains("AK"), "{e}");
    // A truncated AK public area.
    let e = refused(
        c.tpm_join(&h.request(
            &id.ek_public,
            &cert,
            &id.ak_public[..id.ak_public.len() / 2],
        ))
        .await,
    );
    assert_eq!(e.kind(), Some(ErrorKind::TpmEnrollment), "{e}");
    // A certificate over the 16 KiB bound, and fields that are not base64url.
    let e = refused(
        c.tpm_join(&h.request(&id.ek_public, &vec![0x30; 17 * 1024], &id.ak_public))
            .await,
    );
    assert_eq!(e.kind(), Some(ErrorKind::MalformedRequest), "{e}");
    let mut req = h.own_request();
    req.ek_public = "not base64url!".into();
    req.signature = h.key.sign_b64(&tpm_join_signing_input(
        "join",
        &req.public_key,
        &[&req.hostname, &req.ek_public, &req.ek_cert, &req.ak_public],
    ));
    let e = refused(c.tpm_join(&req).await);
    assert_eq!(e.kind(), Some(ErrorKind::MalformedRequest), "{e}");
    // A field changed after signing.
    let mut req = h.own_request();
    req.hostname = "another-host".into();
    let e = refused(c.tpm_join(&req).await);
    assert_eq!(e.kind(), Some(ErrorKind::EvidenceSignature), "{e}");
    no_nodes(&s).await;
    s.server.shutdown().await;
}

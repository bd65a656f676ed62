//! Signed revocation: results carry the replica's certificate (x5c) and verify against the
//! trust bundle alone; `POST /v1/revocations` appends a signed record the verifier enforces at
//! once; a relying party that took the feed refuses the revoked workload with no network, and
//! refuses tampered records and heads, and records signed outside the trust domain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Harness, rp_requirements};
use vouch_rp::{AllowedIds, ResultVerifier, RevocationKind, RevocationSet, RpError};
use vouch_server::unix_now;

fn bundle(h: &Harness) -> Arc<vouch_rp::SpiffeVerifier> {
    h.trust_bundle()
}

fn http(h: &Harness) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn feed(h: &Harness, after: u64) -> serde_json::Value {
    http(h)
        .get(format!(
            "{}/v1/revocations?after={after}",
            h.server.base_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Flip one byte of the base64url part `part` (0 header, 1 payload, 2 signature) of a JWS,
/// keeping it valid base64url.
fn flip(jws: &str, part: usize, at: usize) -> String {
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    let mut bytes = B64.decode(&parts[part]).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    parts[part] = B64.encode(bytes);
    parts.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_signed_enforced_and_checked_offline() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("billing").await;
    h.trust(&mut agent).await;
    let first = agent.attest_once().await.unwrap();
    let token = first.result.clone();

    // The result verifies against the trust bundle alone: no JWKS.
    let rp = ResultVerifier::from_trust_bundle(bundle(&h));
    let ok = rp.verify(&token, &rp_requirements()).unwrap();
    let signer = ok.signer.clone().unwrap();
    assert!(
        signer.starts_with("spiffe://vouch.local/vouch/verifier/"),
        "{signer}"
    );
    assert!(ok.signer_serial.is_some());

    // An empty log: a signed head at epoch 0 makes the view complete.
    let mut set = RevocationSet::new(bundle(&h));
    let v = feed(&h, 0).await;
    assert!(v["records"].as_array().unwrap().is_empty());
    assert!(
        set.insert_head(v["head"].as_str().unwrap(), unix_now())
            .unwrap()
    );
    assert!(set.view().is_complete());
    assert!(set.check_result(&ok, unix_now()).is_ok());

    // Revoke the workload through the admin API.
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let post = |body: serde_json::Value, auth: Option<&str>| {
        let mut r = http(&h)
            .post(format!("{}/v1/revocations", h.server.base_url))
            .json(&body);
        if let Some(a) = auth {
            r = r.bearer_auth(a.trim());
        }
        r.send()
    };
    let workload = ok.subject.clone().unwrap();
    let body = serde_json::json!({"kind": "workload", "target": workload, "reason": "compromised"});
    assert_eq!(post(body.clone(), None).await.unwrap().status(), 401);
    let bad_kind = serde_json::json!({"kind": "everything", "target": "x", "reason": "r"});
    assert_eq!(post(bad_kind, Some(&admin)).await.unwrap().status(), 400);
    let no_reason = serde_json::json!({"kind": "workload", "target": workload, "reason": " "});
    assert_eq!(post(no_reason, Some(&admin)).await.unwrap().status(), 400);
    let unknown = serde_json::json!({"kind": "node", "target": "no-such-node", "reason": "r"});
    assert_eq!(post(unknown, Some(&admin)).await.unwrap().status(), 404);
    let r = post(body.clone(), Some(&admin)).await.unwrap();
    assert_eq!(r.status(), 201);
    let rec: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rec["epoch"], 1);
    // Revoking it again is refused: one record per target.
    assert_eq!(post(body, Some(&admin)).await.unwrap().status(), 400);

    // The verifier enforces it at once: the next attestation is refused, the old result no
    // longer stands.
    let e = agent.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(vouch_core::ErrorKind::Revoked), "{e}");
    let standing = h.client().result(&first.attestation_id).await.unwrap();
    assert!(!standing.valid);

    // The relying party takes the feed once, then checks with no network.
    let v = feed(&h, 0).await;
    let records: Vec<String> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(records.len(), 1);
    let now = unix_now();

    // Tampered records are refused, and so is a head passed off as a record.
    for (part, at) in [(0, 10), (1, 5), (1, 60), (2, 0), (2, 40)] {
        let bad = flip(&records[0], part, at);
        assert!(
            set.insert_record(&bad, now).is_err(),
            "part {part} byte {at}"
        );
    }
    assert!(set.insert_record(v["head"].as_str().unwrap(), now).is_err());
    assert!(set.is_empty());
    // A head with one flipped byte is refused too.
    assert!(
        set.insert_head(&flip(v["head"].as_str().unwrap(), 1, 3), now)
            .is_err()
    );

    assert!(set.insert_record(&records[0], now).unwrap());
    assert!(
        !set.insert_record(&records[0], now).unwrap(),
        "same record twice"
    );
    assert!(set.insert_head(v["head"].as_str().unwrap(), now).unwrap());
    let view = set.view();
    assert_eq!((view.complete_through, view.head_epoch), (1, Some(1)));
    assert!(view.staleness(now).unwrap() <= 2);
    let c = set.revoked(RevocationKind::Workload, &workload).unwrap();
    assert_eq!(
        (c.reason.as_str(), c.by.as_str()),
        ("compromised", "admin-api")
    );
    match set.check_result(&ok, now) {
        Err(RpError::Revoked { kind, epoch, .. }) => {
            assert_eq!((kind.as_str(), epoch), ("workload", 1))
        }
        other => panic!("{other:?}"),
    }

    // The set survives a restart of the relying party, checked again on load.
    let saved = h.path("revocations.json");
    set.save(&saved).unwrap();
    let mut again = RevocationSet::new(bundle(&h));
    assert_eq!(again.load(&saved, now).unwrap(), 1);
    assert!(again.check_result(&ok, now).is_err());

    // Another trust domain's verifier cannot revoke anything here: its record does not chain
    // to this bundle.
    let other = Harness::new(|c| c.trust_domain = "other.test".into()).await;
    let rec = vouch_server::revoke_offline(
        &other.cfg,
        other.store.as_ref(),
        RevocationKind::Svid,
        "0badc0de",
        "test",
        "mallory",
    )
    .await
    .unwrap();
    let err = set.insert_record(&rec.record, now).unwrap_err();
    assert!(err.to_string().contains("signer certificate"), "{err}");
    // Nor can a record from this domain's CA signed with a certificate for some other
    // identity than a verifier's: only `/vouch/verifier/…` may sign.
    assert!(set.revoked(RevocationKind::Svid, "badc0de").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_path_signs_at_the_next_epoch_and_names_bad_targets() {
    let h = Harness::new(|_| {}).await;
    let sign = |kind, target: &'static str| {
        vouch_server::revoke_offline(&h.cfg, h.store.as_ref(), kind, target, "r", "ops")
    };
    let a = sign(RevocationKind::Svid, "00:AB:cd").await.unwrap();
    assert_eq!((a.epoch, a.target.as_str()), (1, "abcd"));
    let b = sign(RevocationKind::Svid, "ef").await.unwrap();
    assert_eq!(b.epoch, 2);
    let e = sign(RevocationKind::Svid, "not-hex").await.unwrap_err();
    assert!(e.to_string().contains("not hexadecimal"), "{e}");
    let e = sign(RevocationKind::AgentKey, "missing").await.unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // The records verify as the feed serves them, in order.
    let mut set = RevocationSet::new(bundle(&h));
    for r in h.store.revocations_since(0, 10).await.unwrap() {
        assert!(set.insert_record(&r.record, unix_now()).unwrap());
    }
    assert_eq!(set.view().complete_through, 2);
    assert!(!set.view().is_complete(), "no head yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_peer_with_a_revoked_svid_is_refused_offline() {
    use rcgen::PublicKeyData as _;
    let h = Harness::new(|_| {}).await;
    let td = vouch_identity::TrustDomain::parse(&h.cfg.trust_domain).unwrap();
    let ca =
        vouch_identity::CaSet::load_or_create(&h.cfg.spiffe_dir(), &td, 3600, unix_now()).unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let id = vouch_identity::SpiffeId::new(&td, "/billing").unwrap();
    let svid = ca
        .active()
        .issue(&id, &leaf.subject_public_key_info(), 600, unix_now())
        .unwrap();
    let other = ca
        .active()
        .issue(&id, &leaf.subject_public_key_info(), 600, unix_now())
        .unwrap();
    let set = Arc::new(std::sync::RwLock::new(RevocationSet::new(bundle(&h))));
    // Current as of now: the empty log's head.
    let head = feed(&h, 0).await;
    set.write()
        .unwrap()
        .insert_head(head["head"].as_str().unwrap(), unix_now())
        .unwrap();
    let auth: Vec<Vec<u8>> = ca
        .authorities(unix_now())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let peer = vouch_rp::SpiffeVerifier::with_revocations(
        &td,
        &auth,
        AllowedIds::AnyInTrustDomain,
        set.clone(),
    )
    .unwrap();
    assert_eq!(
        peer.verify_chain(std::slice::from_ref(&svid), unix_now())
            .unwrap(),
        id
    );

    let (_, cert) = x509_parser::parse_x509_certificate(&svid).unwrap();
    let serial = hex::encode(cert.raw_serial());
    vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Svid,
        &serial,
        "key on a lost laptop",
        "ops",
    )
    .await
    .unwrap();
    for r in h.store.revocations_since(0, 10).await.unwrap() {
        set.write()
            .unwrap()
            .insert_record(&r.record, unix_now())
            .unwrap();
    }
    let err = peer.verify_chain(&[svid], unix_now()).unwrap_err();
    assert!(err.to_string().contains("is revoked"), "{err}");
    // Another SVID of the same workload (another serial) still passes.
    peer.verify_chain(&[other], unix_now()).unwrap();
}

/// Issue 12: a relying party refuses by default when its revocation state is stale (the
/// newest signed head older than the bound, 5 minutes unless set) or incomplete (no head, or a
/// record the head announces missing): it cannot know what was revoked since. The set's checks,
/// `SpiffeVerifier::with_revocations` and `ResultVerifier::with_revocations` honour the same
/// bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_stale_or_incomplete_revocation_state_refuses() {
    use rcgen::PublicKeyData as _;
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("billing").await;
    h.trust(&mut agent).await;
    let token = agent.attest_once().await.unwrap().result;
    let ok = ResultVerifier::from_trust_bundle(bundle(&h))
        .verify(&token, &rp_requirements())
        .unwrap();
    let now = unix_now();

    // No head at all: incomplete.
    let mut set = RevocationSet::new(bundle(&h));
    assert_eq!(set.max_age(), std::time::Duration::from_secs(300));
    assert_eq!(
        set.check_result(&ok, now),
        Err(RpError::RevocationsIncomplete {
            complete_through: 0,
            head_epoch: None
        })
    );
    // The empty log's head: current now, stale 301 s later, current again with a longer bound.
    set.insert_head(feed(&h, 0).await["head"].as_str().unwrap(), now)
        .unwrap();
    set.check_result(&ok, now).unwrap();
    let later = unix_now() + 301;
    match set.check_result(&ok, later) {
        Err(RpError::RevocationsStale { age, max_age }) => {
            assert!((301..=310).contains(&age), "{age}");
            assert_eq!(max_age, 300);
        }
        other => panic!("{other:?}"),
    }
    set.set_max_age(std::time::Duration::from_secs(600));
    set.check_result(&ok, later).unwrap();

    // Two revocations, of which only the second arrived, and a head announcing both.
    for target in ["0a", "0b"] {
        vouch_server::revoke_offline(
            &h.cfg,
            h.store.as_ref(),
            RevocationKind::Svid,
            target,
            "test",
            "ops",
        )
        .await
        .unwrap();
    }
    let v = feed(&h, 0).await;
    let second = v["records"][1].as_str().unwrap();
    let mut gap = RevocationSet::new(bundle(&h));
    gap.insert_record(second, now).unwrap();
    gap.insert_head(v["head"].as_str().unwrap(), now).unwrap();
    let e = gap.check_result(&ok, now).unwrap_err();
    assert_eq!(
        e,
        RpError::RevocationsIncomplete {
            complete_through: 0,
            head_epoch: Some(2)
        }
    );
    assert!(e.to_string().contains("announces epoch 2"), "{e}");
    gap.insert_record(v["records"][0].as_str().unwrap(), now)
        .unwrap();
    gap.check_result(&ok, now).unwrap();

    // mTLS peers: the same bound, at the handshake's time.
    let td = vouch_identity::TrustDomain::parse(&h.cfg.trust_domain).unwrap();
    let ca =
        vouch_identity::CaSet::load_or_create(&h.cfg.spiffe_dir(), &td, 3600, unix_now()).unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let id = vouch_identity::SpiffeId::new(&td, "/billing").unwrap();
    let svid = ca
        .active()
        .issue(&id, &leaf.subject_public_key_info(), 600, now)
        .unwrap();
    let auth: Vec<Vec<u8>> = ca
        .authorities(now)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let shared = Arc::new(std::sync::RwLock::new(gap));
    let peer = vouch_rp::SpiffeVerifier::with_revocations(
        &td,
        &auth,
        AllowedIds::AnyInTrustDomain,
        shared.clone(),
    )
    .unwrap();
    peer.verify_chain(std::slice::from_ref(&svid), now).unwrap();
    let e = peer
        .verify_chain(std::slice::from_ref(&svid), now + 301)
        .unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");

    // Results: the same bound, at the time of verification.
    let rp = ResultVerifier::from_trust_bundle(bundle(&h)).with_revocations(shared.clone());
    rp.verify(&token, &rp_requirements()).unwrap();
    shared
        .write()
        .unwrap()
        .set_max_age(std::time::Duration::ZERO);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(matches!(
        rp.verify(&token, &rp_requirements()),
        Err(RpError::RevocationsStale { max_age: 0, .. })
    ));
    // Fresh again with a head signed now; then the workload is revoked and refused.
    shared
        .write()
        .unwrap()
        .set_max_age(std::time::Duration::from_secs(60));
    rp.verify(&token, &rp_requirements()).unwrap();
    let rec = vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Workload,
        ok.subject.as_deref().unwrap(),
        "test",
        "ops",
    )
    .await
    .unwrap();
    shared
        .write()
        .unwrap()
        .insert_record(&rec.record, unix_now())
        .unwrap();
    assert!(matches!(
        rp.verify(&token, &rp_requirements()),
        Err(RpError::Revoked { epoch: 3, .. })
    ));
}

/// Issue 12: a verifier does not gossip without the cluster's key unless its configuration says
/// so in as many words; a key file that is too short is refused, a missing one is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_gossip_without_a_key_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let start = |key_file: Option<std::path::PathBuf>, insecure: bool| {
        let cfg = vouch_server::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("server"),
            gossip: Some(vouch_server::GossipSettings {
                listen: free_udp(),
                advertise: None,
                seeds: Vec::new(),
                node_id: None,
                interval_ms: 100,
                key_file,
                accept_key_files: Vec::new(),
                insecure_unauthenticated: insecure,
            }),
            ..vouch_server::ServerConfig::default()
        };
        async move {
            let store: Arc<dyn vouch_store::Store> = Arc::new(
                vouch_store::SqliteStore::open(&cfg.database_path())
                    .await
                    .unwrap(),
            );
            vouch_server::start_with_store(cfg, store).await
        }
    };
    let e = start(None, false).await.unwrap_err().to_string();
    assert!(e.contains("needs key_file"), "{e}");
    let key = dir.path().join("gossip.key");
    let e = start(Some(key.clone()), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("choose one"), "{e}");
    std::fs::write(&key, [7u8; 31]).unwrap();
    let e = start(Some(key.clone()), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("32 to 1024 secret bytes, not 31"), "{e}");
    std::fs::remove_file(&key).unwrap();
    start(Some(key.clone()), false)
        .await
        .unwrap()
        .shutdown()
        .await;
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    start(None, true).await.unwrap().shutdown().await;
}

/// A free UDP port on 127.0.0.1.
fn free_udp() -> std::net::SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// Wait until `f` holds for `member`'s view, or fail after `secs`.
async fn until(
    member: &vouch_rp::gossip::Gossip,
    secs: u64,
    what: &str,
    f: impl Fn(&vouch_rp::RevocationView) -> bool,
) {
    let mut w = member.watch();
    let t0 = std::time::Instant::now();
    while !f(&w.borrow()) {
        let left = std::time::Duration::from_secs(secs).saturating_sub(t0.elapsed());
        assert!(
            !left.is_zero(),
            "{what}: not within {secs} s; view {:?}",
            *w.borrow()
        );
        let _ = tokio::time::timeout(left, w.changed()).await;
    }
}

/// A SynAck as chitchat itself serializes it, claiming that `victim`'s `head` is at version
/// 2^64 - 1, the highest there is: an impersonator (a real chitchat instance under the victim's identity, on another
/// port) answers a Syn with an empty digest, sent from a plain UDP socket, and its answer is
/// kept as bytes.
async fn forged_syn_ack(victim: &chitchat::ChitchatId, cluster: &str) -> Vec<u8> {
    use chitchat::transport::UdpTransport;
    use chitchat::{ChitchatConfig, ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
    let listen = free_udp();
    let config = ChitchatConfig {
        chitchat_id: victim.clone(),
        cluster_id: cluster.into(),
        gossip_interval: std::time::Duration::from_secs(3600),
        listen_addr: listen,
        seed_nodes: Vec::new(),
        failure_detector_config: chitchat::FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: std::time::Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let imp = chitchat::spawn_chitchat(config, Vec::new(), &UdpTransport)
        .await
        .unwrap();
    {
        let c = imp.chitchat();
        let mut c = c.lock().await;
        let own = c.self_node_state();
        own.set_max_version(u64::MAX - 1);
        own.set("head", "forged");
    }
    let lab = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: cluster.into(),
            digest: Default::default(),
        },
    };
    lab.send_to(&syn.serialize_to_vec(), listen).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), lab.recv_from(&mut buf))
        .await
        .expect("the impersonator answers")
        .unwrap();
    let bytes = buf[..n].to_vec();
    let answer = ChitchatEnvelope::deserialize(&mut &bytes[..]).unwrap();
    assert!(
        matches!(answer.message, ChitchatMessage::SynAck { .. }),
        "{answer:?}"
    );
    assert!(format!("{answer:?}").contains("forged"), "{answer:?}");
    imp.shutdown().await.unwrap();
    bytes
}

/// A gossip key of 32 bytes `b`.
fn gossip_key(b: u8) -> vouch_rp::gossip::GossipKey {
    vouch_rp::gossip::GossipKey::new(&[b; 32]).unwrap()
}

/// Issue 12: chitchat applies any SynAck or Ack that reaches its UDP port. One datagram
/// claiming that the verifier's `head` is at version 2^64 - 1 reached a member, which passed it
/// on to the verifier itself: the verifier's next publication overflowed (a panic), and no
/// later record or head reached anyone. Built with chitchat's own serialization and sent over
/// real UDP, without the cluster's key (bare, or framed with a wrong MAC under the right key
/// id), it must be dropped unread and change nothing: a record published afterwards still
/// reaches the member. A member holding another key neither hears nor is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_forged_gossip_delta_cannot_silence_a_member() {
    use vouch_rp::gossip::{Gossip, GossipAuth, GossipConfig, GossipKeys};
    let h = Harness::new(|_| {}).await;
    let td = h.cfg.trust_domain.clone();
    let (pa, pb, pc) = (free_udp(), free_udp(), free_udp());
    let join = |name: &str, listen, seeds, key: u8| {
        let auth = GossipAuth::Keys(GossipKeys::new(gossip_key(key)));
        let mut c = GossipConfig::new(name, &td, listen, seeds, auth);
        c.interval = std::time::Duration::from_millis(100);
        let set = Arc::new(std::sync::RwLock::new(RevocationSet::new(bundle(&h))));
        Gossip::join(c, set)
    };
    let verifier = join("verifier", pa, Vec::new(), 1).await.unwrap();
    let member = join("rp", pb, vec![pa.to_string()], 1).await.unwrap();
    let outsider = join("outsider", pc, vec![pa.to_string(), pb.to_string()], 2)
        .await
        .unwrap();
    verifier
        .publish_head(feed(&h, 0).await["head"].as_str().unwrap())
        .await;
    until(&member, 20, "the first head", |v| v.head_epoch == Some(0)).await;
    let dropped = member.dropped_datagrams();

    // The attack: the forged SynAck as chitchat sends it, then framed like a datagram under
    // the cluster's key id (seen on the wire) with a MAC made up.
    let forged = forged_syn_ack(verifier.chitchat_id(), &td).await;
    let mut framed = vec![1, gossip_key(1).id()];
    framed.extend_from_slice(&[0x5a; 32]);
    framed.extend_from_slice(&forged);
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for d in [&forged, &framed, &forged, &framed] {
        attacker.send_to(d, pb).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        member.dropped_datagrams() >= dropped + 4,
        "the forged datagrams were dropped: {} then {}",
        dropped,
        member.dropped_datagrams()
    );

    // A revocation afterwards, and a head that announces it.
    let rec = vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Svid,
        "0abc",
        "after the attack",
        "ops",
    )
    .await
    .unwrap();
    verifier.publish_record(rec.epoch, &rec.record).await;
    verifier
        .publish_head(feed(&h, 0).await["head"].as_str().unwrap())
        .await;
    until(&member, 20, "the record published after the attack", |v| {
        v.complete_through == 1 && v.head_epoch == Some(1)
    })
    .await;

    // The member with another key heard nothing, and its datagrams were dropped.
    assert_eq!(outsider.watch().borrow().head_epoch, None);
    assert!(outsider.dropped_datagrams() > 0 || verifier.dropped_datagrams() > 0);
    assert_eq!(outsider.live_members().await, vec!["outsider".to_string()]);
    verifier.shutdown().await;
    member.shutdown().await;
    outsider.shutdown().await;
}

/// A verifier replica's certificate from the trust domain's real CA, for path
/// `/vouch/verifier/<name>`, issued at `issued` for `ttl` seconds, and a signer of revocation
/// records under it: what someone holding an old (or a since-revoked) replica key has.
struct Replica {
    id: String,
    cert: Vec<u8>,
    pkcs8: Vec<u8>,
}

impl Replica {
    fn new(h: &Harness, name: &str, issued: u64, ttl: u64) -> Self {
        use rcgen::PublicKeyData as _;
        let td = vouch_identity::TrustDomain::parse(&h.cfg.trust_domain).unwrap();
        let ca = vouch_identity::CaSet::load_or_create(&h.cfg.spiffe_dir(), &td, 3600, unix_now())
            .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let id = vouch_identity::SpiffeId::new(&td, &format!("/vouch/verifier/{name}")).unwrap();
        let cert = ca
            .active()
            .issue_verifier(&id, &key.subject_public_key_info(), ttl, issued)
            .unwrap();
        Self {
            id: id.to_string(),
            cert,
            pkcs8: key.serialize_der(),
        }
    }

    /// The certificate's serial, as a revocation target.
    fn serial(&self) -> String {
        let (_, c) = x509_parser::parse_x509_certificate(&self.cert).unwrap();
        vouch_core::revocation::serial_target(c.raw_serial())
    }

    /// A record with these claims (`iss` set to this replica), signed like a replica signs.
    fn sign(&self, epoch: u64, kind: RevocationKind, target: &str, iat: u64) -> String {
        let claims = vouch_rp::RevocationClaims {
            iss: self.id.clone(),
            epoch,
            kind,
            target: target.into(),
            reason: "forged".into(),
            by: "mallory".into(),
            iat,
        };
        self.sign_claims(&claims)
    }

    fn sign_claims(&self, claims: &vouch_rp::RevocationClaims) -> String {
        let mut c = claims.clone();
        c.iss = self.id.clone();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(vouch_core::revocation::REVOCATION_TYP.into());
        header.x5c = Some(vec![
            base64::engine::general_purpose::STANDARD.encode(&self.cert),
        ]);
        jsonwebtoken::encode(
            &header,
            &c,
            &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8),
        )
        .unwrap()
    }
}

/// The claims of a signed record (its payload).
fn claims_of(jws: &str) -> vouch_rp::RevocationClaims {
    serde_json::from_slice(&B64.decode(jws.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// Issue 12: a record's signer certificate is checked when the relying party receives the
/// record, like a head's, not at the record's own `iat`. Someone holding the key of a replica
/// whose certificate expired ten days ago signs a record and dates it to when that certificate
/// was valid: refused (it was accepted, and revoked what it named). The same claims signed
/// under a certificate valid now pass, so the expiry is what refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_record_from_an_expired_replica_certificate_is_refused_whatever_its_iat() {
    let h = Harness::new(|_| {}).await;
    let now = unix_now();
    let ten_days_ago = now - 10 * 86_400;
    let old = Replica::new(&h, "old", ten_days_ago, 3600);
    let backdated = old.sign(1, RevocationKind::Svid, "abc", ten_days_ago + 60);
    let mut set = RevocationSet::new(bundle(&h));
    let e = set.insert_record(&backdated, now).unwrap_err();
    assert!(e.to_string().contains("signer certificate"), "{e}");
    assert!(set.is_empty());
    assert!(set.revoked(RevocationKind::Svid, "abc").is_none());

    let current = Replica::new(&h, "current", now, 3600);
    assert!(
        set.insert_record(&current.sign_claims(&claims_of(&backdated)), now)
            .unwrap()
    );
    assert!(set.revoked(RevocationKind::Svid, "abc").is_some());
}

/// Issue 12: the serial of a record's signer must not itself be revoked. A replica's
/// certificate is revoked (its key leaked); a record signed with it afterwards is refused (it
/// was accepted), as its head already was. Before the revocation it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_record_from_a_revoked_replica_certificate_is_refused() {
    let h = Harness::new(|_| {}).await;
    let now = unix_now();
    let leaked = Replica::new(&h, "leaked", now, 3600);
    let forged = leaked.sign(2, RevocationKind::Svid, "def", now);
    let mut before = RevocationSet::new(bundle(&h));
    assert!(before.insert_record(&forged, now).unwrap());

    let rec = vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Svid,
        &leaked.serial(),
        "key leaked",
        "ops",
    )
    .await
    .unwrap();
    assert_eq!(rec.epoch, 1);
    let mut set = RevocationSet::new(bundle(&h));
    assert!(set.insert_record(&rec.record, now).unwrap());
    match set.insert_record(&forged, now) {
        Err(RpError::Revoked {
            kind,
            target,
            epoch,
        }) => assert_eq!((kind.as_str(), target, epoch), ("svid", leaked.serial(), 1)),
        other => panic!("{other:?}"),
    }
    assert!(set.revoked(RevocationKind::Svid, "def").is_none());
    assert_eq!(set.view().highest, 1);
}

/// Issue 12: two validly signed records for one epoch that say different things are both kept
/// (both revoke), reported as a conflict, listed by `conflicts()`, counted in the view, and
/// saved and loaded with the set. The second used to be dropped from the saved set, so after a
/// restart its target was no longer revoked. The same record signed again by another replica
/// is no conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_conflicting_records_for_one_epoch_are_kept_as_evidence() {
    let h = Harness::new(|_| {}).await;
    let now = unix_now();
    let first = vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Svid,
        "a",
        "lost",
        "ops",
    )
    .await
    .unwrap();
    let other = Replica::new(&h, "other", now, 3600);
    let second = other.sign(1, RevocationKind::Svid, "b", now);
    let mut set = RevocationSet::new(bundle(&h));
    assert!(set.insert_record(&first.record, now).unwrap());
    match set.insert_record(&second, now) {
        Err(e @ RpError::RevocationConflict { epoch: 1, .. }) => {
            assert!(e.to_string().contains("svid b by mallory"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Both revoke; the conflict is listed and counted; nothing is held twice.
    assert_eq!(set.revoked(RevocationKind::Svid, "a").unwrap().target, "a");
    assert_eq!(set.revoked(RevocationKind::Svid, "b").unwrap().target, "b");
    assert_eq!(
        set.conflicts()
            .map(|c| c.target.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(!set.insert_record(&second, now).unwrap());
    // The first record signed again by another replica: the same revocation.
    assert!(
        !set.insert_record(&other.sign_claims(&claims_of(&first.record)), now)
            .unwrap()
    );
    let view = set.view();
    assert_eq!((view.complete_through, view.conflicts), (1, 1));

    let saved = h.path("conflict.json");
    set.save(&saved).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(file["conflicts"].as_array().unwrap().len(), 1);
    let mut again = RevocationSet::new(bundle(&h));
    assert_eq!(again.load(&saved, now).unwrap(), 2);
    assert_eq!(again.view().conflicts, 1);
    assert_eq!(
        again.revoked(RevocationKind::Svid, "b").unwrap().target,
        "b"
    );
}

/// Issue 12: as relying parties check a record's signer when it arrives, a replica hands out
/// every record signed with its current certificate: the feed serves a record whose original
/// signature (a replica certificate since expired) would be refused, signed again now with
/// the same claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_replicas_hand_out_records_under_a_current_certificate() {
    let h = Harness::new(|_| {}).await;
    let now = unix_now();
    let old = Replica::new(&h, "old", now - 10 * 86_400, 3600);
    let stored = old.sign(1, RevocationKind::Svid, "abc", now - 10 * 86_400 + 60);
    h.store
        .append_revocation(&vouch_store::RevocationRecord {
            epoch: 1,
            kind: "svid".into(),
            target: "abc".into(),
            reason: "forged".into(),
            by: "mallory".into(),
            created_at: now - 10 * 86_400 + 60,
            record: stored.clone(),
        })
        .await
        .unwrap();
    let mut set = RevocationSet::new(bundle(&h));
    assert!(set.insert_record(&stored, now).is_err());
    let v = feed(&h, 0).await;
    let served = v["records"][0].as_str().unwrap();
    let (a, b) = (claims_of(served), claims_of(&stored));
    assert!(a.iss.starts_with("spiffe://vouch.local/vouch/verifier/"));
    assert_ne!(a.iss, b.iss);
    assert_eq!((a.epoch, a.target.as_str(), a.iat), (b.epoch, "abc", b.iat));
    assert!(set.insert_record(served, now).unwrap());
    assert!(set.insert_head(v["head"].as_str().unwrap(), now).unwrap());
    set.check_current(now).unwrap();
}

/// A feed longer than the verifier's largest page (1,000 records): `VerifierClient::revocations`
/// reads every page, so a relying party that loads it is complete through the last epoch (with
/// the first page alone the head announces records it lacks, and every check refuses), in the
/// post-quantum forms too. A record past the first page still revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_every_page_of_a_long_feed() {
    let h = Harness::new(|_| {}).await;
    for i in 0..1001u64 {
        let target = format!("{:x}", 0xa000_0000u64 + i);
        vouch_server::revoke_offline(
            &h.cfg,
            h.store.as_ref(),
            RevocationKind::Svid,
            &target,
            "r",
            "ops",
        )
        .await
        .unwrap();
    }
    let text = h.client().revocations().await.unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(all["records"].as_array().unwrap().len(), 1001);
    assert_eq!(all["records_pq"].as_array().unwrap().len(), 1001);
    let now = unix_now();
    let mut set = RevocationSet::new(bundle(&h));
    set.load_json(text.as_bytes(), now).unwrap();
    assert_eq!(set.view().complete_through, 1001);
    assert!(set.check_current(now).is_ok());
    assert!(set.revoked(RevocationKind::Svid, "a00003e8").is_some());
    // The first page alone (what the client used to read): incomplete, so it refuses.
    let first = feed(&h, 0).await;
    let mut partial = RevocationSet::new(bundle(&h));
    partial
        .load_json(first.to_string().as_bytes(), now)
        .unwrap();
    assert_eq!(partial.view().complete_through, 1000);
    assert!(partial.check_current(now).is_err());
}

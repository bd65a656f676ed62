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
    let td = vouch_identity::TrustDomain::parse(&h.cfg.trust_domain).unwrap();
    let ca =
        vouch_identity::CaSet::load_or_create(&h.cfg.spiffe_dir(), &td, 3600, unix_now()).unwrap();
    let auth: Vec<Vec<u8>> = ca
        .authorities(unix_now())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    vouch_rp::SpiffeVerifier::new(&td, &auth, AllowedIds::AnyInTrustDomain).unwrap()
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
    assert!(set.check_result(&ok).is_ok());

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
    match set.check_result(&ok) {
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
    assert!(again.check_result(&ok).is_err());

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

//! Issue 12 item 9: the verifiers' signing authority is their own. A result (or revocation
//! record, or head) is accepted only from a certificate with the EKU id-kp-documentSigning
//! (RFC 9336), which the trust domain's CA gives only to verifier replicas; no registration
//! entry and no workload SVID can take a path under `/vouch/verifier/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Harness, rp_requirements};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
use std::sync::Arc;
use vouch_rp::ResultVerifier;
use vouch_server::unix_now;

fn bundle(h: &Harness) -> Arc<vouch_rp::SpiffeVerifier> {
    h.trust_bundle()
}

/// A leaf certificate for `path` with `ekus`, signed with the trust domain CA's own key (what
/// the CA would issue for a registration entry at that path), and its Ed25519 key (PKCS#8).
fn leaf(h: &Harness, path: &str, ekus: Vec<ExtendedKeyUsagePurpose>) -> (Vec<u8>, Vec<u8>) {
    let dir = h.cfg.spiffe_dir();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names = vec![SanType::URI(
        format!("spiffe://vouch.local{path}").try_into().unwrap(),
    )];
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = ekus;
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// `result`'s claims signed again by `cert`'s key, with `cert` as `x5c`.
fn resign(result: &str, cert: &[u8], pkcs8: &[u8]) -> String {
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(result.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("JWT".into());
    header.x5c = Some(vec![STANDARD.encode(cert)]);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_workload_svid_signs_nothing_a_relying_party_accepts() {
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("billing").await;
    h.trust(&mut agent).await;
    let first = agent.attest_once().await.unwrap();
    let rp = ResultVerifier::from_trust_bundle(bundle(&h));
    // The replica's own certificate carries documentSigning: its result verifies.
    let ok = rp.verify(&first.result, &rp_requirements()).unwrap();
    assert!(
        ok.signer
            .as_deref()
            .unwrap()
            .starts_with("spiffe://vouch.local/vouch/verifier/")
    );

    // A certificate shaped like a workload's X.509-SVID (serverAuth, clientAuth), from the
    // trust domain's CA, under the verifier path (as an entry there would have given) or any
    // other: the same claims re-signed with it are refused.
    let svid_ekus = || {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    };
    for path in ["/vouch/verifier/evil", "/billing"] {
        let (cert, key) = leaf(&h, path, svid_ekus());
        let forged = resign(&first.result, &cert, &key);
        let e = rp.verify(&forged, &rp_requirements()).unwrap_err();
        assert!(e.to_string().contains("documentSigning"), "{path}: {e}");
    }
    // The EKU is what decides: the same forgery with documentSigning passes (only the CA's key
    // can make one, and the CA gives it only to replicas).
    let (cert, key) = leaf(
        &h,
        "/vouch/verifier/evil",
        vec![ExtendedKeyUsagePurpose::Other(
            vouch_identity::DOCUMENT_SIGNING_EKU.to_vec(),
        )],
    );
    rp.verify(&resign(&first.result, &cert, &key), &rp_requirements())
        .unwrap();

    // No entry may grant a path under the prefix, and the CA issues no workload SVID there.
    let td = vouch_identity::TrustDomain::parse("vouch.local").unwrap();
    let id = vouch_identity::SpiffeId::new(&td, "/vouch/verifier/evil").unwrap();
    let e = vouch_identity::Entry::new(
        "e".into(),
        &id,
        vec![vouch_identity::Selector::parse("unix:uid:0").unwrap()],
        60,
        unix_now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("verifiers' own"), "{e}");
    let ca =
        vouch_identity::CaSet::load_or_create(&h.cfg.spiffe_dir(), &td, 3600, unix_now()).unwrap();
    let k = rcgen::KeyPair::generate().unwrap();
    use rcgen::PublicKeyData as _;
    assert!(
        ca.active()
            .issue(&id, &k.subject_public_key_info(), 60, unix_now())
            .is_err()
    );
    // And through the admin API: the entry is refused.
    let token = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let r = reqwest_client(&h)
        .post(format!("{}/v1/entries", h.server.base_url))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({
            "spiffe_id": "spiffe://vouch.local/vouch/verifier/evil",
            "selectors": ["unix:uid:0"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    h.server.shutdown().await;
}

fn reqwest_client(h: &Harness) -> reqwest::Client {
    let ca = std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

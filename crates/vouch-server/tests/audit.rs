//! The audit log through the verifier's API (issue 16 item 3): an enrollment, an attestation
//! result, a registration entry's creation and deletion and a revocation each append an entry;
//! the signed head verifies against the trust bundle alone and its root is the RFC 9162 root of
//! the entries served; every entry's inclusion proof and the consistency proof from an earlier
//! head check offline; a tampered head, proof or entry is refused; the views need the read token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Harness;
use serde_json::Value;
use vouch_core::audit::{
    AuditEntry, check_against_head, check_entries, leaf_hash, parse_hash, verify_consistency,
    verify_inclusion,
};
use vouch_rp::audit::verify_audit_head;
use vouch_server::unix_now;

fn http(h: &Harness) -> reqwest::Client {
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(h.server.ca_cert.as_ref().unwrap()).unwrap())
            .unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn get(h: &Harness, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http(h).get(format!("{}{path}", h.server.base_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| parse_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_decisions_are_logged_with_signed_heads_and_proofs() {
    let h = Harness::new(|_| {}).await;
    let read = h.read_token();
    let admin = std::fs::read_to_string(h.cfg.data_dir.join("keys/admin.token")).unwrap();
    let admin = admin.trim();
    let bundle = h.trust_bundle();

    // Described in the OpenAPI document.
    let doc: Value = http(&h)
        .get(format!("{}/openapi.json", h.server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/v1/audit/head",
        "/v1/audit/entries",
        "/v1/audit/proof/inclusion",
        "/v1/audit/proof/consistency",
    ] {
        assert!(
            doc["paths"][p]["get"].is_object(),
            "{p} not in openapi.json"
        );
    }

    // Unauthenticated: refused.
    let (status, _) = get(&h, "/v1/audit/head", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&h, "/v1/audit/head", Some("not-the-token")).await;
    assert_eq!(status, 401);

    // An enrollment and a decision.
    let mut agent = h.agent("billing").await;
    h.trust(&mut agent).await;
    let result = agent.attest_once().await.unwrap();
    // An SVID issued to it.
    let svid_sha256 = {
        use rcgen::PublicKeyData;
        use vouch_core::wire::{SvidRequest, svid_signing_input};
        use vouch_identity::{Entry, Selector, SpiffeId};
        let id = SpiffeId::parse("spiffe://vouch.local/billing").unwrap();
        let selectors = vec![
            Selector::parse("vouch:workload:billing").unwrap(),
            Selector::parse("vouch:status:affirming").unwrap(),
        ];
        let entry = Entry::new("e-billing".into(), &id, selectors, 600, unix_now()).unwrap();
        h.store.add_entry(&entry).await.unwrap();
        let leaf = rcgen::KeyPair::generate().unwrap();
        let pk = B64.encode(leaf.subject_public_key_info());
        let key_id = agent.enrollment().key_id.clone();
        let req = SvidRequest {
            signature: agent
                .key()
                .sign_b64(&svid_signing_input(&key_id, "billing", &pk, &[])),
            key_id,
            workload: "billing".into(),
            public_key: pk,
            selectors: vec![],
        };
        let r = h.client().svid(&req).await.unwrap();
        assert_eq!(r.svids.len(), 1);
        let der = B64.decode(&r.svids[0].x509_svid).unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der))
    };
    // And a JWT-SVID.
    let jwt_sha256 = {
        use vouch_core::wire::{JwtSvidRequest, jwt_svid_signing_input};
        let key_id = agent.enrollment().key_id.clone();
        let audience = vec!["database".to_string()];
        let (iat, jti) = (unix_now(), "jti-audit-0123456789");
        let req = JwtSvidRequest {
            signature: agent.key().sign_b64(&jwt_svid_signing_input(
                &key_id,
                "billing",
                &audience,
                &[],
                iat,
                jti,
            )),
            key_id,
            workload: "billing".into(),
            audience,
            selectors: vec![],
            iat,
            jti: jti.into(),
        };
        let issued = h.client().jwt_svid(&req).await.unwrap();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            issued[0].token.as_bytes(),
        ))
    };
    let (status, first) = get(&h, "/v1/audit/head", Some(&read)).await;
    assert_eq!(status, 200, "{first}");
    let first_size = first["size"].as_u64().unwrap();
    assert!(first_size >= 2, "{first}");
    let first_head =
        verify_audit_head(first["head"].as_str().unwrap(), &bundle, unix_now()).unwrap();
    assert_eq!(first_head.size, first_size);
    assert_eq!(first_head.root, first["root"].as_str().unwrap());

    // Admin changes: an entry created and deleted, a revocation.
    let c = http(&h);
    let e: Value = c
        .post(format!("{}/v1/entries", h.server.base_url))
        .bearer_auth(admin)
        .json(&serde_json::json!({
            "spiffe_id": "spiffe://vouch.local/billing",
            "selectors": ["vouch:workload:billing"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry_id = e["id"].as_str().unwrap().to_string();
    let r = c
        .delete(format!("{}/v1/entries/{entry_id}", h.server.base_url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let workload = result.workload_id.clone();
    let r = c
        .post(format!("{}/v1/revocations", h.server.base_url))
        .bearer_auth(admin)
        .json(&serde_json::json!({
            "kind": "workload", "target": workload, "reason": "audit test", "by": "alice",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());

    // The whole log, checked offline against the signed head.
    let (_, now_head) = get(&h, "/v1/audit/head", Some(&read)).await;
    let head = verify_audit_head(now_head["head"].as_str().unwrap(), &bundle, unix_now()).unwrap();
    let (status, page) = get(&h, "/v1/audit/entries?start=0", Some(&read)).await;
    assert_eq!(status, 200);
    let entries: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(entries.len() as u64, head.size);
    let leaves = check_entries(entries.iter().map(|e| e.as_bytes()), |_| {}).unwrap();
    check_against_head(&leaves, &head).unwrap();
    let parsed: Vec<AuditEntry> = entries
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let kinds: Vec<&str> = parsed.iter().map(|e| e.kind.as_str()).collect();
    // The default policy, installed at first start.
    assert_eq!(
        (
            parsed[0].kind.as_str(),
            parsed[0].actor.as_str(),
            parsed[0].subject.as_str()
        ),
        ("policy.add", "verifier", "default")
    );
    for k in [
        "enroll.join-token",
        "attestation",
        "entry.add",
        "entry.delete",
        "revoke",
        "svid.issue",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let att = parsed.iter().find(|e| e.kind == "attestation").unwrap();
    assert_eq!(att.subject, workload);
    assert_eq!(att.body["status"], "affirming");
    let rev = parsed.iter().find(|e| e.kind == "revoke").unwrap();
    assert_eq!(
        (rev.actor.as_str(), rev.body["reason"].as_str()),
        ("alice", Some("audit test"))
    );
    assert!(
        parsed
            .iter()
            .any(|e| e.kind == "entry.delete" && e.subject == entry_id)
    );
    let svid = parsed.iter().find(|e| e.kind == "svid.issue").unwrap();
    assert_eq!(svid.subject, "billing");
    assert_eq!(svid.body["svids"][0]["sha256"], svid_sha256.as_str());
    let jwt = parsed.iter().find(|e| e.kind == "jwt-svid.issue").unwrap();
    assert_eq!(jwt.body["svids"][0]["sha256"], jwt_sha256.as_str());
    assert_eq!(jwt.body["audience"][0], "database");

    // A page is bounded and starts where asked.
    let (_, p) = get(&h, "/v1/audit/entries?start=1&end=3", Some(&read)).await;
    assert_eq!(p["entries"].as_array().unwrap().len(), 2);
    assert_eq!(p["entries"][0].as_str().unwrap(), entries[1]);
    let (status, _) = get(&h, "/v1/audit/entries?start=3&end=1", Some(&read)).await;
    assert_eq!(status, 400);

    // Every entry's inclusion proof, against the head's root.
    let root = head.root_hash().unwrap();
    for seq in 0..head.size {
        let (status, p) = get(
            &h,
            &format!("/v1/audit/proof/inclusion?seq={seq}&size={}", head.size),
            Some(&read),
        )
        .await;
        assert_eq!(status, 200, "{p}");
        let entry = p["entry"].as_str().unwrap();
        assert_eq!(entry, entries[seq as usize]);
        let proof = hashes(&p["proof"]);
        verify_inclusion(seq, head.size, &leaf_hash(entry.as_bytes()), &proof, &root).unwrap();
        // The entry with one byte changed is not in the tree.
        let mut bad = entry.as_bytes().to_vec();
        let at = bad.len() / 2;
        bad[at] ^= 0x01;
        assert!(verify_inclusion(seq, head.size, &leaf_hash(&bad), &proof, &root).is_err());
    }
    let (status, _) = get(
        &h,
        &format!("/v1/audit/proof/inclusion?seq={}", head.size + 5),
        Some(&read),
    )
    .await;
    assert_eq!(status, 404);

    // The later head extends the first one.
    let (status, p) = get(
        &h,
        &format!(
            "/v1/audit/proof/consistency?first={first_size}&second={}",
            head.size
        ),
        Some(&read),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let proof = hashes(&p["proof"]);
    let r1 = first_head.root_hash().unwrap();
    verify_consistency(first_size, head.size, &r1, &root, &proof).unwrap();
    let mut bad = proof.clone();
    bad[0][3] ^= 0x10;
    assert!(verify_consistency(first_size, head.size, &r1, &root, &bad).is_err());
    let (status, _) = get(&h, "/v1/audit/proof/consistency?first=0", Some(&read)).await;
    assert_eq!(status, 400);

    // A head with one byte of its claims or signature changed is refused.
    let jws = now_head["head"].as_str().unwrap();
    for part in [1, 2] {
        let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
        let mut bytes = B64.decode(&parts[part]).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        parts[part] = B64.encode(bytes);
        assert!(verify_audit_head(&parts.join("."), &bundle, unix_now()).is_err());
    }
    // And another trust domain's bundle does not accept it.
    let td = vouch_identity::TrustDomain::parse("other.example").unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other =
        vouch_identity::CaSet::load_or_create(other_dir.path(), &td, 3600, unix_now()).unwrap();
    let auth: Vec<Vec<u8>> = other
        .authorities(unix_now())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let other =
        vouch_rp::SpiffeVerifier::new(&td, &auth, vouch_rp::AllowedIds::AnyInTrustDomain).unwrap();
    assert!(verify_audit_head(jws, &other, unix_now()).is_err());
}

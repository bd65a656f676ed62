//! The SPIFFE Workload API served by the agent on a Unix socket, with a real verifier behind
//! it: callers identified by SO_PEERCRED (this test process is the caller), SVIDs only for
//! matching entries on an affirming node, streams that end when the node stops attesting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt as _;
use tokio_stream::StreamExt as _;
use tonic::Code;

use vouch_agent::{proto, request};
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_server::unix_now;

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn my_exe_sha256() -> String {
    vouch_evidence::sha256_file(std::path::Path::new("/proc/self/exe")).unwrap()
}

async fn add_entry(h: &common::Harness, id: &str, selectors: &[String]) -> String {
    let e = Entry::new(
        uuid(),
        &SpiffeId::parse(id).unwrap(),
        selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&e).await.unwrap();
    e.id
}

fn uuid() -> String {
    format!("e-{}", rand_suffix())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Err(s) => s.code(),
        Ok(v) => panic!("answered: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_api_serves_svids_by_peer_credentials_and_withdraws_them() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mut c = vouch_agent::connect(&sock).await.unwrap();

    // Entries: one for this test binary's digest and uid; one for a binary that is not us.
    let uid = format!("unix:uid:{}", my_uid());
    add_entry(
        &h,
        "spiffe://vouch.local/other",
        &[
            "vouch:workload:svc".into(),
            format!("unix:sha256:{}", "00".repeat(32)),
        ],
    )
    .await;

    // Not attested yet: Unavailable.
    assert_eq!(
        code(c.fetch_x509svid(request(proto::X509svidRequest {})).await),
        Code::Unavailable
    );
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );

    // Without the security header: InvalidArgument, on every method.
    assert_eq!(
        code(
            c.fetch_x509svid(tonic::Request::new(proto::X509svidRequest {}))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.fetch_jwtsvid(tonic::Request::new(proto::JwtsvidRequest {
                audience: vec!["db".into()],
                spiffe_id: String::new(),
            }))
            .await
        ),
        Code::InvalidArgument
    );

    // Our executable's hash matches no entry yet: PermissionDenied.
    assert_eq!(
        code(c.fetch_x509svid(request(proto::X509svidRequest {})).await),
        Code::PermissionDenied
    );
    let id = "spiffe://vouch.local/svc/tests";
    add_entry(
        &h,
        id,
        &[
            "vouch:workload:svc".into(),
            uid.clone(),
            format!("unix:sha256:{}", my_exe_sha256()),
        ],
    )
    .await;

    // Now an X.509-SVID for exactly that ID, leaf first, PKCS#8 key for the leaf, the CA bundle.
    let mut stream = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), 1);
    let svid = &first.svids[0];
    assert_eq!(svid.spiffe_id, id);
    let (rest, leaf) = x509_parser::parse_x509_certificate(&svid.x509_svid).unwrap();
    assert!(rest.is_empty());
    assert_eq!(
        vouch_rp::svid_spiffe_id(&svid.x509_svid)
            .unwrap()
            .to_string(),
        id
    );
    let key = rcgen::KeyPair::try_from(svid.x509_svid_key.as_slice()).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&key),
        leaf.tbs_certificate.subject_pki.raw
    );
    let (_, ca) = x509_parser::parse_x509_certificate(&svid.bundle).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();

    // JWT-SVID for an audience; validated by the agent; no audience is InvalidArgument.
    let jwt = c
        .fetch_jwtsvid(request(proto::JwtsvidRequest {
            audience: vec!["db".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwt.svids.len(), 1);
    assert_eq!(jwt.svids[0].spiffe_id, id);
    let v = c
        .validate_jwtsvid(request(proto::ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: jwt.svids[0].svid.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, id);
    assert!(v.claims.unwrap().fields.contains_key("exp"));
    assert_eq!(
        code(
            c.validate_jwtsvid(request(proto::ValidateJwtsvidRequest {
                audience: "other".into(),
                svid: jwt.svids[0].svid.clone(),
            }))
            .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.fetch_jwtsvid(request(proto::JwtsvidRequest {
                audience: vec![],
                spiffe_id: String::new(),
            }))
            .await
        ),
        Code::InvalidArgument
    );

    // Bundles, as streams whose first message comes at once.
    let b = c
        .fetch_x509_bundles(request(proto::X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.bundles["spiffe://vouch.local"], svid.bundle);
    let jb = c
        .fetch_jwt_bundles(request(proto::JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let jwks: serde_json::Value =
        serde_json::from_slice(&jb.bundles["spiffe://vouch.local"]).unwrap();
    assert_eq!(jwks["keys"][0]["use"], "jwt-svid");

    // A method this agent does not implement (the optional WIT profile): Unimplemented.
    let mut raw = tonic::client::Grpc::new(vouch_agent::channel(&sock).await.unwrap());
    raw.ready().await.unwrap();
    let r: Result<tonic::Response<()>, _> = raw
        .unary(
            request(()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchWITSVID"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(code(r), Code::Unimplemented);

    // The node fails attestation (its workload's executable changes): the open stream ends
    // with PermissionDenied, and new calls are refused.
    std::fs::write(h.path("svc.bin"), "a different binary").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Contraindicated
    );
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the stream reacts to the node's status at once");
    assert_eq!(end.unwrap().unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        code(c.fetch_x509svid(request(proto::X509svidRequest {})).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            c.fetch_jwtsvid(request(proto::JwtsvidRequest {
                audience: vec!["db".into()],
                spiffe_id: String::new(),
            }))
            .await
        ),
        Code::PermissionDenied
    );

    api.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_loses_its_workloads_identities() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    add_entry(
        &h,
        "spiffe://vouch.local/svc",
        &["vouch:workload:svc".into()],
    )
    .await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let mut stream = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().svids.len(), 1);

    // `vouch revoke node`: the next attestation is refused (the key is revoked), the agent's
    // open stream ends with PermissionDenied, and the verifier issues nothing more.
    let node = agent.enrollment().node_id.clone();
    let rec = vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        vouch_core::revocation::RevocationKind::Node,
        &node,
        "decommissioned",
        "test",
    )
    .await
    .unwrap();
    assert_eq!(rec.epoch, 1);
    let e = agent.attest_once().await.unwrap_err();
    assert_eq!(e.kind(), Some(vouch_core::ErrorKind::UnknownKey), "{e}");
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends at once");
    assert_eq!(end.unwrap().unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        code(c.fetch_x509svid(request(proto::X509svidRequest {})).await),
        Code::PermissionDenied
    );
    let w = h.store.workloads().await.unwrap();
    assert!(
        w.iter()
            .all(|w| w.status == "contraindicated" && w.reason.contains("revoked"))
    );
    api.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_entry_reaches_an_open_stream_at_the_next_attestation() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    let _api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mine = [
        "vouch:workload:svc".to_string(),
        format!("unix:uid:{}", my_uid()),
    ];
    add_entry(&h, "spiffe://vouch.local/svc/a", &mine).await;
    let first = agent.attest_once().await.unwrap();
    assert!(first.entries_revision.is_some());
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let mut stream = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().svids.len(), 1);

    // A second entry for the same caller. The SVIDs live 600 s, so without the revision the
    // stream would not refresh for 300 s; the next attestation carries the new revision.
    add_entry(&h, "spiffe://vouch.local/svc/b", &mine).await;
    let second = agent.attest_once().await.unwrap();
    assert!(second.entries_revision > first.entries_revision);
    let update = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the open stream was updated")
        .unwrap()
        .unwrap();
    let mut ids: Vec<String> = update.svids.iter().map(|s| s.spiffe_id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["spiffe://vouch.local/svc/a", "spiffe://vouch.local/svc/b"]
    );
}

//! The SPIFFE Workload API served by the agent on a Unix socket, with a real verifier behind
//! it: callers identified by SO_PEERCRED (this test process is the caller), SVIDs only for
//! matching entries on an affirming node, streams that end when the node stops attesting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::MetadataExt as _;
use tokio_stream::StreamExt as _;
use tonic::Code;

use vouch_agent::{proto, request};

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn my_exe_sha256() -> String {
    vouch_evidence::sha256_file(std::path::Path::new("/proc/self/exe")).unwrap()
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
    h.add_entry(
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
    h.add_entry(
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
    h.add_entry("spiffe://vouch.local/svc", &["vouch:workload:svc"])
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
    h.add_entry("spiffe://vouch.local/svc/a", &mine).await;
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
    h.add_entry("spiffe://vouch.local/svc/b", &mine).await;
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

/// The two other processes of the exec race, run from this test binary: `connector` connects
/// to the Workload API, hands the connection to a child (`user`), then execs the target
/// binary; `user` waits until its parent runs the target, then asks for SVIDs on the inherited
/// connection and prints what it got. Without `VOUCH_RACE_ROLE` this does nothing.
#[test]
fn exec_race_role() {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _};
    use std::os::unix::process::CommandExt as _;
    let Ok(role) = std::env::var("VOUCH_RACE_ROLE") else {
        return;
    };
    let sock = std::env::var("VOUCH_RACE_SOCK").unwrap();
    let target = std::env::var("VOUCH_RACE_TARGET").unwrap();
    match role.as_str() {
        "connector" => {
            let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            let fd = s.into_raw_fd();
            // SAFETY: clearing FD_CLOEXEC on a descriptor this process owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "exec_race_role",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("VOUCH_RACE_ROLE", "user")
                .env("VOUCH_RACE_FD", fd.to_string())
                .spawn()
                .unwrap();
            if std::env::var("VOUCH_RACE_EXEC").as_deref() == Ok("1") {
                let e = std::process::Command::new(&target).arg("20").exec();
                panic!("exec {target}: {e}");
            }
            std::thread::sleep(std::time::Duration::from_secs(20));
            std::process::exit(0);
        }
        "user" => {
            let fd: i32 = std::env::var("VOUCH_RACE_FD").unwrap().parse().unwrap();
            let parent = std::os::unix::process::parent_id();
            if std::env::var("VOUCH_RACE_EXEC").as_deref() == Ok("1") {
                let t = std::time::Instant::now();
                while std::fs::read_link(format!("/proc/{parent}/exe")).ok()
                    != Some(std::path::PathBuf::from(&target))
                {
                    assert!(t.elapsed().as_secs() < 10, "the parent never exec'd");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            // SAFETY: the descriptor was inherited from the parent and is used only here.
            let s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
            s.set_nonblocking(true).unwrap();
            let _ = s.as_raw_fd();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(
                    tokio::net::UnixStream::from_std(s).unwrap(),
                )));
                let channel = tonic::transport::Endpoint::from_static("http://localhost")
                    .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                        let s = slot.lock().unwrap().take();
                        async move {
                            s.map(hyper_util::rt::TokioIo::new)
                                .ok_or_else(|| std::io::Error::other("connection used"))
                        }
                    }))
                    .await
                    .unwrap();
                let mut c =
                    proto::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel);
                match c.fetch_x509svid(request(proto::X509svidRequest {})).await {
                    Ok(r) => {
                        let first = r.into_inner().next().await;
                        match first {
                            Some(Ok(m)) => {
                                println!("RACE X509 count {}", m.svids.len());
                                for s in m.svids {
                                    println!("RACE X509 {}", s.spiffe_id);
                                }
                            }
                            Some(Err(s)) => println!("RACE X509 {:?} {}", s.code(), s.message()),
                            None => println!("RACE X509 none"),
                        }
                    }
                    Err(s) => println!("RACE X509 {:?} {}", s.code(), s.message()),
                }
                match c
                    .fetch_jwtsvid(request(proto::JwtsvidRequest {
                        audience: vec!["db".into()],
                        spiffe_id: String::new(),
                    }))
                    .await
                {
                    Ok(r) => {
                        for s in r.into_inner().svids {
                            println!("RACE JWT {}", s.spiffe_id);
                        }
                    }
                    Err(s) => println!("RACE JWT {:?} {}", s.code(), s.message()),
                }
            });
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Run the race: a connector process that (with `exec`) becomes `target` after handing its
/// connection to a child; what the child printed.
fn run_race(sock: &std::path::Path, target: &std::path::Path, exec: bool) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "exec_race_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VOUCH_RACE_ROLE", "connector")
        .env("VOUCH_RACE_SOCK", sock)
        .env("VOUCH_RACE_TARGET", target)
        .env("VOUCH_RACE_EXEC", if exec { "1" } else { "0" })
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child keeps our pipe open until it has printed; the connector sleeps 20 s, so read
    // lines until the child has printed both answers.
    use std::io::BufRead as _;
    let mut lines = Vec::new();
    let mut child = out;
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        // libtest may print "test exec_race_role ... " before the child's first line.
        if let Some(i) = line.find("RACE ") {
            let line = line[i..].to_string();
            let done = line.starts_with("RACE JWT");
            lines.push(line);
            if done {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines.join("\n")
}

/// Issue 12: a caller that connects, hands the connection to a child and execs another binary
/// gets nothing for that binary — the connection was pinned to the process as it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_caller_that_execs_after_connecting_gets_no_svid_for_the_new_binary() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| c.workload_api_socket = Some(sock.clone()))
        .await;
    h.trust(&mut agent).await;
    let _api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    // The target: a binary of its own path that an entry grants an identity to.
    let target = h.path("target-sleep");
    std::fs::copy("/bin/sleep", &target).unwrap();
    let sha = vouch_evidence::sha256_file(&target).unwrap();
    h.add_entry(
        "spiffe://vouch.local/target",
        &[
            "vouch:workload:svc".into(),
            format!("unix:path:{}", target.display()),
            format!("unix:sha256:{sha}"),
        ],
    )
    .await;
    // And this test binary (the connector before its exec) its own identity.
    h.add_entry(
        "spiffe://vouch.local/tests",
        &[
            "vouch:workload:svc".into(),
            format!("unix:sha256:{}", my_exe_sha256()),
        ],
    )
    .await;
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );

    // Without the exec, the child on the inherited connection gets the connector's identity:
    // the set-up works.
    let sock2 = sock.clone();
    let target2 = target.clone();
    let control = tokio::task::spawn_blocking(move || run_race(&sock2, &target2, false))
        .await
        .unwrap();
    assert!(
        control.contains("RACE X509 spiffe://vouch.local/tests")
            && control.contains("RACE JWT spiffe://vouch.local/tests"),
        "{control}"
    );
    // With the exec: nothing, and never the target's identity.
    let raced = tokio::task::spawn_blocking(move || run_race(&sock, &target, true))
        .await
        .unwrap();
    assert!(!raced.contains("vouch.local/target"), "{raced}");
    assert!(
        raced.contains("RACE X509 PermissionDenied") && raced.contains("RACE JWT PermissionDenied"),
        "{raced}"
    );
    assert!(raced.contains("now runs"), "{raced}");
}

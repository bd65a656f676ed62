//! One node agent, many workloads (issue 14 item 1): workloads declared in the agent's
//! configuration are measured and attested each on its own — each its own result naming it,
//! its own status at the verifier — and a Workload API caller carrying a declared workload's
//! selectors gets SVIDs as that workload, so they depend on that workload's attestation as
//! well as the node's. Real verifier over HTTPS, real Workload API socket (this test process
//! is the caller).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::os::unix::fs::MetadataExt as _;

use vouch_agent::{NodeStatus, WorkloadConfig, proto, request};
use vouch_core::ArStatus;

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// The claims of a result JWT.
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_workloads_are_attested_each_on_its_own_and_callers_get_their_identities() {
    let h = common::Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let web_exe = h.path("web.bin");
    std::fs::write(&web_exe, "the web server").unwrap();
    let web_conf = h.path("web.conf");
    std::fs::write(&web_conf, "listen = 443\n").unwrap();
    let db_exe = h.path("db.bin");
    std::fs::write(&db_exe, "the database").unwrap();
    let uid = format!("unix:uid:{}", my_uid());
    let mut agent = h
        .agent_with("host", |c| {
            c.workload_api_socket = Some(sock.clone());
            c.workloads = vec![
                WorkloadConfig {
                    name: "web".into(),
                    exe: web_exe.clone(),
                    files: vec![web_conf.clone()],
                    image_digest: None,
                    // This test process is the web workload's caller.
                    selectors: vec![uid.clone()],
                },
                WorkloadConfig {
                    name: "db".into(),
                    exe: db_exe.clone(),
                    files: vec![],
                    image_digest: None,
                    selectors: vec![],
                },
            ];
        })
        .await;
    h.trust(&mut agent).await;
    h.refvalue(
        "executable",
        "web",
        &vouch_evidence::sha256_file(&web_exe).unwrap(),
    )
    .await;
    h.refvalue(
        "file",
        web_conf.to_str().unwrap(),
        &vouch_evidence::sha256_file(&web_conf).unwrap(),
    )
    .await;
    // db's executable has no reference value: it is not affirming, on its own.

    let node = agent.attest_once().await.unwrap();
    assert_eq!(node.status, ArStatus::Affirming);
    let node_id = agent.enrollment().node_id.clone();
    let status = agent.workload_status().borrow().clone();
    assert_eq!(status.get("web"), Some(&NodeStatus::Affirming));
    assert!(
        matches!(status.get("db"), Some(NodeStatus::Refused(_))),
        "{status:?}"
    );
    // Each has its own record at the verifier and its own result, naming it.
    for (name, want) in [
        ("host", "affirming"),
        ("web", "affirming"),
        ("db", "warning"),
    ] {
        let w = h
            .store
            .workload(&format!("{node_id}/{name}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no record of {name}"));
        assert_eq!(w.status, want, "{name}");
    }
    let web = std::fs::read_to_string(h.path("agent-host/results/web.jwt")).unwrap();
    let c = claims(&web);
    assert!(
        c.to_string().contains(&format!("{node_id}/web")),
        "the web result names its workload: {c}"
    );
    let host = std::fs::read_to_string(h.path("agent-host/result.jwt")).unwrap();
    assert!(
        claims(&host)
            .to_string()
            .contains(&format!("{node_id}/host"))
    );
    assert!(
        !claims(&host)
            .to_string()
            .contains(&format!("{node_id}/web"))
    );

    // The caller (uid matches web's selectors) is the web workload: an entry for web's
    // workload grants it; one for the node's workload does not.
    h.add_entry("spiffe://vouch.local/web", &["vouch:workload:web", &uid])
        .await;
    h.add_entry(
        "spiffe://vouch.local/host-only",
        &["vouch:workload:host", &uid],
    )
    .await;
    agent.attest_once().await.unwrap();
    let api = vouch_agent::spawn_workload_api(agent.identity_source().unwrap(), &sock).unwrap();
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let got = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = tokio_stream::StreamExt::next(&mut Box::pin(got))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = first.svids.iter().map(|s| s.spiffe_id.clone()).collect();
    assert_eq!(ids, vec!["spiffe://vouch.local/web".to_string()]);

    // web's configuration changes: web turns contraindicated at its next attestation and its
    // callers get nothing more, while the node stays affirming.
    std::fs::write(&web_conf, "listen = 80\n").unwrap();
    assert_eq!(
        agent.attest_once().await.unwrap().status,
        ArStatus::Affirming
    );
    assert!(matches!(
        agent.workload_status().borrow().get("web"),
        Some(NodeStatus::Refused(_))
    ));
    let mut c = vouch_agent::connect(&sock).await.unwrap();
    let r = c.fetch_x509svid(request(proto::X509svidRequest {})).await;
    let refused = match r {
        Err(s) => s.code(),
        Ok(resp) => {
            let mut s = Box::pin(resp.into_inner());
            match tokio_stream::StreamExt::next(&mut s).await {
                Some(Err(st)) => st.code(),
                other => panic!("still issued to web: {other:?}"),
            }
        }
    };
    assert_eq!(refused, tonic::Code::PermissionDenied);
    api.stop().await.unwrap();
}

#[tokio::test]
async fn declared_workloads_must_have_unique_names_and_well_formed_selectors() {
    let h = common::Harness::new(|_| {}).await;
    let exe = h.path("x.bin");
    std::fs::write(&exe, "x").unwrap();
    let w = |name: &str, sel: &str| WorkloadConfig {
        name: name.into(),
        exe: exe.clone(),
        files: vec![],
        image_digest: None,
        selectors: vec![sel.into()],
    };
    for (ws, want) in [
        (
            vec![w("a", "unix:uid:1"), w("a", "unix:uid:2")],
            "declared twice",
        ),
        (vec![w("host", "unix:uid:1")], "declared twice"),
        (vec![w("a", "nocolon")], "not type:value"),
    ] {
        let cfg = vouch_agent::AgentConfig {
            servers: vec![h.server.base_url.clone()],
            ca_cert: h.server.ca_cert.clone(),
            data_dir: h.path("agent-bad"),
            join_token: Some(
                vouch_server::create_join_token(h.store.as_ref(), 600, None)
                    .await
                    .unwrap(),
            ),
            workload_name: "host".into(),
            exe: Some(exe.clone()),
            workloads: ws,
            ..vouch_agent::AgentConfig::default()
        };
        let e = vouch_agent::Agent::new(cfg).await.unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        let _ = std::fs::remove_dir_all(h.path("agent-bad"));
    }
}

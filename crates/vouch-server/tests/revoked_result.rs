//! Issue 12 item 11: a revoked result stops SVID issuance for its workload until the workload
//! attests again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Harness;
use vouch_agent::{Agent, AgentError};
use vouch_core::ErrorKind;
use vouch_core::revocation::RevocationKind;
use vouch_core::wire::{SvidRequest, svid_signing_input};
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_server::unix_now;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_revoked_result_stops_svids_until_the_workload_attests_again() {
    use rcgen::PublicKeyData as _;
    let h = Harness::new(|_| {}).await;
    let mut agent = h.agent("db").await;
    h.trust(&mut agent).await;
    let id = SpiffeId::parse("spiffe://vouch.local/db").unwrap();
    let entry = Entry::new(
        "e-db".into(),
        &id,
        vec![
            Selector::parse("vouch:workload:db").unwrap(),
            Selector::parse("unix:uid:1000").unwrap(),
        ],
        600,
        unix_now(),
    )
    .unwrap();
    h.store.add_entry(&entry).await.unwrap();
    let leaf = rcgen::KeyPair::generate().unwrap();
    let pk = B64.encode(leaf.subject_public_key_info());
    let ask = |agent: &Agent| {
        let selectors = vec!["unix:uid:1000".to_string()];
        let key_id = agent.enrollment().key_id.clone();
        SvidRequest {
            signature: agent
                .key()
                .sign_b64(&svid_signing_input(&key_id, "db", &pk, &selectors)),
            key_id,
            workload: "db".into(),
            public_key: pk.clone(),
            selectors,
        }
    };
    let c = h.client();
    let first = agent.attest_once().await.unwrap();
    assert_eq!(c.svid(&ask(&agent)).await.unwrap().svids.len(), 1);

    // The result is revoked: no SVID while it is the workload's latest.
    vouch_server::revoke_offline(
        &h.cfg,
        h.store.as_ref(),
        RevocationKind::Result,
        &first.attestation_id,
        "leaked",
        "test",
    )
    .await
    .unwrap();
    let refused = |r: Result<vouch_core::wire::SvidResponse, AgentError>| match r {
        Err(e) => e.kind().unwrap(),
        Ok(v) => panic!("issued: {v:?}"),
    };
    assert_eq!(refused(c.svid(&ask(&agent)).await), ErrorKind::NotAttested);

    // A new attestation decides afresh.
    agent.attest_once().await.unwrap();
    assert_eq!(c.svid(&ask(&agent)).await.unwrap().svids.len(), 1);
    h.server.shutdown().await;
}

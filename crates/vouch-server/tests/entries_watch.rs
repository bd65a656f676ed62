//! Issue 13 item 5: registration-entry changes pushed to agents (`POST /v1/entries/watch`, a
//! bounded long poll) and synced incrementally (`POST /v1/entries/sync`), on real SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Harness;
use vouch_agent::{AgentError, EntryMirror, signed_entries_request};
use vouch_core::ErrorKind;
use vouch_identity::{Entry, Selector, SpiffeId};
use vouch_server::unix_now;

fn entry(id: &str, sels: &[&str]) -> Entry {
    Entry::new(
        id.into(),
        &SpiffeId::parse(&format!("spiffe://vouch.local/{id}")).unwrap(),
        sels.iter().map(|s| Selector::parse(s).unwrap()).collect(),
        600,
        unix_now(),
    )
    .unwrap()
}

fn kind<T: std::fmt::Debug>(r: Result<T, AgentError>) -> ErrorKind {
    match r {
        Err(e) => e.kind().unwrap_or_else(|| panic!("no kind: {e}")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

#[tokio::test]
async fn issue_13_an_entry_change_wakes_a_waiting_watch_and_sync_sends_only_the_change() {
    let h = Harness::new(|_| {}).await;
    let agent = h.agent("w").await;
    let (key, key_id) = (agent.key(), agent.enrollment().key_id.clone());
    let node = key_id_node(&h, &key_id).await;
    h.store
        .add_entries(&[
            entry("a", &["unix:uid:1"]),
            entry("mine", &["unix:uid:2", &format!("vouch:node:{node}")]),
            entry("theirs", &["unix:uid:3", "vouch:node:other"]),
        ])
        .await
        .unwrap();
    let c = h.client();
    let mut mirror = EntryMirror::default();
    let first = mirror.sync(&c, key, &key_id).await.unwrap();
    assert!(first.full, "nothing held: everything");
    assert_eq!(mirror.len(), 2, "entries of another node are not sent");
    assert!(mirror.get("theirs").is_none());
    let at = mirror.revision();

    // A watch at the current revision waits; a change made through the store (as another
    // replica would) wakes it within the poll interval.
    let watch = {
        let (c, req) = (c.clone(), signed_entries_request(key, "watch", &key_id, at));
        tokio::spawn(async move { c.entries_watch(&req, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watch.is_finished(), "no change yet: the watch waits");
    let t = std::time::Instant::now();
    h.store
        .add_entry(&entry("b", &["unix:uid:4"]))
        .await
        .unwrap();
    assert!(h.store.delete_entry("a").await.unwrap());
    let w = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch answers within the test's timeout")
        .unwrap()
        .unwrap();
    assert!(w.changed && w.revision > at, "{w:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Only the changes: the new entry and the tombstone.
    let r = c
        .entries_sync(&signed_entries_request(key, "sync", &key_id, at))
        .await
        .unwrap();
    assert!(!r.full);
    assert_eq!(
        r.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(r.deleted, ["a"]);
    mirror.sync(&c, key, &key_id).await.unwrap();
    assert_eq!(mirror.len(), 2);
    assert!(mirror.get("a").is_none() && mirror.get("b").is_some());

    // A watch behind the revision answers at once.
    let w = c
        .entries_watch(
            &signed_entries_request(key, "watch", &key_id, at),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(w.changed);

    // A revision ahead of the store's (restored from a backup): answered at once, and the
    // sync gives everything.
    let ahead = c
        .entries_watch(
            &signed_entries_request(key, "watch", &key_id, 1_000_000),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(ahead.changed && ahead.revision < 1_000_000, "{ahead:?}");
    let r = c
        .entries_sync(&signed_entries_request(key, "sync", &key_id, 1_000_000))
        .await
        .unwrap();
    assert!(r.full && r.entries.len() == 2);

    // A revision the log no longer reaches: everything again.
    let now = h
        .store
        .revision(vouch_store::ENTRIES_REVISION)
        .await
        .unwrap();
    h.store.prune_entries_log(now).await.unwrap();
    let r = c
        .entries_sync(&signed_entries_request(key, "sync", &key_id, at))
        .await
        .unwrap();
    assert!(r.full && r.deleted.is_empty());
    assert_eq!(r.entries.len(), 2);
}

/// The node of an enrolled key.
async fn key_id_node(h: &Harness, key_id: &str) -> String {
    h.store.agent_key(key_id).await.unwrap().unwrap().node_id
}

#[tokio::test]
async fn issue_13_watch_refuses_unauthenticated_stale_and_oversized_requests_and_holds_its_limits()
{
    let h = Harness::new(|c| {
        c.max_entry_watchers = 2;
        c.max_entry_watchers_per_key = 1;
        c.entries_watch_timeout = 2;
    })
    .await;
    let a = h.agent("a").await;
    let b = h.agent("b").await;
    let c_agent = h.agent("c").await;
    let c = h.client();
    let (ka, ida) = (a.key(), a.enrollment().key_id.clone());

    // Signed by another key, for another operation, unknown, stale: refused.
    let mut forged = signed_entries_request(b.key(), "watch", &ida, 0);
    forged.key_id = ida.clone();
    assert_eq!(
        kind(c.entries_watch(&forged, Duration::from_secs(5)).await),
        ErrorKind::EvidenceSignature
    );
    let as_sync = signed_entries_request(ka, "sync", &ida, 0);
    assert_eq!(
        kind(c.entries_watch(&as_sync, Duration::from_secs(5)).await),
        ErrorKind::EvidenceSignature
    );
    let unknown = signed_entries_request(ka, "watch", "ak-nobody", 0);
    assert_eq!(
        kind(c.entries_watch(&unknown, Duration::from_secs(5)).await),
        ErrorKind::UnknownKey
    );
    let mut stale = signed_entries_request(ka, "watch", &ida, 0);
    stale.iat -= 3600;
    assert_eq!(kind(c.entries_sync(&stale).await), ErrorKind::NonceExpired);
    // Oversized: refused before any work.
    let mut big = signed_entries_request(ka, "watch", &ida, 0);
    big.key_id = "k".repeat(8192);
    assert_eq!(
        kind(c.entries_watch(&big, Duration::from_secs(5)).await),
        ErrorKind::BodyTooLarge
    );
    let mut long = signed_entries_request(ka, "sync", &ida, 0);
    long.key_id = "k".repeat(200);
    assert_eq!(
        kind(c.entries_sync(&long).await),
        ErrorKind::MalformedRequest
    );

    // Limits: one watch per key, two on the verifier; a timed-out watch says so and frees
    // its place.
    let rev = h
        .store
        .revision(vouch_store::ENTRIES_REVISION)
        .await
        .unwrap();
    let hold = |agent: &vouch_agent::Agent| {
        let req = signed_entries_request(agent.key(), "watch", &agent.enrollment().key_id, rev);
        let c = c.clone();
        tokio::spawn(async move { c.entries_watch(&req, Duration::from_secs(10)).await })
    };
    let wa = hold(&a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        kind(
            c.entries_watch(
                &signed_entries_request(ka, "watch", &ida, rev),
                Duration::from_secs(5)
            )
            .await
        ),
        ErrorKind::Overloaded,
        "a second watch by the same key"
    );
    let wb = hold(&b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cid = c_agent.enrollment().key_id.clone();
    assert_eq!(
        kind(
            c.entries_watch(
                &signed_entries_request(c_agent.key(), "watch", &cid, rev),
                Duration::from_secs(5)
            )
            .await
        ),
        ErrorKind::Overloaded,
        "past the verifier's maximum"
    );
    let (ra, rb) = (wa.await.unwrap().unwrap(), wb.await.unwrap().unwrap());
    assert!(!ra.changed && !rb.changed, "timed out without a change");
    let again = c
        .entries_watch(
            &signed_entries_request(c_agent.key(), "watch", &cid, rev),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(!again.changed, "the places were given back");
}

/// The push path end to end: a running agent (attesting once an hour) holds the entry watch;
/// an entry added through the store (as another replica would) reaches its Workload API's open
/// X.509 stream within seconds, with no attestation in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_new_entry_reaches_an_open_stream_without_waiting_for_an_attestation() {
    use std::os::unix::fs::MetadataExt as _;
    use tokio_stream::StreamExt as _;
    use vouch_agent::{proto, request};
    let h = Harness::new(|_| {}).await;
    let sock = h.path("agent/api.sock");
    let mut agent = h
        .agent_with("svc", |c| {
            c.workload_api_socket = Some(sock.clone());
            c.interval = 3600;
        })
        .await;
    h.trust(&mut agent).await;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let mine = |id: &str| entry(id, &["vouch:workload:svc", &format!("unix:uid:{uid}")]);
    h.store.add_entry(&mine("svc-a")).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (results, mut first) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn(agent.run(
        async {
            let _ = stopped.await;
        },
        move |r| {
            let _ = results.send(r.as_ref().map(|r| r.status).map_err(|e| e.to_string()));
        },
    ));
    assert_eq!(
        first.recv().await.unwrap().unwrap(),
        vouch_core::ArStatus::Affirming
    );
    let mut c = {
        let mut tries = 0;
        loop {
            match vouch_agent::connect(&sock).await {
                Ok(c) => break c,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut stream = c
        .fetch_x509svid(request(proto::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().svids.len(), 1);

    h.store.add_entry(&mine("svc-b")).await.unwrap();
    let update = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the open stream was updated by the watch")
        .unwrap()
        .unwrap();
    assert_eq!(update.svids.len(), 2);
    assert!(
        first.try_recv().is_err(),
        "no attestation happened meanwhile"
    );
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

//! The PostgreSQL store on a primary with a synchronous streaming standby (real servers from
//! vouch-testkit): under concurrent writes the primary is killed with SIGKILL and the standby
//! promoted; the store finds the new primary by itself, writes go on, and every write it
//! acknowledged is on the new primary. A standby alone is refused, and so is the old primary
//! when it comes back on its old timeline (split brain).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vouch_store::{AttestationRecord, PgStore, Store};

fn record(id: &str, node: &str, at: u64) -> AttestationRecord {
    AttestationRecord {
        id: id.into(),
        workload_id: format!("{node}/app"),
        node_id: node.into(),
        key_id: "ak".into(),
        evidence_kind: "software".into(),
        evidence_sha256: "00".into(),
        claims: json!({"a": 1}),
        status: "affirming".into(),
        trust_vector: json!({"executables": 2}),
        reasons: vec![],
        policy_id: "default".into(),
        policy_version: 1,
        result: "jwt".into(),
        created_at: at,
        expires_at: at + 60,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_over_to_the_promoted_standby_and_loses_nothing_acknowledged() {
    let t0 = Instant::now();
    let rp = tokio::task::spawn_blocking(vouch_testkit::ReplicatedPostgres::start)
        .await
        .unwrap();
    eprintln!("primary and standby up in {:?}", t0.elapsed());
    let db = rp.fresh_database();

    // A standby alone is never written to: refused at once, saying why.
    let e = PgStore::connect(&rp.url_on(rp.standby_port, &db))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("standby"), "{e}");
    eprintln!("standby refused at {:?}", t0.elapsed());

    // Listed after the primary, the standby is skipped while the primary answers.
    let store = PgStore::connect(&rp.url(&db)).await.unwrap();
    store
        .create_join_token("t", None, 0, u64::MAX)
        .await
        .unwrap();
    let node = store.enroll("t", &[1; 32], "h", 1).await.unwrap().node_id;

    // Eight writers, each recording attestations with fresh ids and nonces as fast as the
    // store acknowledges them; the ids acknowledged and when.
    let stop = Arc::new(AtomicBool::new(false));
    // (id, when the write started, when it was acknowledged)
    let acked = Arc::new(std::sync::Mutex::new(
        Vec::<(String, Instant, Instant)>::new(),
    ));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, stop, acked, failed, node) = (
            store.clone(),
            stop.clone(),
            acked.clone(),
            failed.clone(),
            node.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("w{w}-{n}");
                let started = Instant::now();
                let r = store
                    .record_attestation(&record(&id, &node, n), u64::MAX, Some((&id, u64::MAX)))
                    .await;
                match r {
                    Ok(()) => acked.lock().unwrap().push((id, started, Instant::now())),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "no write acknowledged before the failover");

    let rp = Arc::new(rp);
    let (killed, promoted) = {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || {
            rp.kill_primary();
            let killed = Instant::now();
            rp.promote_standby();
            (killed, Instant::now())
        })
        .await
        .unwrap()
    };
    // Writes go on, on the promoted standby, without reconnecting anything by hand.
    let until = Instant::now() + Duration::from_secs(30);
    let first_after = loop {
        if let Some(t) = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, started, _)| *started > killed)
            .map(|(_, _, t)| *t)
            .min()
        {
            break t;
        }
        assert!(
            Instant::now() < until,
            "no write acknowledged after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let after = acked.iter().filter(|(_, _, t)| *t > killed).count();
    assert!(after > 0);

    // The count, on the new primary alone: every acknowledged id is there.
    let new_primary = PgStore::connect(&rp.url_on(rp.standby_port, &db))
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = rp
        .psql(rp.standby_port, &db, "SELECT id FROM attestations")
        .lines()
        .map(str::to_string)
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .map(|(id, _, _)| id)
        .filter(|id| !stored.contains(*id))
        .collect();
    let stored = new_primary.attestation_count().await.unwrap();
    eprintln!(
        "store failover: {} acknowledged ({before} before the kill, {after} after), {} lost, \
         {stored} stored, {} writes refused during the outage, outage {} ms from the kill to the \
         first acknowledged write started after it ({} ms of it promoting the standby)",
        acked.len(),
        lost.len(),
        failed.load(Ordering::Relaxed),
        first_after.duration_since(killed).as_millis(),
        promoted.duration_since(killed).as_millis()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored >= acked.len() as u64);

    // The old primary comes back as it was, a second read-write primary on the old timeline:
    // a store listing it first still writes to the promoted standby, and the running store
    // stays there.
    {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || rp.start_old_primary())
            .await
            .unwrap();
    }
    assert!(!rp.in_recovery(rp.primary_port));
    let fresh = PgStore::connect(&rp.url(&db)).await.unwrap();
    let id = "after-split-brain";
    fresh
        .record_attestation(&record(id, &node, 1), u64::MAX, Some((id, u64::MAX)))
        .await
        .unwrap();
    assert!(new_primary.attestation(id).await.unwrap().is_some());
    let id = "running-store-after-split-brain";
    store
        .record_attestation(&record(id, &node, 1), u64::MAX, Some((id, u64::MAX)))
        .await
        .unwrap();
    assert!(new_primary.attestation(id).await.unwrap().is_some());
    eprintln!("done in {:?}", t0.elapsed());
    // Nothing of it on the old primary (its copy of the database ends where it was killed).
    let on_old = rp.psql(
        rp.primary_port,
        &db,
        "SELECT count(*) FROM attestations WHERE id LIKE '%split-brain'",
    );
    assert_eq!(on_old, "0");
}

/// With the synchronous standby down, a write is not acknowledged: it waits (PostgreSQL holds
/// the commit until the standby has it) and completes once the standby is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_while_the_synchronous_standby_is_down() {
    let rp = Arc::new(
        tokio::task::spawn_blocking(vouch_testkit::ReplicatedPostgres::start)
            .await
            .unwrap(),
    );
    let db = rp.fresh_database();
    let store = PgStore::connect(&rp.url(&db)).await.unwrap();
    store
        .create_join_token("t", None, 0, u64::MAX)
        .await
        .unwrap();
    let node = store.enroll("t", &[1; 32], "h", 1).await.unwrap().node_id;
    {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || rp.stop_standby())
            .await
            .unwrap();
    }
    let write = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .record_attestation(&record("w", &node, 1), u64::MAX, Some(("w", u64::MAX)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !write.is_finished(),
        "a write was answered without the synchronous standby: {:?}",
        write.await
    );
    {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || rp.start_standby())
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("the write completes once the standby is back")
        .unwrap()
        .unwrap();
    assert_eq!(
        rp.psql(
            rp.standby_port,
            &db,
            "SELECT count(*) FROM attestations WHERE id = 'w'"
        ),
        "1"
    );
}

/// The primary crashes and comes back on the same host before anyone promotes the standby: the
/// store stays with it; when it is then lost for good, the store still follows the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_restarts_is_kept_and_a_later_promotion_still_followed() {
    let rp = Arc::new(
        tokio::task::spawn_blocking(vouch_testkit::ReplicatedPostgres::start)
            .await
            .unwrap(),
    );
    let db = rp.fresh_database();
    let store = PgStore::connect(&rp.url(&db)).await.unwrap();
    store
        .create_join_token("t", None, 0, u64::MAX)
        .await
        .unwrap();
    let node = store.enroll("t", &[1; 32], "h", 1).await.unwrap().node_id;
    let write = |id: &'static str| {
        let (store, node) = (store.clone(), node.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                match store
                    .record_attestation(&record(id, &node, 1), u64::MAX, Some((id, u64::MAX)))
                    .await
                {
                    Ok(()) => return,
                    Err(e) => assert!(Instant::now() < until, "{id}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    write("before").await;
    {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || {
            rp.kill_primary();
            rp.start_old_primary();
        })
        .await
        .unwrap();
    }
    write("after-restart").await;
    // Let the watcher notice the restart, then lose the primary for good.
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || {
            rp.kill_primary();
            rp.promote_standby();
        })
        .await
        .unwrap();
    }
    write("after-promotion").await;
    assert_eq!(
        rp.psql(
            rp.standby_port,
            &db,
            "SELECT string_agg(id, ',' ORDER BY id) FROM attestations"
        ),
        "after-promotion,after-restart,before"
    );
}

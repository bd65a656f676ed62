//! Issue 16 item 7, no single point of failure in the store: a real verifier over loopback TLS
//! on a real PostgreSQL primary with a synchronous streaming standby (vouch-testkit), its
//! `database_url` listing both. Agents attest as fast as they can; the primary is killed with
//! SIGKILL, the standby promoted a few seconds later (the operator's reaction), the verifier
//! finds it by itself and attestations go on. Then the count: every attestation an agent got a
//! 200 for is on the new primary. Meanwhile the agent's Workload API keeps serving its
//! still-valid X.509-SVID, through the verifier's 503s (the node's attestation and the SVID's
//! renewal both refused while the store is down).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt as _;

use vouch_agent::{Agent, AgentConfig, proto, request};
use vouch_core::ErrorKind;
use vouch_policy::ReferenceValue;
use vouch_server::{ServerConfig, create_join_token, unix_now};
use vouch_store::{PgStore, Store};

/// How long the primary stays dead before the standby is promoted.
const HOLD: Duration = Duration::from_secs(5);
/// The lifetime of the Workload API caller's SVID: renewed at half-life, so the agent tries to
/// renew it while the store is down.
const SVID_TTL: u64 = 10;

async fn agent(
    store: Arc<dyn Store>,
    server: (String, Option<std::path::PathBuf>),
    dir: std::path::PathBuf,
    name: String,
    tweak: impl FnOnce(&mut AgentConfig),
) -> Agent {
    let store = store.as_ref();
    let name = name.as_str();
    let exe = dir.join(format!("{name}.bin"));
    std::fs::write(&exe, format!("binary of {name}")).unwrap();
    let mut cfg = AgentConfig {
        servers: vec![server.0],
        ca_cert: server.1,
        data_dir: dir.join(format!("agent-{name}")),
        join_token: Some(create_join_token(store, 600, None).await.unwrap()),
        workload_name: name.into(),
        exe: Some(exe),
        interval: 1,
        ..AgentConfig::default()
    };
    tweak(&mut cfg);
    let mut a = Agent::new(cfg).await.unwrap();
    // Its measurements are the reference values: affirming.
    let ev = a.evidence("x").unwrap();
    let m: vouch_core::SoftwareMeasurements =
        serde_json::from_slice(&B64.decode(&ev.payload).unwrap()).unwrap();
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: m.workload.name.clone(),
                value: m.workload.exe_sha256.clone(),
            },
            unix_now(),
        )
        .await
        .unwrap();
    assert_eq!(
        a.attest_once().await.unwrap().status,
        vouch_core::ArStatus::Affirming
    );
    a
}

/// One Workload API fetch: the SVID's SPIFFE ID and notAfter, or the gRPC code.
async fn fetch_svid(sock: &std::path::Path) -> Result<(String, i64), String> {
    let work = async {
        let mut c = vouch_agent::connect(sock)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = c
            .fetch_x509svid(request(proto::X509svidRequest {}))
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        let first = s
            .next()
            .await
            .ok_or("stream ended")?
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        let svid = first.svids.first().ok_or("no SVID")?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&svid.x509_svid).map_err(|e| e.to_string())?;
        Ok((
            svid.spiffe_id.clone(),
            cert.validity().not_after.timestamp(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(8), work)
        .await
        .unwrap_or_else(|_| Err("no answer within 8 s".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_primary_killed_under_load_standby_promoted_nothing_acknowledged_lost() {
    let t0 = Instant::now();
    let rp = Arc::new(
        tokio::task::spawn_blocking(vouch_testkit::ReplicatedPostgres::start)
            .await
            .unwrap(),
    );
    let db = rp.fresh_database();
    // Both hosts, primary first; a request waits at most 2 s for a connection (then 503).
    let url = format!("{}&connect_timeout=2", rp.url(&db));
    let dir = tempfile::tempdir().unwrap();
    let server = vouch_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("server"),
        database_url: Some(url.clone()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());

    // The node whose Workload API this test process calls, with a short-lived SVID.
    let sock = dir.path().join("api.sock");
    let at = (server.base_url.clone(), server.ca_cert.clone());
    let node = agent(
        store.clone(),
        at.clone(),
        dir.path().into(),
        "svc".into(),
        |c| {
            c.workload_api_socket = Some(sock.clone());
        },
    )
    .await;
    // Six more agents for the load, enrolled and affirming before any load starts.
    let mut loads = Vec::new();
    for i in 0..6 {
        loads.push(
            agent(
                store.clone(),
                at.clone(),
                dir.path().into(),
                format!("load{i}"),
                |_| {},
            )
            .await,
        );
    }
    eprintln!("agents enrolled at {:?}", t0.elapsed());
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let exe = vouch_evidence::sha256_file(std::path::Path::new("/proc/self/exe")).unwrap();
    let spiffe_id = "spiffe://vouch.local/svc/failover";
    let entry = vouch_identity::Entry::new(
        "e-failover".into(),
        &vouch_identity::SpiffeId::parse(spiffe_id).unwrap(),
        [
            "vouch:workload:svc".to_string(),
            format!("unix:uid:{uid}"),
            format!("unix:sha256:{exe}"),
        ]
        .iter()
        .map(|s| vouch_identity::Selector::parse(s).unwrap())
        .collect(),
        SVID_TTL,
        unix_now(),
    )
    .unwrap();
    store.add_entry(&entry).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let node_results = Arc::new(Mutex::new(Vec::<(Instant, Option<ErrorKind>)>::new()));
    let node_task = {
        let (stop, results) = (stop.clone(), node_results.clone());
        tokio::spawn(node.run(
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            move |r| {
                let kind = r.as_ref().err().map(|e| e.kind());
                results.lock().unwrap().push((
                    Instant::now(),
                    kind.map(|k| k.unwrap_or(ErrorKind::Internal)),
                ));
            },
        ))
    };
    let until = Instant::now() + Duration::from_secs(20);
    let first_svid = loop {
        match fetch_svid(&sock).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < until, "no SVID: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first_svid.0, spiffe_id);

    // Load: the six agents attesting back to back; the ids of every 200 and when.
    eprintln!("first SVID at {:?}", t0.elapsed());
    // (id, when the attestation started, when its 200 came)
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant, Instant)>::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loaders = Vec::new();
    for mut a in loads {
        let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
        loaders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match a.attest_once().await {
                    Ok(r) => {
                        acked
                            .lock()
                            .unwrap()
                            .push((r.attestation_id, started, Instant::now()))
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    // The Workload API, asked every 300 ms throughout.
    let checks = Arc::new(Mutex::new(
        Vec::<(i64, Result<(String, i64), String>)>::new(),
    ));
    let checker = {
        let (stop, checks, sock) = (stop.clone(), checks.clone(), sock.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let at = unix_now() as i64;
                let r = fetch_svid(&sock).await;
                checks.lock().unwrap().push((at, r));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    eprintln!("load agents up at {:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = acked.lock().unwrap().len();
    assert!(before_kill > 0, "no attestation before the kill");

    // kill -9 of the primary; the standby promoted HOLD later.
    let killed = {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || {
            rp.kill_primary();
            Instant::now()
        })
        .await
        .unwrap()
    };
    let killed_unix = unix_now() as i64;
    tokio::time::sleep(HOLD).await;
    let promoted = {
        let rp = rp.clone();
        tokio::task::spawn_blocking(move || {
            rp.promote_standby();
            Instant::now()
        })
        .await
        .unwrap()
    };
    // The outage: from the kill to the first 200 of an attestation started after it.
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
            "no attestation acknowledged after the promotion"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovered_unix = unix_now() as i64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.unwrap();
    }
    checker.await.unwrap();
    node_task.await.unwrap().unwrap();

    // The count, on the new primary alone.
    let acked = acked.lock().unwrap().clone();
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
    let after = acked.iter().filter(|(_, _, t)| *t > killed).count();

    // The node's attestations were refused with 503 (store unavailable) while the store was
    // down, and the Workload API served a still-valid SVID all along.
    let node_results = node_results.lock().unwrap().clone();
    let store_503s = node_results
        .iter()
        .filter(|(t, k)| *t > killed && *t < first_after && *k == Some(ErrorKind::StoreUnavailable))
        .count();
    let checks = checks.lock().unwrap().clone();
    // In order: the API may answer without an SVID only once every SVID it served before has
    // expired (or is about to, within the second); never an expired one.
    let mut served = 0;
    let mut valid_until = 0i64;
    for (at, r) in &checks {
        let outage = *at >= killed_unix && *at <= recovered_unix;
        match r {
            Ok((id, not_after)) => {
                assert_eq!(id, spiffe_id);
                assert!(*not_after > *at, "an expired SVID was served at {at}");
                valid_until = valid_until.max(*not_after);
                served += usize::from(outage);
            }
            Err(e) => assert!(
                *at + 1 >= valid_until,
                "the Workload API refused at {at} (killed at {killed_unix}) while the SVID it \
                 served was valid until {valid_until}: {e}"
            ),
        }
    }
    eprintln!(
        "verifier failover: {} attestations acknowledged ({before_kill} before the kill, {after} \
         after), {} lost; {} refused; outage {} ms from kill -9 to the first acknowledged \
         attestation ({} ms of it waiting for the promotion, {} ms from the promotion); node \
         attestations answered 503 meanwhile: {store_503s}; Workload API answers with a valid \
         SVID during the outage: {served}; total {:?}",
        acked.len(),
        lost.len(),
        refused.load(Ordering::Relaxed),
        first_after.duration_since(killed).as_millis(),
        promoted.duration_since(killed).as_millis(),
        first_after.duration_since(promoted).as_millis(),
        t0.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(after > 0);
    assert!(
        store_503s > 0,
        "the node never saw the store unavailable: {node_results:?}"
    );
    assert!(served >= 3, "Workload API during the outage: {checks:?}");
    assert!(!rp.in_recovery(rp.standby_port));
}

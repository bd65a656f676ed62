//! `vouch bench --gossip N,…`: how fast one revocation reaches every member of a gossip cluster
//! of N nodes, simulated in this process (chitchat's in-process transport: every message is
//! serialised and parsed as on UDP), with some nodes cut off during the spread and catching up
//! afterwards. The record and head are real: signed by a verifier started here, checked by
//! every node against the trust bundle.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chitchat::transport::ChannelTransport;
use serde::Serialize;
use vouch_rp::gossip::{Gossip, GossipAuth, GossipConfig};
use vouch_rp::{AllowedIds, RevocationSet, SpiffeVerifier};
use vouch_server::{ServerConfig, unix_now};

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct Spread {
    /// Members.
    pub nodes: usize,
    /// Members cut off while the record spread.
    pub down: usize,
    /// Gossip interval, milliseconds.
    pub interval_ms: u64,
    /// Time until 99 % of the reachable members held the record, milliseconds.
    pub p99_ms: u64,
    /// Time until all reachable members held it.
    pub all_ms: u64,
    /// `all_ms` in gossip rounds.
    pub all_rounds: f64,
    /// After the cut-off members were reconnected: time until they held it too.
    pub catchup_ms: Option<u64>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + u16::try_from(i).unwrap_or(0)))
}

/// A signed record (epoch 1) and head from a real verifier, and its trust bundle.
async fn signed_statements() -> Result<(String, String, Arc<SpiffeVerifier>)> {
    let dir = crate::bench::tempfile_dir()?.join(format!("spread-{}", unix_now()));
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.join("verifier"),
        insecure_http: true,
        ..ServerConfig::default()
    };
    let store = vouch_server::open_store(&cfg).await?;
    let server = vouch_server::start_with_store(cfg.clone(), store.clone()).await?;
    let rec = vouch_server::revoke_offline(
        &cfg,
        store.as_ref(),
        vouch_core::revocation::RevocationKind::Svid,
        "5eed",
        "gossip spread measurement",
        "bench",
    )
    .await?;
    let feed: serde_json::Value = reqwest::get(format!("{}/v1/revocations", server.base_url))
        .await?
        .json()
        .await?;
    let head = feed["head"].as_str().context("no head")?.to_string();
    let td = vouch_identity::TrustDomain::parse(&cfg.trust_domain)?;
    let ca =
        vouch_identity::CaSet::load_or_create(&cfg.spiffe_dir(), &td, cfg.svid_ca_ttl, unix_now())?;
    let auth: Vec<Vec<u8>> = ca
        .authorities(unix_now())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let bundle = SpiffeVerifier::new(&td, &auth, AllowedIds::AnyInTrustDomain)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((rec.record, head, bundle))
}

/// Spread one revocation through `n` members, `down` of them cut off until it reached the rest.
pub async fn spread(n: usize, down: usize, interval: Duration) -> Result<Spread> {
    anyhow::ensure!(
        n >= 2 && down < n - 1,
        "need at least two reachable members"
    );
    let (record, head, bundle) = signed_statements().await?;
    let transport = ChannelTransport::with_mtu(65_507);
    let seeds: Vec<String> = (0..n.min(3)).map(|i| addr(i).to_string()).collect();
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        // In process: no datagram leaves it, so there is nothing to authenticate.
        let mut cfg = GossipConfig::new(
            &format!("node-{i}"),
            "vouch.local",
            addr(i),
            seeds.clone(),
            GossipAuth::Insecure,
        );
        cfg.interval = interval;
        let set = Arc::new(RwLock::new(RevocationSet::new(bundle.clone())));
        members.push(Gossip::join_with(cfg, set, &transport).await?);
    }
    // Membership first: the publisher (a verifier, and a seed) knows every member.
    let warm = Instant::now();
    while members[0].live_members().await.len() < n {
        anyhow::ensure!(
            warm.elapsed() < Duration::from_secs(120),
            "membership did not converge"
        );
        tokio::time::sleep(interval).await;
    }
    tokio::time::sleep(interval * 2).await;
    // The last `down` members lose every link.
    let cut: Vec<usize> = (n - down..n).collect();
    for &d in &cut {
        for j in 0..n {
            if j != d {
                transport.remove_link(addr(d), addr(j)).await;
            }
        }
    }
    let views: Vec<_> = members.iter().map(Gossip::watch).collect();
    let has = |i: usize| views[i].borrow().complete_through >= 1;
    let reachable = n - down;
    let want99 = (reachable * 99).div_ceil(100);
    let t0 = Instant::now();
    members[0].publish_record(1, &record).await;
    members[0].publish_head(&head).await;
    let mut p99 = None;
    let all = loop {
        let count = (0..n).filter(|i| !cut.contains(i) && has(*i)).count();
        if p99.is_none() && count >= want99 {
            p99 = Some(t0.elapsed());
        }
        if count == reachable {
            break t0.elapsed();
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "only {count} of {reachable} members got the record"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    anyhow::ensure!(
        cut.iter().all(|i| !has(*i)),
        "a cut-off member got the record"
    );
    let catchup = if cut.is_empty() {
        None
    } else {
        for &d in &cut {
            for j in 0..n {
                transport.add_link(addr(d), addr(j)).await;
            }
        }
        let t1 = Instant::now();
        while !cut.iter().all(|i| has(*i)) {
            anyhow::ensure!(
                t1.elapsed() < Duration::from_secs(300),
                "cut-off members did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(t1.elapsed())
    };
    for m in members {
        m.shutdown().await;
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(Spread {
        nodes: n,
        down,
        interval_ms: ms(interval),
        p99_ms: ms(p99.unwrap_or(all)),
        all_ms: ms(all),
        all_rounds: all.as_secs_f64() / interval.as_secs_f64(),
        catchup_ms: catchup.map(ms),
    })
}

/// Run the spread for each size and print the figures.
pub async fn run(
    sizes: &[usize],
    down_percent: usize,
    interval_ms: u64,
    json: bool,
) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for &n in sizes {
        let down = n * down_percent / 100;
        rows.push(spread(n, down, Duration::from_millis(interval_ms)).await?);
    }
    if json {
        crate::output::json(&rows)?;
    } else {
        println!(
            "revocation spread by gossip (chitchat, in-process transport, interval {interval_ms} ms)"
        );
        println!(
            "{:>6} {:>5} {:>9} {:>9} {:>7} {:>11}",
            "nodes", "down", "99% ms", "100% ms", "rounds", "catch-up ms"
        );
        for r in &rows {
            println!(
                "{:>6} {:>5} {:>9} {:>9} {:>7.1} {:>11}",
                r.nodes,
                r.down,
                r.p99_ms,
                r.all_ms,
                r.all_rounds,
                r.catchup_ms
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

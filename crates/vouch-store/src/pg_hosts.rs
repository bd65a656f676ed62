//! Several PostgreSQL hosts for one store: a primary and its standbys, and failing over to
//! whichever of them is the read-write primary.
//!
//! `database_url` may list hosts the way libpq does:
//! `postgres://vouch@db1:5432,db2:5432/vouch?target_session_attrs=read-write&connect_timeout=2`.
//! sqlx connects to one host only, so the choice is made here:
//!
//! - every host is probed (concurrently, each bounded by `connect_timeout`, default 2 s) with
//!   `SELECT pg_is_in_recovery()` and its current WAL timeline; a host in recovery (a standby)
//!   is never chosen, and every connection the pool opens checks it again, so the store never
//!   writes to a standby (`target_session_attrs`, when given, must be `read-write` or
//!   `primary`: the store writes);
//! - among read-write hosts the one on the highest timeline wins (a promoted standby moves to
//!   a new timeline; an old primary restarted on its own stays on the old one), ties in list
//!   order; a host on a timeline older than one this store already wrote to is refused and
//!   logged as a split brain;
//! - a watcher keeps one connection to the chosen host and asks it every 500 ms whether it is
//!   still a read-write primary. When it is not (killed, unreachable, demoted), the hosts are
//!   probed again until a primary appears (promoting a standby is the operator's decision,
//!   never the verifier's), the pool is pointed at it, and connections opened before the
//!   switch are dropped instead of reused. No restart of the verifier is needed.
//!
//! A single host keeps the pool's own reconnection (no watcher), with the same read-write
//! checks at start and on every new connection. At start, the hosts are probed again for up
//! to 10 s while none answers at all (a database still starting); a standby or an old primary
//! answering is an error at once.

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Result, StoreError};

/// How often the watcher asks the current primary whether it still is one.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long to wait between probes of every host while none is a primary.
const PROBE_AGAIN: Duration = Duration::from_millis(250);
/// Default bound on connecting to and querying one host while probing.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn config_error(msg: String) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(msg.into()))
}

/// The hosts of one `database_url`, in the order given.
#[derive(Debug)]
pub(crate) struct Hosts {
    /// Each host's connect options (everything else in the URL applied to each).
    options: Vec<PgConnectOptions>,
    /// Each host as `host:port`, for logs (never the password).
    names: Vec<String>,
    /// Bound on connecting to and querying one host while probing.
    connect_timeout: Duration,
    /// Whether the URL set `connect_timeout`.
    connect_timeout_given: bool,
}

impl Hosts {
    /// Split a libpq-style URL (`scheme://[userinfo@]h1[:p1],h2[:p2]/db?params`) into one URL
    /// per host and parse each with sqlx. `target_session_attrs` (checked) and
    /// `connect_timeout` (seconds) are taken out; the rest is sqlx's.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| config_error("database_url has no scheme (postgres://…)".into()))?;
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut connect_timeout_given = false;
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "target_session_attrs" => {
                    if !matches!(v, "read-write" | "primary") {
                        return Err(config_error(format!(
                            "database_url: target_session_attrs={v} is not supported: the store \
                             writes, so it connects only to a read-write primary \
                             (read-write or primary)"
                        )));
                    }
                }
                "connect_timeout" => {
                    let secs: u64 = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        config_error(format!(
                            "database_url: connect_timeout={v} is not a positive number of seconds"
                        ))
                    })?;
                    connect_timeout = Duration::from_secs(secs);
                    connect_timeout_given = true;
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let mut options = Vec::new();
        let mut names = Vec::new();
        for host in hostlist.split(',') {
            if host.is_empty() {
                return Err(config_error(
                    "database_url: an empty host in the host list".into(),
                ));
            }
            let one = match userinfo {
                Some(u) => format!("{scheme}://{u}@{host}{path}{query}"),
                None => format!("{scheme}://{host}{path}{query}"),
            };
            let opts = PgConnectOptions::from_str(&one).map_err(StoreError::Database)?;
            names.push(format!("{}:{}", opts.get_host(), opts.get_port()));
            options.push(opts);
        }
        Ok(Self {
            options,
            names,
            connect_timeout,
            connect_timeout_given,
        })
    }

    /// How long a request waits for a database connection before the store gives up (and the
    /// verifier answers 503): `connect_timeout` when the URL sets it, else `default`. While the
    /// primary is lost, a request waits this long for the new one before failing.
    pub(crate) fn acquire_timeout(&self, default: Duration) -> Duration {
        if self.connect_timeout_given {
            self.connect_timeout
        } else {
            default
        }
    }

    /// How many hosts there are.
    pub(crate) fn len(&self) -> usize {
        self.options.len()
    }

    /// The options of host `i`.
    pub(crate) fn options(&self, i: usize) -> &PgConnectOptions {
        &self.options[i]
    }

    /// Host `i` as `host:port`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

/// What one probe found: whether the host is in recovery, and its timeline when it is not.
async fn probe(opts: &PgConnectOptions, timeout: Duration) -> Result<(bool, u32), String> {
    let work = async {
        let mut conn = PgConnection::connect_with(opts)
            .await
            .map_err(|e| e.to_string())?;
        let r = role(&mut conn).await;
        let _ = conn.close().await;
        r
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Whether `conn` is in recovery, and (when not) the timeline its WAL is written on: the first
/// eight hex digits of the current WAL file's name.
async fn role(conn: &mut PgConnection) -> Result<(bool, u32), String> {
    let (in_recovery, walfile): (bool, Option<String>) = sqlx::query_as(
        "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE pg_walfile_name(pg_current_wal_lsn()) END",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| e.to_string())?;
    let timeline = walfile
        .as_deref()
        .and_then(|w| w.get(..8))
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .unwrap_or(0);
    Ok((in_recovery, timeline))
}

/// The host a store writes to, shared by the pool's hooks and the watcher.
#[derive(Debug)]
pub(crate) struct Current {
    /// Index of the chosen host.
    pub(crate) host: usize,
    /// The highest timeline this store has written on.
    pub(crate) timeline: u32,
    /// When the pool was last pointed at another host: connections opened before are dropped.
    pub(crate) switched_at: Option<Instant>,
}

/// No host is a usable primary: what each answered.
#[derive(Debug)]
pub(crate) struct NoPrimary {
    /// Whether any host answered at all (a standby, an old primary), rather than none being
    /// reachable (a server still starting).
    pub(crate) answered: bool,
    /// What each host answered, for the error.
    pub(crate) why: String,
}

impl From<NoPrimary> for StoreError {
    fn from(e: NoPrimary) -> Self {
        config_error(format!(
            "no read-write PostgreSQL primary among the hosts: {}",
            e.why
        ))
    }
}

/// At start: [`find_primary`], tried again for up to `patience` while no host answers at all
/// (the database may be starting); a standby or an old primary answering is an error at once.
pub(crate) async fn find_primary_at_start(
    hosts: &Hosts,
    patience: Duration,
) -> Result<(usize, u32)> {
    let until = Instant::now() + patience;
    loop {
        match find_primary(hosts, 0).await {
            Ok(found) => return Ok(found),
            Err(e) if !e.answered && Instant::now() < until => {
                tokio::time::sleep(PROBE_AGAIN).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Probe every host and choose the read-write one on the highest timeline (not below
/// `min_timeline`). The error lists what each host answered.
pub(crate) async fn find_primary(
    hosts: &Hosts,
    min_timeline: u32,
) -> Result<(usize, u32), NoPrimary> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..hosts.len() {
        let opts = hosts.options(i).clone();
        let timeout = hosts.connect_timeout;
        set.spawn(async move { (i, probe(&opts, timeout).await) });
    }
    let mut found = Vec::new();
    let mut why = vec![String::new(); hosts.len()];
    let mut answered = false;
    while let Some(joined) = set.join_next().await {
        let Ok((i, r)) = joined else { continue };
        answered |= r.is_ok();
        match r {
            Ok((true, _)) => why[i] = "a standby (in recovery)".into(),
            Ok((false, tl)) if tl < min_timeline => {
                tracing::error!(
                    "PostgreSQL {} is a read-write primary on timeline {tl}, older than timeline \
                     {min_timeline} this verifier already wrote to: an old primary that came back \
                     without being rebuilt as a standby (split brain). Refusing to write to it; \
                     fence it (stop it, or rebuild it with pg_rewind)",
                    hosts.name(i)
                );
                why[i] = format!("an old primary on timeline {tl} (refused)");
            }
            Ok((false, tl)) => found.push((i, tl)),
            Err(e) => why[i] = e,
        }
    }
    if found.len() > 1 {
        tracing::error!(
            "more than one PostgreSQL host accepts writes ({}): split brain; writing to the one on \
             the highest timeline. Fence the other.",
            found
                .iter()
                .map(|(i, tl)| format!("{} timeline {tl}", hosts.name(*i)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    found.sort_by_key(|(i, tl)| (std::cmp::Reverse(*tl), *i));
    found.first().copied().ok_or_else(|| NoPrimary {
        answered,
        why: (0..hosts.len())
            .map(|i| format!("{}: {}", hosts.name(i), why[i]))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Ends the watcher when the last store clone is dropped.
#[derive(Debug)]
pub(crate) struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start watching the current primary of `pool` (see the module docs).
pub(crate) fn watch(pool: PgPool, hosts: Arc<Hosts>, current: Arc<Mutex<Current>>) -> Watcher {
    Watcher(tokio::spawn(watch_loop(pool, hosts, current)))
}

fn lock(current: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn watch_loop(pool: PgPool, hosts: Arc<Hosts>, current: Arc<Mutex<Current>>) {
    let mut conn: Option<PgConnection> = None;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let host = lock(&current).host;
        let timeout = hosts.connect_timeout;
        let check = async {
            if conn.is_none() {
                conn = Some(
                    PgConnection::connect_with(hosts.options(host))
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            match conn.as_mut() {
                Some(c) => role(c).await,
                None => Err("no connection".to_string()),
            }
        };
        let why = match tokio::time::timeout(timeout, check).await {
            Ok(Ok((false, _))) => continue,
            Ok(Ok((true, _))) => "it is in recovery (a standby now)".to_string(),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {timeout:?}"),
        };
        conn = None;
        let lost = Instant::now();
        tracing::warn!(
            "PostgreSQL primary {} lost ({why}); looking for the new primary among {}",
            hosts.name(host),
            (0..hosts.len())
                .map(|i| hosts.name(i))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut last_log = Instant::now();
        loop {
            let min = lock(&current).timeline;
            match find_primary(&hosts, min).await {
                Ok((i, tl)) if i == host => {
                    // The same host answers again as the primary (a dropped connection, a
                    // restart): the pool's connections to it stay usable.
                    {
                        let mut c = lock(&current);
                        c.timeline = c.timeline.max(tl);
                    }
                    tracing::info!(
                        "PostgreSQL {} is the primary again (timeline {tl}), {} ms after losing it",
                        hosts.name(i),
                        lost.elapsed().as_millis()
                    );
                    break;
                }
                Ok((i, tl)) => {
                    pool.set_connect_options(hosts.options(i).clone());
                    {
                        let mut c = lock(&current);
                        c.host = i;
                        c.timeline = c.timeline.max(tl);
                        c.switched_at = Some(Instant::now());
                    }
                    tracing::warn!(
                        "store failed over: writing to PostgreSQL {} (timeline {tl}), {} ms after \
                         losing {}",
                        hosts.name(i),
                        lost.elapsed().as_millis(),
                        hosts.name(host)
                    );
                    break;
                }
                Err(e) => {
                    if last_log.elapsed() >= Duration::from_secs(10) {
                        tracing::warn!(
                            "still no PostgreSQL primary after {} s: {}",
                            lost.elapsed().as_secs(),
                            e.why
                        );
                        last_log = Instant::now();
                    }
                    tokio::time::sleep(PROBE_AGAIN).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn multi_host_urls_split_into_one_per_host() {
        let h = Hosts::parse(
            "postgres://vouch:pw@db1:5433,db2,10.0.0.3:6000/vouch?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.name(0), "db1:5433");
        assert_eq!(h.name(1), "db2:5432");
        assert_eq!(h.name(2), "10.0.0.3:6000");
        assert_eq!(h.connect_timeout, Duration::from_secs(3));
        for i in 0..3 {
            assert_eq!(h.options(i).get_database(), Some("vouch"));
            assert_eq!(h.options(i).get_username(), "vouch");
        }
        let one = Hosts::parse("postgres://vouch@127.0.0.1:5432/vouch").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn urls_that_could_write_to_a_standby_or_are_malformed_are_refused() {
        for (url, why) in [
            (
                "postgres://vouch@a,b/vouch?target_session_attrs=any",
                "target_session_attrs=any",
            ),
            (
                "postgres://vouch@a,b/vouch?target_session_attrs=standby",
                "target_session_attrs=standby",
            ),
            ("postgres://vouch@a,,b/vouch", "empty host"),
            (
                "postgres://vouch@a/vouch?connect_timeout=0",
                "connect_timeout=0",
            ),
            (
                "postgres://vouch@a/vouch?connect_timeout=x",
                "connect_timeout=x",
            ),
            ("vouch@a/vouch", "no scheme"),
            ("postgres://vouch@a:notaport,b/vouch", "port"),
        ] {
            let e = Hosts::parse(url).unwrap_err().to_string();
            assert!(e.contains(why) || why == "port", "{url}: {e}");
        }
    }
}

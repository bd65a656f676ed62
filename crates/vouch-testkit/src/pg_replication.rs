//! A throwaway PostgreSQL primary with a streaming-replication standby, for failover tests.
//!
//! The primary is set up as an operator would (docs/PRODUCTION.md, "Store failover"): a
//! physical replication slot for the standby, the standby cloned with `pg_basebackup -R`,
//! streaming with `application_name=standby1`, and then `synchronous_standby_names =
//! 'standby1'` with `synchronous_commit = on`: a commit returns only after the standby has
//! flushed its WAL. The tests can then kill the primary with SIGKILL and promote the standby
//! (`pg_ctl promote`). Both listen on loopback only with trust authentication and are stopped
//! and removed on drop. Runs as the `postgres` user when the tests run as root.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::postgres::PgBin;

/// The standby's name: its `application_name`, its replication slot, and what
/// `synchronous_standby_names` lists.
pub const STANDBY_NAME: &str = "standby1";

/// A primary and its synchronous standby.
pub struct ReplicatedPostgres {
    dir: tempfile::TempDir,
    pg: PgBin,
    /// The primary's loopback port.
    pub primary_port: u16,
    /// The standby's loopback port.
    pub standby_port: u16,
}

impl ReplicatedPostgres {
    /// Start the primary, clone the standby from it, wait until it streams, then make it the
    /// synchronous standby and wait until the primary reports it `sync`.
    pub fn start() -> Self {
        let pg = PgBin::find();
        let dir = pg.tempdir("vouch-pgrep-");
        let me = Self {
            dir,
            pg,
            primary_port: crate::free_port(),
            standby_port: crate::free_port(),
        };
        let primary = me.data("primary");
        me.pg.initdb(&primary);
        me.pg_start("primary", me.primary_port);
        me.pg.createdb(me.primary_port, "vouch");
        // The standby: a base backup with its replication slot (-C -S) and recovery settings
        // (-R: standby.signal, primary_conninfo), named so the primary can list it.
        let standby = me.data("standby");
        me.pg.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &me.primary_port.to_string(),
                "-U",
                "vouch",
                "-D",
                &standby,
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                STANDBY_NAME,
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(format!("{standby}/postgresql.auto.conf"))
                .unwrap();
            writeln!(
                f,
                "primary_conninfo = 'host=127.0.0.1 port={} user=vouch application_name={STANDBY_NAME}'\nprimary_slot_name = '{STANDBY_NAME}'",
                me.primary_port
            )
            .unwrap();
        }
        me.pg_start("standby", me.standby_port);
        me.wait_for(
            me.primary_port,
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
            ),
            "1",
        );
        me.psql(
            me.primary_port,
            "vouch",
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"),
        );
        me.psql(me.primary_port, "vouch", "SELECT pg_reload_conf()");
        me.wait_for(
            me.primary_port,
            &format!(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
            ),
            "sync",
        );
        me
    }

    fn data(&self, which: &str) -> String {
        format!("{}/{which}", self.dir.path().display())
    }

    /// The server options of both (a standby refuses to replay WAL of a primary whose
    /// `max_wal_senders`, `max_connections`, … are higher than its own, so they are the same).
    fn opts(&self, port: u16) -> String {
        format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c max_connections=200 \
             -c wal_level=replica -c max_wal_senders=5 -c max_replication_slots=5 \
             -c synchronous_commit=on -c hot_standby=on",
            self.dir.path().display()
        )
    }

    fn pg_start(&self, which: &str, port: u16) {
        self.pg.start(&self.data(which), &self.opts(port));
    }

    /// Run `sql` with psql on `port`, database `db`; its unaligned, tuples-only output.
    pub fn psql(&self, port: u16, db: &str, sql: &str) -> String {
        let out = Command::new(self.pg.path("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "vouch",
                "-d",
                db,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_for(&self, port: u16, sql: &str, want: &str) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.psql(port, "vouch", sql);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "{sql}: {got:?}, waited for {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A fresh, empty database created on the primary (and so on the standby); its name.
    pub fn fresh_database(&self) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "r{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.psql(
            self.primary_port,
            "vouch",
            &format!("CREATE DATABASE {name}"),
        );
        name
    }

    /// The libpq-style multi-host URL of database `db`: primary first, then the standby.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://vouch@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    /// A single-host URL of database `db` on `port`.
    pub fn url_on(&self, port: u16, db: &str) -> String {
        format!("postgres://vouch@127.0.0.1:{port}/{db}")
    }

    fn postmaster_pid(&self, which: &str) -> Option<u32> {
        std::fs::read_to_string(format!("{}/postmaster.pid", self.data(which)))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Kill the primary's postmaster with SIGKILL (no shutdown, no checkpoint: a crash), and
    /// wait until its port refuses connections.
    pub fn kill_primary(&self) {
        let pid = self
            .postmaster_pid("primary")
            .expect("primary postmaster.pid");
        let ok = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9 {pid}");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.primary_port)).is_ok() {
            assert!(Instant::now() < until, "the primary still listens");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Promote the standby (`pg_ctl promote`, waiting until it accepts writes).
    pub fn promote_standby(&self) {
        let data = self.data("standby");
        let log = format!("{data}.log");
        let r = std::panic::catch_unwind(|| self.pg.run("pg_ctl", &["-D", &data, "-w", "promote"]));
        if let Err(e) = r {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "{}\nthe standby's log ends:\n{}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .unwrap_or("promote failed"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Start the killed primary again on its own data, as it was: it recovers from its crash
    /// and comes up as a second read-write primary on its old timeline (a split brain, as an
    /// unfenced old primary would). Tried for a few seconds while its orphaned backends exit.
    pub fn start_old_primary(&self) {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self
                .pg
                .try_start(&self.data("primary"), &self.opts(self.primary_port))
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "restarting the old primary: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop the standby at once (`pg_ctl stop -m immediate`, as a crash would).
    pub fn stop_standby(&self) {
        self.pg.stop(&self.data("standby"));
    }

    /// Start the stopped standby again: it reconnects to the primary and catches up.
    pub fn start_standby(&self) {
        self.pg_start("standby", self.standby_port);
    }

    /// Whether the server on `port` is in recovery (a standby).
    pub fn in_recovery(&self, port: u16) -> bool {
        self.psql(port, "vouch", "SELECT pg_is_in_recovery()") == "t"
    }
}

impl Drop for ReplicatedPostgres {
    fn drop(&mut self) {
        for which in ["standby", "primary"] {
            self.pg.stop_quietly(&self.data(which));
        }
    }
}

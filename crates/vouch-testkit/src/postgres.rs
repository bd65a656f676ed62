//! A throwaway PostgreSQL for tests: `initdb` in a temporary directory (as the unprivileged
//! `postgres` user when the tests run as root, since PostgreSQL refuses to run as root),
//! listening on loopback only, trust authentication, stopped and removed on drop. When
//! `VOUCH_TEST_DATABASE_URL` is set, that server is used instead.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A running PostgreSQL (or the one the environment names).
pub struct Postgres {
    dir: Option<tempfile::TempDir>,
    pg: PgBin,
    port: u16,
    external: Option<String>,
}

/// The programs of the newest installed PostgreSQL, run as the `postgres` user when the tests
/// run as root. Shared by [`Postgres`] and [`crate::ReplicatedPostgres`].
pub(crate) struct PgBin {
    bin: PathBuf,
    as_postgres: bool,
}

impl PgBin {
    /// The newest `/usr/lib/postgresql/*/bin`, and whether to run it as `postgres`.
    pub(crate) fn find() -> Self {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL (Debian postgresql; scripts/deps.sh --test installs it)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort();
        let bin = dirs.pop().expect("no /usr/lib/postgresql/*/bin/initdb");
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        Self { bin, as_postgres }
    }

    /// The path of program `tool`.
    pub(crate) fn path(&self, tool: &str) -> PathBuf {
        self.bin.join(tool)
    }

    /// A temporary directory in /tmp, owned by the user the server runs as.
    pub(crate) fn tempdir(&self, prefix: &str) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap();
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL directory");
        }
        dir
    }

    /// Run `tool` with `args` (as `postgres` when the tests run as root).
    pub(crate) fn output(&self, tool: &str, args: &[&str]) -> std::io::Result<Output> {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
    }

    /// Run `tool` with `args`; panic with its output if it fails.
    pub(crate) fn run(&self, tool: &str, args: &[&str]) {
        self.check(tool, self.output(tool, args));
    }

    /// Panic with `tool`'s output unless it ran and succeeded.
    fn check(&self, tool: &str, out: std::io::Result<Output>) {
        let out = out.unwrap_or_else(|e| panic!("{}: {e}", self.bin.join(tool).display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `initdb` a cluster in `data`: trust authentication, superuser `vouch`, UTF-8.
    pub(crate) fn initdb(&self, data: &str) {
        self.run(
            "initdb",
            &[
                "-D",
                data,
                "--auth=trust",
                "--username=vouch",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
    }

    /// Try once to start the cluster in `data` with server options `opts`, logging to
    /// `{data}.log`, waiting until it accepts connections.
    pub(crate) fn try_start(&self, data: &str, opts: &str) -> std::io::Result<Output> {
        let log = format!("{data}.log");
        self.output(
            "pg_ctl",
            &["-D", data, "-o", opts, "-l", &log, "-w", "start"],
        )
    }

    /// Start the cluster in `data` with server options `opts`; panic if it does not start.
    pub(crate) fn start(&self, data: &str, opts: &str) {
        self.check("pg_ctl", self.try_start(data, opts));
    }

    /// Stop the cluster in `data` at once, as a crash would (`pg_ctl stop -m immediate`).
    pub(crate) fn stop(&self, data: &str) {
        self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
    }

    /// As [`PgBin::stop`], for drop: a cluster that is not running is no error.
    pub(crate) fn stop_quietly(&self, data: &str) {
        let _ = self.output("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
    }

    /// `createdb` database `name` as `vouch` on the server at loopback `port`.
    pub(crate) fn createdb(&self, port: u16, name: &str) {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "vouch",
                name,
            ],
        );
    }
}

impl Postgres {
    /// Start one (or use `VOUCH_TEST_DATABASE_URL`).
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("VOUCH_TEST_DATABASE_URL") {
            return Self {
                dir: None,
                pg: PgBin {
                    bin: PathBuf::new(),
                    as_postgres: false,
                },
                port: 0,
                external: Some(url),
            };
        }
        let pg = PgBin::find();
        let dir = pg.tempdir("vouch-pg-");
        let port = crate::free_port();
        let me = Self {
            dir: Some(dir),
            pg,
            port,
            external: None,
        };
        let data = me.data();
        me.pg.initdb(&data);
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c max_connections=200",
            me.dir.as_ref().unwrap().path().display()
        );
        me.pg.start(&data, &opts);
        me.pg.createdb(port, "vouch");
        me
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.as_ref().unwrap().path().display())
    }

    /// A URL for a fresh, empty database on this server.
    pub fn fresh_database(&self) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        match &self.external {
            Some(url) => {
                let out = Command::new("psql")
                    .arg(url)
                    .args(["-c", &format!("CREATE DATABASE {name}")])
                    .output()
                    .expect("psql");
                assert!(out.status.success(), "{out:?}");
                let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
                format!("{base}/{name}")
            }
            None => {
                self.pg.createdb(self.port, &name);
                format!("postgres://vouch@127.0.0.1:{}/{name}", self.port)
            }
        }
    }

    /// Stop the server at once (as a crash would) and start it again on the same data.
    pub fn restart(&self) {
        let data = self.data();
        self.pg.stop(&data);
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.dir.as_ref().unwrap().path().display()
        );
        self.pg.start(&data, &opts);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.external.is_none() {
            self.pg.stop_quietly(&self.data());
        }
    }
}

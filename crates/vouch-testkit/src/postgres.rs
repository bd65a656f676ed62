//! A throwaway PostgreSQL for tests: `initdb` in a temporary directory (as the unprivileged
//! `postgres` user when the tests run as root, since PostgreSQL refuses to run as root),
//! listening on loopback only, trust authentication, stopped and removed on drop. When
//! `VOUCH_TEST_DATABASE_URL` is set, that server is used instead.

use std::path::PathBuf;
use std::process::Command;

/// A running PostgreSQL (or the one the environment names).
pub struct Postgres {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    external: Option<String>,
}

pub(crate) fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (Debian postgresql; scripts/deps.sh --test installs it)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

impl Postgres {
    /// Start one (or use `VOUCH_TEST_DATABASE_URL`).
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("VOUCH_TEST_DATABASE_URL") {
            return Self {
                dir: None,
                bin: PathBuf::new(),
                as_postgres: false,
                port: 0,
                external: Some(url),
            };
        }
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("vouch-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL directory");
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let me = Self {
            dir: Some(dir),
            bin,
            as_postgres,
            port,
            external: None,
        };
        let data = me.data();
        me.run(
            "initdb",
            &[
                "-D",
                &data,
                "--auth=trust",
                "--username=vouch",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=on -c max_connections=200",
            me.dir.as_ref().unwrap().path().display()
        );
        me.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &opts,
                "-l",
                &format!("{data}.log"),
                "-w",
                "start",
            ],
        );
        me.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "vouch",
                "vouch",
            ],
        );
        me
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.as_ref().unwrap().path().display())
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
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
                self.run(
                    "createdb",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "vouch",
                        &name,
                    ],
                );
                format!("postgres://vouch@127.0.0.1:{}/{name}", self.port)
            }
        }
    }

    /// Stop the server at once (as a crash would) and start it again on the same data.
    pub fn restart(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.dir.as_ref().unwrap().path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &opts,
                "-l",
                &format!("{data}.log"),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.external.is_none() {
            let data = self.data();
            let exe = self.bin.join("pg_ctl");
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if self.as_postgres {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&exe)
                    .args(args)
                    .output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
    }
}

//! What the `vouch` binary's integration tests share: a child process killed on drop, waiting
//! for a condition, and a `vouch server` on loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed and reaped on drop.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (up to 60 s, polling every 50 ms) until `ok` holds; panic naming `what` if it never does.
pub fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up");
}

/// `vouch server` on `127.0.0.1:port` with its data in `dir` (no `VOUCH_CONFIG`, output
/// discarded), returned once it listens and has written the context admin commands find
/// through `--data-dir`.
pub fn spawn_server(dir: &Path, port: u16) -> Child {
    let server = Child(
        Command::new(env!("CARGO_BIN_EXE_vouch"))
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .env_remove("VOUCH_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("vouch server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && dir.join("context.toml").exists()
    });
    server
}

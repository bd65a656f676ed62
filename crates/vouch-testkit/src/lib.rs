//! Test harnesses shared by the workspace (dev-dependency only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod swtpm;
pub use swtpm::Swtpm;
pub mod tabrmd;
pub use tabrmd::Tabrmd;
pub mod postgres;
pub use postgres::Postgres;
pub mod pg_replication;
pub mod registry;
pub use pg_replication::ReplicatedPostgres;
mod testdata;
pub use testdata::{TESTDATA, read_testdata, testdata};

/// A loopback TCP port free at the time of the call (another process may still take it before
/// the caller binds it; tests retry or accept that).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

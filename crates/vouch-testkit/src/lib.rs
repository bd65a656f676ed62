//! Test harnesses shared by the workspace (dev-dependency only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod swtpm;
pub use swtpm::Swtpm;
pub mod tabrmd;
pub use tabrmd::Tabrmd;
pub mod postgres;
pub use postgres::Postgres;
mod testdata;
pub use testdata::{TESTDATA, read_testdata, testdata};

//! The repository's own test data: `testdata/` at its root, one folder per kind of evidence
//! (`snp/`, `tdx/`, `sgx/`, `nitro/`, `tpm/`, `ear/`), each file named with its origin and
//! licence in `testdata/SOURCES.md`. Tests read it through here so that a fresh clone is all
//! they need.

use std::path::PathBuf;

/// The `testdata/` folder at the root of the repository.
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

/// The path of `p` (e.g. `"snp/report_v2.bin"`) in the repository's test data.
pub fn testdata(p: &str) -> PathBuf {
    PathBuf::from(TESTDATA).join(p)
}

/// The bytes of `p` in the repository's test data; panics, naming the file, when it cannot be
/// read.
pub fn read_testdata(p: &str) -> Vec<u8> {
    let path = testdata(p);
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {}: {e}", path.display()))
}

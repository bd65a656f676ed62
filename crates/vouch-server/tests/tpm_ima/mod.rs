//! IMA on a software TPM, as the kernel would keep it: the measurement list in a file and each
//! entry extended into PCR 10. Shared by `tpm_e2e.rs` and `secrets_tpm.rs`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use vouch_testkit::Swtpm;

/// Lines as the kernel prints them; their template hashes were computed by a kernel.
pub const REAL_IMA: [&str; 2] = [
    "10 8a07230eaa15a29758948e9ecc34319fab650c10 ima-ng sha256:d1992ff6ac5beb7ea77ae32841538b9b8b8e6c55190be257296741c88c0da203 /etc/securetty",
    "10 879614a97374eeab1fb579765b52437d724a8f31 ima-ng sha256:498cd2a39fd254eeff87a627291a39db405635f43f406fd5f698331ca2176034 /etc/shadow",
];

/// An entry the way the kernel would log a newly measured file.
pub fn ima_line(path: &str, content: &[u8]) -> String {
    let e = vouch_tpm::ImaEntry {
        pcr: 10,
        template_hash: vec![0; 20],
        template: "ima-ng".into(),
        file_hash_alg: "sha256".into(),
        file_hash: vouch_tpm::HashAlg::Sha256.digest(&[content]),
        path: path.into(),
        signature: None,
    };
    let th = vouch_tpm::HashAlg::Sha1.digest(&[&e.template_data()]);
    format!(
        "10 {} ima-ng sha256:{} {path}",
        hex::encode(th),
        hex::encode(&e.file_hash)
    )
}

/// Emulate the kernel: append the line to the log and extend PCR 10 with it.
pub fn measure(tpm: &Swtpm, log: &Path, line: &str) {
    let e = vouch_tpm::parse_ima_log(line).unwrap().remove(0);
    tpm.extend(
        10,
        "sha256",
        &hex::encode(e.extend_value(vouch_tpm::HashAlg::Sha256)),
    );
    let mut text = std::fs::read_to_string(log).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    std::fs::write(log, text).unwrap();
}

/// `dir/ascii_runtime_measurements` with the [`REAL_IMA`] entries, measured into PCR 10.
pub fn real_ima_log(tpm: &Swtpm, dir: &Path) -> PathBuf {
    let log = dir.join("ascii_runtime_measurements");
    for l in REAL_IMA {
        measure(tpm, &log, l);
    }
    log
}

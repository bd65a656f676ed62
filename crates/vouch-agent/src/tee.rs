//! TEE reports from the guest kernel's configfs-tsm interface
//! (`/sys/kernel/config/tsm/report`, Linux 6.7 and later): SEV-SNP guests (`sev_guest`
//! provider; the host's certificate table comes as `auxblob`) and TDX guests (`tdx_guest`; the
//! quote comes from the host's quoting service).
//!
//! One report: make an entry directory, write `privlevel` (SEV-SNP, when configured) and the
//! 64 bytes of report data to `inblob`, read `outblob`, `auxblob` and `provider`, and check
//! that `generation` moved by exactly the writes made (another writer to the same entry would
//! otherwise hand back a report over someone else's data); then remove the entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Where the agent asks for TEE reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeeConfig {
    /// The configfs-tsm report directory.
    pub configfs: PathBuf,
    /// SEV-SNP VMPL to request the report at (`privlevel`), when not the kernel's default.
    pub privlevel: Option<u8>,
}

impl Default for TeeConfig {
    fn default() -> Self {
        Self {
            configfs: PathBuf::from("/sys/kernel/config/tsm/report"),
            privlevel: None,
        }
    }
}

/// A report as the TEE produced it, with the certificates the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeeReportBlob {
    /// The evidence kind name (`sev-snp`, `tdx`).
    pub tee: &'static str,
    /// The report or quote.
    pub report: Vec<u8>,
    /// DER certificates (SEV-SNP: the VEK then the ASK/ASVK from the host's table).
    pub certs: Vec<Vec<u8>>,
}

/// Largest outblob/auxblob read (the kernel's own limit is 32 KiB for outblob).
const MAX_BLOB: u64 = 128 * 1024;

static ENTRY: AtomicU64 = AtomicU64::new(0);

fn io(what: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |e| AgentError::Tee(format!("{what}: {e}"))
}

fn read_bounded(p: &Path) -> Result<Vec<u8>, AgentError> {
    use std::io::Read as _;
    let f = std::fs::File::open(p).map_err(io(format!("open {}", p.display())))?;
    let mut v = Vec::new();
    f.take(MAX_BLOB + 1)
        .read_to_end(&mut v)
        .map_err(io(format!("read {}", p.display())))?;
    if v.len() as u64 > MAX_BLOB {
        return Err(AgentError::Tee(format!(
            "{} is larger than {MAX_BLOB} bytes",
            p.display()
        )));
    }
    Ok(v)
}

fn generation(dir: &Path) -> Result<u64, AgentError> {
    let g = read_bounded(&dir.join("generation"))?;
    String::from_utf8_lossy(&g)
        .trim()
        .parse()
        .map_err(|_| AgentError::Tee("configfs-tsm generation is not a number".into()))
}

/// Removes the entry directory when the report is done (or failed).
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Ask the TEE for a report over `report_data` (64 bytes) through configfs-tsm.
pub fn report(cfg: &TeeConfig, report_data: &[u8]) -> Result<TeeReportBlob, AgentError> {
    if report_data.len() != 64 {
        return Err(AgentError::Tee("report data must be 64 bytes".into()));
    }
    if !cfg.configfs.is_dir() {
        return Err(AgentError::Tee(format!(
            "{} does not exist: this machine is not a confidential VM with configfs-tsm \
             (Linux 6.7+, sev-guest or tdx-guest loaded, configfs mounted)",
            cfg.configfs.display()
        )));
    }
    let dir = cfg.configfs.join(format!(
        "vouch-{}-{}",
        std::process::id(),
        ENTRY.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(io(format!("create {}", dir.display())))?;
    let entry = Entry(dir);
    let dir = &entry.0;
    let before = generation(dir)?;
    let mut writes = 0;
    if let Some(level) = cfg.privlevel {
        std::fs::write(dir.join("privlevel"), level.to_string())
            .map_err(io("write privlevel".into()))?;
        writes += 1;
    }
    std::fs::write(dir.join("inblob"), report_data).map_err(io("write inblob".into()))?;
    writes += 1;
    let report = read_bounded(&dir.join("outblob"))?;
    let provider = String::from_utf8_lossy(&read_bounded(&dir.join("provider"))?)
        .trim()
        .to_string();
    let out = match provider.as_str() {
        "sev_guest" => {
            // The host's certificate table. A host may provision none (then the verifier
            // finds the VCEK in its offline store): a missing or unreadable table is no table,
            // a malformed one is an error.
            let aux = read_bounded(&dir.join("auxblob")).unwrap_or_else(|e| {
                tracing::debug!("no SEV-SNP certificate table from the host: {e}");
                Vec::new()
            });
            let table =
                vouch_tee::snp::cert_table(&aux).map_err(|e| AgentError::Tee(e.to_string()))?;
            TeeReportBlob {
                tee: "sev-snp",
                report,
                // DER whether the host wrote DER or PEM entries.
                certs: vouch_tee::snp::vek_chain_der(&table)
                    .map_err(|e| AgentError::Tee(e.to_string()))?,
            }
        }
        "tdx_guest" => TeeReportBlob {
            tee: "tdx",
            report,
            certs: Vec::new(),
        },
        other => {
            return Err(AgentError::Tee(format!(
                "configfs-tsm provider {other:?} is not one Vouch knows (sev_guest, tdx_guest)"
            )));
        }
    };
    if generation(dir)? != before + writes {
        return Err(AgentError::Tee(
            "configfs-tsm entry was written by someone else meanwhile; try again".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_configfs_tsm_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TeeConfig {
            configfs: dir.path().join("tsm/report"),
            privlevel: None,
        };
        let e = report(&cfg, &[0; 64]).unwrap_err().to_string();
        assert!(e.contains("not a confidential VM"), "{e}");
        let e = report(&cfg, &[0; 32]).unwrap_err().to_string();
        assert!(e.contains("64 bytes"), "{e}");
    }
}

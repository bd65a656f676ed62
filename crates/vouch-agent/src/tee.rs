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
    /// Instead of configfs-tsm, run this program (argv, no shell) for each report: every
    /// `{report_data}` in an argument becomes the 64 bytes of report data as hex, and its
    /// standard output is the evidence in any format `vouch tee verify` reads (raw, base64,
    /// hex, configfs-tsm JSON with its certificate table, an SEV-SNP extended report, Trustee's
    /// Azure vTPM JSON). For TEEs reached through other tools (an Azure confidential VM's vTPM
    /// and HCL report, a cloud's attestation agent).
    pub command: Option<Vec<String>>,
    /// The evidence kind `command` writes (`sev-snp`, `tdx`, `az-snp-vtpm`, `az-tdx-vtpm`, …);
    /// needed with `command`.
    pub kind: Option<String>,
    /// Seconds `command` may take before it is killed.
    pub command_timeout_secs: u64,
}

impl Default for TeeConfig {
    fn default() -> Self {
        Self {
            configfs: PathBuf::from("/sys/kernel/config/tsm/report"),
            privlevel: None,
            command: None,
            kind: None,
            command_timeout_secs: 30,
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

/// Run the configured evidence command (see [`TeeConfig::command`]) for `report_data`, and
/// decode what it writes.
fn from_command(
    cfg: &TeeConfig,
    argv: &[String],
    report_data: &[u8],
) -> Result<TeeReportBlob, AgentError> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let tee = |m: String| AgentError::Tee(m);
    let kind = cfg
        .kind
        .as_deref()
        .and_then(vouch_tee::TeeKind::parse)
        .ok_or_else(|| {
            tee(format!(
                "[agent.tee] command needs kind = one of sev-snp, tdx, sgx, nitro, \
                 az-snp-vtpm, az-tdx-vtpm (not {:?})",
                cfg.kind
            ))
        })?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| tee("[agent.tee] command is empty".into()))?;
    let data = hex::encode(report_data);
    let mut child = Command::new(program)
        .args(args.iter().map(|a| a.replace("{report_data}", &data)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("run {program}")))?;
    // Both pipes read on their own threads, bounded, so neither can block the child.
    let bounded = |pipe: Option<Box<dyn std::io::Read + Send>>, limit: u64| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(limit).read_to_end(&mut v);
            }
            v
        })
    };
    let limit = vouch_tee::input::MAX_INPUT as u64 + 1;
    let out = bounded(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        limit,
    );
    let err = bounded(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        4096,
    );
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(cfg.command_timeout_secs);
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(io(format!("wait for {program}")))?
        {
            break s;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(tee(format!(
                "{program} did not finish within {} s; killed",
                cfg.command_timeout_secs
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        return Err(tee(format!(
            "{program} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    let d = vouch_tee::input::decode(kind, &stdout)
        .map_err(|e| tee(format!("the output of {program}: {e}")))?;
    Ok(TeeReportBlob {
        tee: kind.as_str(),
        report: d.report,
        certs: d.certs,
    })
}

/// Ask the TEE for a report over `report_data` (64 bytes): through the configured command, or
/// configfs-tsm.
pub fn report(cfg: &TeeConfig, report_data: &[u8]) -> Result<TeeReportBlob, AgentError> {
    if report_data.len() != 64 {
        return Err(AgentError::Tee("report data must be 64 bytes".into()));
    }
    if let Some(argv) = &cfg.command {
        return from_command(cfg, argv, report_data);
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
            ..TeeConfig::default()
        };
        let e = report(&cfg, &[0; 64]).unwrap_err().to_string();
        assert!(e.contains("not a confidential VM"), "{e}");
        let e = report(&cfg, &[0; 32]).unwrap_err().to_string();
        assert!(e.contains("64 bytes"), "{e}");
    }

    fn command(kind: &str, argv: &[&str]) -> TeeConfig {
        TeeConfig {
            command: Some(argv.iter().map(|a| a.to_string()).collect()),
            kind: Some(kind.into()),
            ..TeeConfig::default()
        }
    }

    fn testdata(p: &str) -> String {
        vouch_testkit::testdata(p).display().to_string()
    }

    #[test]
    fn an_evidence_command_s_output_is_decoded_in_the_formats_tools_write() {
        // Veraison's configfs-tsm JSON (a real Genoa SEV-SNP report; its auxblob's PEM
        // certificates come out as DER, VCEK first).
        let f = testdata("snp/veraison_tsm_report.json");
        let b = report(&command("sev-snp", &["cat", &f]), &[7; 64]).unwrap();
        assert_eq!((b.tee, b.report.len(), b.certs.len()), ("sev-snp", 1184, 2));
        assert_eq!(b.certs[0].first(), Some(&0x30), "DER");
        assert!(b.certs[0].windows(8).any(|w| w == b"SEV-VCEK"));
        // Trustee's Azure vTPM evidence, passed on whole for the verifier.
        let f = testdata("azure/snp/evidence-v1.json");
        let b = report(&command("az-snp-vtpm", &["cat", &f]), &[7; 64]).unwrap();
        assert_eq!(b.tee, "az-snp-vtpm");
        assert!(
            b.report == std::fs::read(&f).unwrap().trim_ascii(),
            "the JSON, whole"
        );
        // A report as hex text.
        let f = testdata("snp/virtee_report_milan.hex");
        let b = report(&command("sev-snp", &["cat", &f]), &[7; 64]).unwrap();
        assert_eq!(b.report.len(), 1184);
    }

    #[test]
    fn an_evidence_command_gets_the_report_data_and_its_failures_are_named() {
        // The argument carries the report data as hex: printed back, it decodes to those 64
        // bytes, which are no SEV-SNP report (so the decoder names their size and encoding).
        let e = report(
            &command("sev-snp", &["printf", "%s", "{report_data}"]),
            &[0xab; 64],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("these 64 bytes (hex)"), "{e}");
        // An Azure HCL report alone, where the vTPM evidence JSON is expected.
        let f = testdata("azure/snp/hcl-report.bin");
        let e = report(&command("az-snp-vtpm", &["cat", &f]), &[0; 64])
            .unwrap_err()
            .to_string();
        assert!(e.contains("vTPM quote is needed"), "{e}");
        let e = report(
            &command("sev-snp", &["sh", "-c", "echo nope >&2; exit 3"]),
            &[0; 64],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("failed") && e.contains("nope"), "{e}");
        let mut slow = command("sev-snp", &["sleep", "10"]);
        slow.command_timeout_secs = 1;
        let t = std::time::Instant::now();
        let e = report(&slow, &[0; 64]).unwrap_err().to_string();
        assert!(e.contains("did not finish within 1 s"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let e = report(&command("tpm", &["true"]), &[0; 64])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs kind"), "{e}");
    }
}

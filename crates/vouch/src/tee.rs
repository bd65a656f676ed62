//! `vouch tee verify`: confidential-computing evidence checked against vendor roots from an
//! offline store, at an injectable time, and appraised by a policy as the verifier would.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use vouch_core::ArStatus;
use vouch_tee::{TeeKind, TeeRoots};

use crate::cli::TeeCmd;
use crate::output;

/// Raw bytes, or base64 text decoded.
fn read_blob(p: &Path) -> Result<Vec<u8>> {
    let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let text = std::str::from_utf8(&b).ok().map(str::trim);
    match text {
        Some(t) if !t.is_empty() && !t.starts_with("-----BEGIN") => {
            match base64::engine::general_purpose::STANDARD.decode(t) {
                Ok(d) => Ok(d),
                Err(_) => Ok(b),
            }
        }
        _ => Ok(b),
    }
}

/// Certificates from PEM (several) or DER files, in order.
fn read_certs(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in paths {
        let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        match std::str::from_utf8(&b) {
            Ok(t) if t.contains("-----BEGIN") => out.extend(vouch_x509::pem_certificates(t)),
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// The policy input of verified TEE evidence.
pub fn policy_input(claims: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "evidence": {"kind": "tee", "signature_verified": true, "hardware_backed": true},
        "tee": claims,
    })
}

pub fn run(cmd: TeeCmd, json: bool) -> Result<ExitCode> {
    let TeeCmd::Verify {
        kind,
        report,
        certs,
        roots,
        collateral,
        at,
        report_data,
        policy,
        refvalues,
    } = cmd;
    let kind = TeeKind::parse(&kind).context("unknown TEE kind")?;
    let mut roots = if roots.is_dir() {
        TeeRoots::from_dir(&roots)?
    } else {
        TeeRoots::from_certs(&read_certs(std::slice::from_ref(&roots))?)?
    };
    if let Some(dir) = &collateral {
        roots.add_collateral_dir(dir)?;
    }
    let now = at.unwrap_or_else(vouch_server::unix_now);
    let v = roots.verify(kind, &read_blob(&report)?, &read_certs(&certs)?, now)?;
    if let Some(want) = report_data {
        let want = hex::decode(want.trim()).context("--report-data is not hex")?;
        if want != v.report_data {
            bail!(
                "the evidence binds report data {}, not the expected {}",
                hex::encode(&v.report_data),
                hex::encode(&want)
            );
        }
    }
    let appraisal = match &policy {
        Some(p) => {
            let values = match &refvalues {
                Some(r) => crate::commands::read_refvalues(r)?,
                None => Vec::new(),
            };
            Some(crate::commands::appraise_with(
                p,
                values,
                &policy_input(&v.claims),
            )?)
        }
        None => None,
    };
    if json {
        output::json(&serde_json::json!({"tee": v.claims, "appraisal": appraisal}))?;
    } else {
        let c = &v.claims;
        println!("verified {} evidence at {now}", kind.as_str());
        for k in ["measurement", "signer", "debug", "tcb", "report_data"] {
            println!("  {k:<12} {}", c[k]);
        }
        if let Some(a) = &appraisal {
            print!("{}", a.explain());
        }
    }
    Ok(match appraisal {
        Some(a) if a.status != ArStatus::Affirming => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

//! The verifier's keys: result-signing key rotation (`vouch key`), the trust-domain CA set
//! (`vouch ca`) and threshold key shares for a quorum of replicas (`vouch quorum`).

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

use vouch_server::unix_now;

use super::server_config;
use crate::cli::{CaCmd, KeyCmd};
use crate::config::FileConfig;
use crate::output;

/// `vouch key rotate`: make a new result-signing key active.
pub(crate) async fn key(file: FileConfig, cmd: KeyCmd, json: bool) -> Result<ExitCode> {
    let KeyCmd::Rotate { alg, store } = cmd;
    let cfg = server_config(&file, &store);
    let alg = match alg.as_str() {
        "ES256" => vouch_server::SigningAlg::ES256,
        _ => vouch_server::SigningAlg::EdDSA,
    };
    let dir: PathBuf = cfg.data_dir.join("keys");
    let kid = vouch_server::Keyring::rotate(&dir, alg, unix_now())?;
    if json {
        output::json(&serde_json::json!({"kid": kid}))?;
    } else {
        println!(
            "new signing key {kid} is active; the previous key stays in the JWKS for {}s",
            cfg.retired_key_grace
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch ca`: show the trust-domain CA set, prepare the next CA, or activate it.
pub(crate) fn ca(file: FileConfig, cmd: CaCmd, json: bool) -> Result<ExitCode> {
    let (CaCmd::Show { store } | CaCmd::Prepare { store } | CaCmd::Activate { store }) = &cmd;
    let cfg = server_config(&file, store);
    let td = vouch_identity::TrustDomain::parse(&cfg.trust_domain)?;
    let dir = cfg.spiffe_dir();
    let now = unix_now();
    let mut set = if cfg.svid_ca_pkcs11.is_some() {
        let p = cfg.svid_ca_pkcs11.as_ref().context("pkcs11")?;
        let active = vouch_identity::SvidCa::open_pkcs11(p, &dir, &td, cfg.svid_ca_ttl, now)?;
        vouch_identity::CaSet::around(&dir, &td, active)?
    } else {
        vouch_identity::CaSet::load_or_create(&dir, &td, cfg.svid_ca_ttl, now)?
    };
    match cmd {
        CaCmd::Show { .. } => {}
        CaCmd::Prepare { .. } => set.prepare(cfg.svid_ca_ttl, now)?,
        CaCmd::Activate { .. } => set.activate(cfg.svid_ttl, now)?,
    }
    let describe = |der: &[u8]| -> serde_json::Value {
        use sha2::Digest as _;
        let (from, until) = x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            })
            .unwrap_or((0, 0));
        serde_json::json!({
            "sha256": hex::encode(sha2::Sha256::digest(der)),
            "not_before": from,
            "not_after": until,
        })
    };
    let role = |der: &[u8]| {
        if der == set.active().cert_der() {
            "active"
        } else if set.next().is_some_and(|n| n.cert_der() == der) {
            "next"
        } else {
            "retired"
        }
    };
    let authorities: Vec<serde_json::Value> = set
        .authorities(now)
        .into_iter()
        .map(|d| {
            let mut v = describe(d);
            v["role"] = serde_json::json!(role(d));
            v
        })
        .collect();
    if json {
        output::json(&serde_json::json!({
            "trust_domain": td.as_str(),
            "sequence": set.sequence(),
            "authorities": authorities,
        }))?;
    } else {
        println!("trust domain {td}, bundle sequence {}", set.sequence());
        for a in &authorities {
            let until = a["not_after"].as_u64().unwrap_or(0);
            println!(
                "  {:<8} sha256:{}  expires in {} days (unix {until})",
                a["role"].as_str().unwrap_or(""),
                a["sha256"].as_str().unwrap_or(""),
                until.saturating_sub(now) / 86_400,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch quorum`: deal or generate (DKG) threshold key shares.
pub(crate) fn quorum(cmd: crate::cli::QuorumCmd, json: bool) -> Result<ExitCode> {
    use crate::cli::QuorumCmd;
    use vouch_server::quorum::{dealer, dkg};
    let written = match cmd {
        QuorumCmd::Dealer {
            threshold,
            signers,
            out,
        } => dealer(threshold, signers, &out)?,
        QuorumCmd::Dkg {
            step,
            id,
            threshold,
            signers,
            dir,
        } => match step.as_str() {
            "round1" => vec![dkg::round1(id, threshold, signers, &dir)?],
            "round2" => dkg::round2(id, signers, &dir)?,
            _ => vec![dkg::finish(id, signers, &dir)?],
        },
    };
    if json {
        output::json(&written)?;
    } else {
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

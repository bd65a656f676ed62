//! The verifier's keys: result-signing key rotation (`vouch key`) and the trust-domain CA set
//! (`vouch ca`), both through the verifier's admin API, and threshold key shares for a quorum
//! of replicas (`vouch quorum`, files on this machine).

use anyhow::Result;
use serde_json::json;
use std::process::ExitCode;

use vouch_server::unix_now;

use super::remote::Api;
use crate::cli::{CaCmd, KeyCmd};
use crate::output;

/// `vouch key`: show the signing keys, or make a new one active.
pub(crate) async fn key(cmd: KeyCmd, json: bool) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Show { api } => {
            let v = Api::new(&api)?.get("/v1/keys").await?;
            if json {
                output::json(&v)?;
            } else {
                println!("active {}", v["active"].as_str().unwrap_or("(none)"));
                for k in v["jwks"]["keys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "  {} {}",
                        k["kid"].as_str().unwrap_or(""),
                        k["alg"].as_str().unwrap_or("")
                    );
                }
            }
        }
        KeyCmd::Rotate { alg, api } => {
            let v = Api::new(&api)?
                .post("/v1/keys/rotate", &json!({ "alg": alg }))
                .await?;
            let kid = v["kid"].as_str().unwrap_or("");
            if json {
                output::json(&json!({ "kid": kid }))?;
            } else {
                println!(
                    "new signing key {kid} is active; the previous key stays in the JWKS for {}s",
                    v["grace"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch ca`: show the trust-domain CA set, prepare the next CA, or activate it.
pub(crate) async fn ca(cmd: CaCmd, json: bool) -> Result<ExitCode> {
    let v = match &cmd {
        CaCmd::Show { api } => Api::new(api)?.get("/v1/ca").await?,
        CaCmd::Prepare { api } => Api::new(api)?.post("/v1/ca/prepare", &json!({})).await?,
        CaCmd::Activate { api } => Api::new(api)?.post("/v1/ca/activate", &json!({})).await?,
    };
    if json {
        output::json(&v)?;
    } else {
        let now = unix_now();
        println!(
            "trust domain {}, bundle sequence {}",
            v["trust_domain"].as_str().unwrap_or(""),
            v["sequence"]
        );
        for a in v["authorities"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
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

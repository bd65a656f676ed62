//! `vouch tpm …`: TPM tools for operators and debugging.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

use vouch_tpm::{
    Ak, HashAlg, QuotePolicy, RH_ENDORSEMENT, TpmtPublic, parse_tpm2_tools_pcrs, qualified_name,
    verify_quote,
};

use crate::cli::TpmCmd;
use crate::output;

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// A PEM SubjectPublicKeyInfo → DER.
fn pem_to_der(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

pub fn run(cmd: TpmCmd, json: bool) -> Result<ExitCode> {
    let TpmCmd::VerifyQuote {
        ak,
        ek,
        message,
        signature,
        pcrs,
        nonce,
        allow_sha1,
    } = cmd;
    let ak_bytes = read(&ak)?;
    let ak_key = match TpmtPublic::from_tpm2b(&ak_bytes) {
        Ok(public) => {
            let parent_qn = match &ek {
                Some(p) => {
                    let ek = TpmtPublic::from_tpm2b(&read(p)?)
                        .with_context(|| format!("{} is not a TPM2B_PUBLIC", p.display()))?;
                    qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name())
                }
                None => Vec::new(),
            };
            let mut k = Ak::from_public(&public, &parent_qn)?;
            if ek.is_none() {
                k.qualified_name = None;
            }
            k
        }
        Err(e) => {
            let text = String::from_utf8_lossy(&ak_bytes);
            let der = if text.contains("-----BEGIN") {
                pem_to_der(&text).context("AK PEM is not base64")?
            } else {
                ak_bytes.clone()
            };
            if der.first() != Some(&0x30) {
                anyhow::bail!(
                    "{} is neither a TPM2B_PUBLIC ({e}) nor a SubjectPublicKeyInfo",
                    ak.display()
                );
            }
            Ak::from_spki(&der)
        }
    };
    let nonce = hex::decode(nonce.trim().trim_start_matches("0x"))
        .context("--nonce must be hex, as given to tpm2_quote -q")?;
    let values = parse_tpm2_tools_pcrs(&read(&pcrs)?)?;
    let mut policy = QuotePolicy::default();
    if allow_sha1 {
        policy.allowed_hashes.push(HashAlg::Sha1);
    }
    match verify_quote(
        &ak_key,
        &read(&message)?,
        &read(&signature)?,
        &values,
        &nonce,
        &policy,
    ) {
        Ok(c) => {
            if json {
                output::json(&c)?;
            } else {
                println!("quote verified ({})", c.signature);
                println!("  magic, type        TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE");
                if c.qualified_signer_checked {
                    println!("  qualifiedSigner    {} = AK under EK", c.qualified_signer);
                } else {
                    println!(
                        "  qualifiedSigner    {} NOT CHECKED (give --ek with a TPM2B_PUBLIC AK)",
                        c.qualified_signer
                    );
                }
                println!("  extraData          matches --nonce");
                println!(
                    "  clock              {} ms, resetCount {}, restartCount {}, safe {}",
                    c.clock.clock, c.clock.reset_count, c.clock.restart_count, c.clock.safe
                );
                println!("  firmwareVersion    0x{:016x}", c.firmware_version);
                println!("  pcrSelect, digest  match the PCR values:");
                for (bank, pcrs) in &c.pcrs {
                    for (i, v) in pcrs {
                        println!("    {bank}:{i:<2} {v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

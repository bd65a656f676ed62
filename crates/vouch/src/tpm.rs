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
    let (ak, ek, message, signature, pcrs, nonce, allow_sha1) = match cmd {
        TpmCmd::VerifyQuote {
            ak,
            ek,
            message,
            signature,
            pcrs,
            nonce,
            allow_sha1,
        } => (ak, ek, message, signature, pcrs, nonce, allow_sha1),
        TpmCmd::Bench {
            evidence,
            tcti,
            n,
            eventlog,
        } => return bench(&evidence, eventlog.as_deref(), tcti, n, json),
        TpmCmd::Eventlog { file, pcrs } => return eventlog(&file, pcrs.as_deref(), json),
    };
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
                output::json(&serde_json::json!({"quote": c, "pcrs": values.to_hex()}))?;
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
                for (bank, pcrs) in &values.to_hex() {
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

struct Case {
    name: String,
    ak: Ak,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: vouch_tpm::PcrValues,
    nonce: Vec<u8>,
}

fn trustee_case(path: &Path) -> Result<Case> {
    use base64::Engine as _;
    let b64 =
        |v: &serde_json::Value| -> Result<Vec<u8>> {
            Ok(base64::engine::general_purpose::STANDARD
                .decode(v.as_str().context("not a string")?)?)
        };
    let v: serde_json::Value = serde_json::from_slice(&read(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let q = &v["tpm_quote"];
    let mut bank = std::collections::BTreeMap::new();
    for (i, p) in q["pcrs"].as_array().context("pcrs")?.iter().enumerate() {
        bank.insert(i as u8, hex::decode(p.as_str().context("pcr")?)?);
    }
    let mut pcrs = vouch_tpm::PcrValues::default();
    pcrs.0.insert(HashAlg::Sha256, bank);
    let attest = b64(&q["message"])?;
    let nonce = vouch_tpm::TpmsAttest::parse(&attest)?.extra_data;
    Ok(Case {
        name: "rsa-2048 (Trustee sample)".into(),
        ak: Ak::from_spki(&b64(&v["ak_public"])?),
        attest,
        signature: b64(&q["signature"])?,
        pcrs,
        nonce,
    })
}

fn tpm_case(tcti: &str, alg: &str) -> Result<Case> {
    let dir = std::env::temp_dir().join(format!("vouch-tpm-bench-{}-{alg}", std::process::id()));
    let tpm = vouch_agent::Tpm::new(
        vouch_agent::TpmConfig {
            tcti: tcti.into(),
            key_alg: alg.into(),
            pcrs: (0..8).collect(),
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        },
        &dir,
    );
    let id = tpm.identity()?;
    let nonce = vec![0x42; 32];
    let q = tpm.quote(&nonce)?;
    let _ = std::fs::remove_dir_all(&dir);
    let ek = TpmtPublic::from_tpm2b(&id.ek_public)?;
    let ak = TpmtPublic::from_tpm2b(&id.ak_public)?;
    Ok(Case {
        name: format!("{alg} (quote from {tcti})"),
        ak: Ak::from_public(
            &ak,
            &qualified_name(ek.name_alg, &RH_ENDORSEMENT.to_be_bytes(), &ek.name()),
        )?,
        attest: q.attest,
        signature: q.signature,
        pcrs: q.pcrs,
        nonce,
    })
}

fn bench(
    evidence: &Path,
    eventlog: Option<&Path>,
    tcti: Option<String>,
    n: u32,
    json: bool,
) -> Result<ExitCode> {
    let mut cases = vec![trustee_case(evidence)?];
    if let Some(t) = &tcti {
        cases.push(tpm_case(t, "rsa")?);
        cases.push(tpm_case(t, "ecc")?);
    }
    let policy = QuotePolicy::default();
    let mut report = Vec::new();
    for c in &cases {
        // Full verification: parse, every field check, PCR digest, signature.
        verify_quote(&c.ak, &c.attest, &c.signature, &c.pcrs, &c.nonce, &policy)?;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(verify_quote(
                &c.ak,
                &c.attest,
                &c.signature,
                &c.pcrs,
                &c.nonce,
                &policy,
            )?);
        }
        let full = t.elapsed() / n;
        // The raw signature check alone over the same bytes.
        vouch_tpm::raw_signature_check(&c.ak, &c.attest, &c.signature)?;
        let t = std::time::Instant::now();
        for _ in 0..n {
            vouch_tpm::raw_signature_check(&c.ak, &c.attest, &c.signature)?;
        }
        let sig = t.elapsed() / n;
        let overhead = (full.as_secs_f64() / sig.as_secs_f64() - 1.0) * 100.0;
        report.push(serde_json::json!({
            "case": c.name, "verify_quote_us": full.as_secs_f64() * 1e6,
            "signature_only_us": sig.as_secs_f64() * 1e6, "overhead_percent": overhead,
        }));
        if !json {
            println!(
                "{:<40} verify_quote {:>8.1} us   signature alone {:>8.1} us   parsing + checks +{overhead:.1}%",
                c.name,
                full.as_secs_f64() * 1e6,
                sig.as_secs_f64() * 1e6
            );
        }
    }
    if let Some(eventlog) = eventlog {
        report.push(bench_eventlog(eventlog, &cases[0], n, json)?);
    }
    if json {
        output::json(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The event log as the verifier handles it with each quote: parse, replay every bank, check
/// against the quoted values, derive the claims; against the signature check of `c`.
fn bench_eventlog(eventlog: &Path, c: &Case, n: u32, json: bool) -> Result<serde_json::Value> {
    let bytes = read(eventlog)?;
    let parsed = vouch_tpm::EventLog::parse(&bytes)?;
    // As the agent quotes: the SHA-256 bank (or the log's first bank when it has none).
    let bank = parsed
        .banks()
        .into_iter()
        .find(|b| *b == vouch_tpm::HashAlg::Sha256)
        .or_else(|| parsed.banks().first().copied())
        .context("the event log has no bank this verifier can hash")?;
    let quoted = parsed.replay_banks(&[bank]);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let log = vouch_tpm::EventLog::parse(&bytes)?;
        let checked = log.check(&quoted)?;
        if let Some((bank, pcrs)) = checked.iter().next() {
            std::hint::black_box(log.claims(*bank, pcrs));
        }
    }
    let el = t.elapsed() / n;
    let t = std::time::Instant::now();
    for _ in 0..n {
        vouch_tpm::raw_signature_check(&c.ak, &c.attest, &c.signature)?;
    }
    let sig = t.elapsed() / n;
    let ratio = el.as_secs_f64() / sig.as_secs_f64();
    let row = serde_json::json!({
        "case": format!("event log {} ({} events, {} banks, {} quoted)", eventlog.display(), parsed.events.len(), parsed.banks().len(), bank.name()),
        "eventlog_us": el.as_secs_f64() * 1e6,
        "signature_only_us": sig.as_secs_f64() * 1e6,
        "eventlog_over_signature": ratio,
    });
    if !json {
        println!(
            "{:<40} parse+replay+check+claims {:>8.1} us   = {ratio:.2}x the RSA signature check ({:.1} us)",
            format!(
                "event log, {} events, {} banks",
                parsed.events.len(),
                parsed.banks().len()
            ),
            el.as_secs_f64() * 1e6,
            sig.as_secs_f64() * 1e6
        );
    }
    Ok(row)
}

/// `vouch tpm eventlog FILE [--pcrs FILE]`
fn eventlog(
    file: &std::path::Path,
    pcrs: Option<&std::path::Path>,
    json: bool,
) -> Result<ExitCode> {
    let log = vouch_tpm::EventLog::parse(&read(file)?)
        .with_context(|| format!("{} is not a TCG event log", file.display()))?;
    let replayed = log.replay();
    let quoted = match pcrs {
        Some(p) => Some(vouch_tpm::parse_tpm2_tools_pcrs(&read(p)?)?),
        None => None,
    };
    let check = quoted.as_ref().map(|q| log.check(q));
    // Claims over every PCR the log touches (when checked: over those the check covered).
    let (bank, verified) = match &check {
        Some(Ok(c)) => c
            .iter()
            .find(|(b, _)| **b == vouch_tpm::HashAlg::Sha256)
            .or_else(|| c.iter().next())
            .map(|(b, s)| (*b, s.clone()))
            .context("no bank checked")?,
        _ => {
            let bank = log
                .banks()
                .into_iter()
                .find(|b| *b == vouch_tpm::HashAlg::Sha256)
                .or_else(|| log.banks().first().copied())
                .context("the event log has no bank this verifier can hash")?;
            (bank, (0..24).collect())
        }
    };
    let claims = log.claims(bank, &verified);
    if json {
        let events: Vec<_> = log
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "index": e.index,
                    "pcr": e.pcr,
                    "type": vouch_tpm::event_type_name(e.event_type),
                    "digests": e.digests.iter().map(|(a, d)| (
                        vouch_tpm::HashAlg::from_id(*a).map(|h| h.name().to_string())
                            .unwrap_or_else(|_| format!("0x{a:04x}")),
                        hex::encode(d),
                    )).collect::<std::collections::BTreeMap<_, _>>(),
                    "data_measured": e.data_is_measured(bank),
                    "data": hex::encode(&e.data),
                })
            })
            .collect();
        let out = serde_json::json!({
            "spec": log.spec,
            "startup_locality": log.startup_locality,
            "events": events,
            "replayed": replayed.to_hex(),
            "check": check.as_ref().map(|c| match c {
                Ok(_) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
            }),
            "claims": claims,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match &log.spec {
            Some(s) => {
                let algs: Vec<String> = s
                    .algorithms
                    .iter()
                    .map(|(a, _)| {
                        vouch_tpm::HashAlg::from_id(*a)
                            .map(|h| h.name().to_string())
                            .unwrap_or_else(|_| format!("0x{a:04x}"))
                    })
                    .collect();
                println!(
                    "crypto-agile log, spec {}.{} errata {}, banks {}",
                    s.spec_version.0,
                    s.spec_version.1,
                    s.spec_version.2,
                    algs.join(",")
                );
            }
            None => println!("legacy SHA-1 log"),
        }
        for e in &log.events {
            let d = e.digest(bank).map(hex::encode).unwrap_or_default();
            let text = if e.data_is_measured(bank)
                && e.data
                    .iter()
                    .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == 0)
            {
                format!(
                    " {:?}",
                    String::from_utf8_lossy(&e.data).trim_end_matches('\0')
                )
            } else {
                format!(" ({} bytes)", e.data.len())
            };
            println!(
                "{:4} PCR{:<2} {:<34} {}:{}{}",
                e.index,
                e.pcr,
                vouch_tpm::event_type_name(e.event_type),
                bank.name(),
                d,
                text
            );
        }
        println!("replayed:");
        for (b, values) in &replayed.0 {
            for (i, v) in values {
                println!("  {}:{i:<2} {}", b.name(), hex::encode(v));
            }
        }
        println!("claims: {}", serde_json::to_string(&claims)?);
        match &check {
            Some(Ok(c)) => {
                for (b, set) in c {
                    println!("replay matches the quoted {} PCRs {:?}", b.name(), set);
                }
            }
            Some(Err(e)) => println!("MISMATCH: {e}"),
            None => {}
        }
    }
    Ok(match check {
        Some(Err(_)) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

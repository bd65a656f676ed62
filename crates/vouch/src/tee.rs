//! `vouch tee verify`: confidential-computing evidence checked against vendor roots from an
//! offline store, at an injectable time, and appraised by a policy as the verifier would.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vouch_core::ArStatus;
use vouch_tee::{TeeKind, TeeRoots};

use crate::cli::TeeCmd;
use crate::output;

/// Evidence of `kind` from a file, in whatever format a tool wrote it (raw, base64, hex,
/// configfs-tsm JSON, an SEV-SNP extended report: see [`vouch_tee::input`]): the report and
/// the certificates that came with it.
fn read_evidence(kind: TeeKind, p: &Path) -> Result<vouch_tee::input::Decoded> {
    let b = read_bounded(p)?;
    vouch_tee::input::decode(kind, &b).with_context(|| format!("{}", p.display()))
}

/// A file of at most [`vouch_tee::input::MAX_INPUT`] bytes (one over is read, so the decoder
/// says it is too large).
fn read_bounded(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    let mut b = Vec::new();
    f.take(vouch_tee::input::MAX_INPUT as u64 + 1)
        .read_to_end(&mut b)
        .with_context(|| format!("reading {}", p.display()))?;
    Ok(b)
}

/// Certificates from PEM (several), DER, or SEV-SNP certificate table files, in order.
fn read_certs(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in paths {
        let b = read_bounded(p)?;
        out.extend(vouch_tee::input::decode_certs(&b).with_context(|| format!("{}", p.display()))?);
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

/// Everything one verification needs, loaded once.
struct Loaded {
    kind: TeeKind,
    roots: TeeRoots,
    report: Vec<u8>,
    certs: Vec<Vec<u8>>,
    now: u64,
}

fn load(i: &crate::cli::TeeInput) -> Result<Loaded> {
    let kind = TeeKind::parse(&i.kind).context("unknown TEE kind")?;
    let mut roots = if i.roots.is_dir() {
        TeeRoots::from_dir(&i.roots)?
    } else {
        TeeRoots::from_certs(&read_certs(std::slice::from_ref(&i.roots))?)?
    };
    if let Some(dir) = &i.collateral {
        roots.add_store_dir(dir)?;
    }
    let evidence = read_evidence(kind, &i.report)?;
    // Certificates given with --cert come first; those that came with the evidence (a
    // configfs-tsm auxblob, an extended report's table) follow.
    let mut certs = read_certs(&i.certs)?;
    certs.extend(evidence.certs);
    Ok(Loaded {
        kind,
        roots,
        report: evidence.report,
        certs,
        now: i.at.unwrap_or_else(vouch_server::unix_now),
    })
}

pub fn run(cmd: TeeCmd, json: bool) -> Result<ExitCode> {
    let (input, report_data, policy, refvalues) = match cmd {
        TeeCmd::Verify {
            input,
            report_data,
            policy,
            refvalues,
        } => (input, report_data, policy, refvalues),
        TeeCmd::Bench {
            input,
            n,
            composite,
        } => {
            let l = load(&input)?;
            if composite {
                return composite_bench(&l, n, json);
            }
            return bench(&l, n, json);
        }
    };
    let l = load(&input)?;
    let (kind, now) = (l.kind, l.now);
    let v = l.roots.verify(kind, &l.report, &l.certs, now)?;
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

/// Verifications per second of `l`, against the ECDSA verifies its own signatures cost
/// (SEV-SNP and Nitro: one P-384; TDX and SGX: two P-256, the quote and the QE report).
/// The default policy over `composite` claims (three evaluations) against `tee` claims (one),
/// both with this machine's real software measurements and the verified TEE claims.
fn composite_bench(l: &Loaded, n: u32, json: bool) -> Result<ExitCode> {
    use vouch_evidence::{
        AgentKey, CollectConfig, EvidenceVerifier, SoftwareCollector, SoftwareVerifier,
        VerifyContext, composite_claims, sign_software_evidence,
    };
    let n = n.clamp(10, 2000);
    let tee = l.roots.verify(l.kind, &l.report, &l.certs, l.now)?.claims;
    let mut collector = SoftwareCollector::new(CollectConfig {
        workload_name: "bench".into(),
        exe: std::env::current_exe()?,
        files: Vec::new(),
        image_digest: None,
        root: "/".into(),
    });
    let key = AgentKey::generate()?;
    let ev = sign_software_evidence(&key, "k", &collector.collect("n", 0)?)?;
    let software = SoftwareVerifier
        .verify(
            &ev,
            &VerifyContext {
                public_key: key.public_key(),
                signers: &[],
                tpm: None,
                tee: None,
                now: 0,
                parts: None,
            },
        )?
        .claims;
    let mut alone = software.clone();
    alone["evidence"]["kind"] = "tee".into();
    alone["evidence"]["hardware_backed"] = true.into();
    alone["tee"] = tee.clone();
    let tpm = serde_json::json!({"pcrs": {"sha256": {}}, "eventlog": null, "ima": null});
    let (whole, parts) = composite_claims(software, tpm, l.kind, tee);
    let policy = vouch_policy::CompiledPolicy::compile(
        &vouch_policy::PolicySource {
            id: "default".into(),
            version: 1,
            rego: vouch_policy::DEFAULT_POLICY.into(),
        },
        &vouch_policy::ReferenceValues::default(),
    )?;
    let time = |f: &dyn Fn() -> Result<()>| -> Result<std::time::Duration> {
        f()?;
        let t = std::time::Instant::now();
        for _ in 0..n {
            f()?;
        }
        Ok(t.elapsed() / n)
    };
    let one = time(&|| {
        std::hint::black_box(policy.appraise(&alone)?);
        Ok(())
    })?;
    let three = time(&|| {
        std::hint::black_box(policy.appraise_components(&whole, &parts)?);
        Ok(())
    })?;
    let ratio = three.as_secs_f64() / one.as_secs_f64();
    let processes = whole["processes"].as_array().map_or(0, Vec::len);
    if json {
        output::json(&serde_json::json!({
            "kind": l.kind.as_str(), "n": n, "processes": processes,
            "tee_appraisal_us": one.as_secs_f64() * 1e6,
            "composite_appraisal_us": three.as_secs_f64() * 1e6, "ratio": ratio,
        }))?;
    } else {
        println!(
            "default policy, {processes} processes: {:.1} µs for tee evidence, {:.1} µs for \
             composite (whole + tpm + {}): {ratio:.2}x",
            one.as_secs_f64() * 1e6,
            three.as_secs_f64() * 1e6,
            l.kind.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(l: &Loaded, n: u32, json: bool) -> Result<ExitCode> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
        ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
    };
    let n = n.max(10);
    l.roots.verify(l.kind, &l.report, &l.certs, l.now)?;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(l.roots.verify(l.kind, &l.report, &l.certs, l.now)?);
    }
    let full = t.elapsed() / n;
    let (alg_sign, alg_verify, count, what) = match l.kind {
        TeeKind::SevSnp | TeeKind::Nitro | TeeKind::AzSnpVtpm => (
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &ECDSA_P384_SHA384_FIXED,
            1u32,
            "1 ECDSA P-384 verify",
        ),
        TeeKind::Tdx | TeeKind::Sgx | TeeKind::AzTdxVtpm => (
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ECDSA_P256_SHA256_FIXED,
            2,
            "2 ECDSA P-256 verifies",
        ),
    };
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::generate(alg_sign)?;
    let msg = &l.report[..l.report.len().min(1024)];
    let sig = key.sign(&rng, msg)?;
    let pk = UnparsedPublicKey::new(alg_verify, key.public_key().as_ref().to_vec());
    let t = std::time::Instant::now();
    for _ in 0..n * count {
        pk.verify(msg, sig.as_ref())
            .map_err(|_| anyhow::anyhow!("raw verify failed"))?;
    }
    let raw = t.elapsed() / n;
    let ratio = full.as_secs_f64() / raw.as_secs_f64();
    if json {
        output::json(&serde_json::json!({
            "kind": l.kind.as_str(), "n": n, "verify_us": full.as_secs_f64() * 1e6,
            "raw_us": raw.as_secs_f64() * 1e6, "raw": what, "ratio": ratio,
        }))?;
    } else {
        println!(
            "{}: {:.1} µs per verification, {:.1} µs for {what}: {ratio:.2}x",
            l.kind.as_str(),
            full.as_secs_f64() * 1e6,
            raw.as_secs_f64() * 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

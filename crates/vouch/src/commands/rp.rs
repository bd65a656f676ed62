//! Relying-party commands: check an attestation result (`vouch verify`) and follow the gossiped
//! revocations as a relying party would (`vouch rp watch`).

use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::Arc;

use vouch_core::{ArStatus, TrustClaim, TrustTier};
use vouch_rp::{Audience, Requirements, ResultVerifier};
use vouch_server::unix_now;

use super::shutdown_signal;
use crate::cli::VerifyArgs;
use crate::commands::timestamp::{Source, read_source_or_unreachable as read_source};
use crate::output;

/// Read a token argument: literal, file, or `-`.
fn read_token(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s.trim().to_string());
    }
    if arg.matches('.').count() == 2 && !std::path::Path::new(arg).exists() {
        return Ok(arg.trim().to_string());
    }
    Ok(std::fs::read_to_string(arg)
        .with_context(|| format!("{arg} is neither a JWT nor a readable file"))?
        .trim()
        .to_string())
}

/// A `--require CLAIM=TIER` flag.
fn parse_requirement(s: &str) -> Result<(TrustClaim, TrustTier)> {
    let (c, t) = s
        .split_once('=')
        .with_context(|| format!("--require {s}: expected CLAIM=TIER, e.g. hardware=affirming"))?;
    let claim = TrustClaim::parse(c).with_context(|| {
        format!("unknown trust claim {c:?} (instance-identity, configuration, executables, file-system, hardware, runtime-opaque, storage-opaque, sourced-data)")
    })?;
    let tier = ArStatus::parse(t)
        .filter(|t| *t != ArStatus::None)
        .with_context(|| format!("unknown tier {t:?} (affirming, warning, contraindicated)"))?;
    Ok((claim, tier))
}

/// `vouch verify`: check a result token; exits 0 when it is valid and meets the requirements,
/// 1 when it is rejected, 2 on a local error, 3 when the JWKS URL cannot be fetched.
pub(crate) async fn verify(args: VerifyArgs, json: bool) -> Result<ExitCode> {
    let token = read_token(&args.token)?;
    let bundle = match &args.trust_bundle {
        Some(p) => Some(load_trust_bundle(p, &args.trust_domain)?),
        None => None,
    };
    let signatures = match args.signatures {
        crate::cli::SignaturesArg::Classical => vouch_rp::SignatureMode::Classical,
        crate::cli::SignaturesArg::PostQuantum => vouch_rp::SignatureMode::PostQuantum,
        crate::cli::SignaturesArg::Both => vouch_rp::SignatureMode::Both,
    };
    let jwks = match &args.jwks {
        Some(j) => match read_source(j, args.ca_cert.as_deref(), Source::Jwks).await? {
            Some(j) => Some(j),
            None => return Ok(ExitCode::from(3)),
        },
        None => None,
    };
    let mut v = match (&jwks, &bundle) {
        (Some(j), _) => ResultVerifier::from_jwks_json(j)?,
        (None, Some(b)) => ResultVerifier::from_trust_bundle(b.clone()),
        (None, None) => anyhow::bail!("give --jwks or --trust-bundle"),
    };
    if let (Some(b), Some(_)) = (&bundle, &args.jwks) {
        v = v.with_trust_bundle(b.clone());
    }
    let revoked = match (&args.revocations, &bundle) {
        (Some(p), Some(b)) => {
            let max_age = crate::config::parse_duration(&args.max_revocation_age)
                .context("--max-revocation-age")?;
            let mut set = vouch_rp::RevocationSet::new(b.clone())
                .with_max_age(std::time::Duration::from_secs(max_age));
            // The post-quantum modes hold revocations to the same standard as the result: each
            // record and head must carry a verifying ML-DSA-65 signature (the feed's
            // `records_pq`/`head_pq`).
            if signatures != vouch_rp::SignatureMode::Classical {
                let j = jwks.as_deref().context(
                    "--signatures post-quantum|both with --revocations needs --jwks (the ML-DSA-65 keys)",
                )?;
                set = set.with_signatures(signatures, j)?;
            }
            let Some(feed) = read_source(p, args.ca_cert.as_deref(), Source::Revocations).await?
            else {
                return Ok(ExitCode::from(3));
            };
            set.load_json(feed.as_bytes(), unix_now())
                .with_context(|| format!("loading revocations from {p}"))?;
            Some(set)
        }
        _ => None,
    };
    let audience = match (args.audience, args.any_audience) {
        (Some(a), _) => Audience::Required(a),
        (None, true) => Audience::Unchecked,
        // clap requires one of the two; were neither given, verification would refuse.
        (None, false) => Audience::Unset,
    };
    let mut req = Requirements {
        audience,
        nonce: args.nonce,
        accept_warning: args.accept_warning,
        submods: args.require_submods,
        evidence_kinds: args.evidence_kinds,
        tenant: args.tenant,
        signatures,
        ..Requirements::default()
    };
    for r in &args.require {
        let (c, t) = parse_requirement(r)?;
        req.tiers.insert(c, t);
    }
    let now = unix_now();
    let checked = v.verify(&token, &req).and_then(|r| match &revoked {
        Some(set) => set.check_result(&r, now).map(|()| r),
        None => Ok(r),
    });
    if let Some(set) = &revoked {
        let view = set.view();
        if let Some(age) = view.staleness(now) {
            eprintln!(
                "revocations: complete through epoch {}, as of {age} s ago (at most {} s allowed)",
                view.complete_through,
                set.max_age().as_secs()
            );
        }
    }
    match checked {
        Ok(r) => {
            if json {
                output::json(&r.ear)?;
            } else {
                println!(
                    "valid: {} is {} (kid {}, expires {})",
                    r.subject.as_deref().unwrap_or("?"),
                    r.status,
                    r.kid.as_deref().unwrap_or("-"),
                    output::ago(r.ear.exp),
                );
                for (name, sub) in &r.ear.submods {
                    println!("  submod {name}: {}", sub.status);
                    for (k, v) in &sub.trust_vector.0 {
                        println!("    {k:<18} {v:>4}  {}", vouch_core::tier_of(*v));
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

/// Trust-domain CA certificates from a PEM file, as a SPIFFE verifier.
fn load_trust_bundle(path: &std::path::Path, td: &str) -> Result<Arc<vouch_rp::SpiffeVerifier>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut certs = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let p = p.with_context(|| format!("{} is not PEM", path.display()))?;
        if p.label == "CERTIFICATE" {
            certs.push(p.contents);
        }
    }
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    let td = vouch_identity::TrustDomain::parse(td)?;
    vouch_rp::SpiffeVerifier::new(&td, &certs, vouch_rp::AllowedIds::AnyInTrustDomain)
        .map_err(|e| anyhow::anyhow!("trust bundle {}: {e}", path.display()))
}

/// `vouch rp watch`: join the revocation gossip and print the revocation view at every change.
pub(crate) async fn rp_watch(args: crate::cli::RpWatchArgs) -> Result<ExitCode> {
    use std::sync::RwLock;
    let bundle = load_trust_bundle(&args.trust_bundle, &args.trust_domain)?;
    let mut set = vouch_rp::RevocationSet::new(bundle);
    if args.state.exists() {
        let n = set
            .load(&args.state, unix_now())
            .with_context(|| format!("loading {}", args.state.display()))?;
        tracing::info!("{n} revocation(s) loaded from {}", args.state.display());
    }
    let set = Arc::new(RwLock::new(set));
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("rp-{}", args.listen));
    let auth = match &args.gossip_key {
        Some(p) => vouch_rp::gossip::GossipAuth::Keys(vouch_rp::gossip::GossipKeys::from_files(
            p,
            &args.accept_gossip_keys,
        )?),
        // clap requires --gossip-key unless --insecure-gossip.
        None => vouch_rp::gossip::GossipAuth::Insecure,
    };
    let mut cfg = vouch_rp::gossip::GossipConfig::new(
        &node_id,
        &args.trust_domain,
        args.listen,
        args.seeds,
        auth,
    );
    cfg.advertise = args.advertise.unwrap_or(args.listen);
    cfg.interval = std::time::Duration::from_millis(args.interval_ms.max(10));
    let gossip = vouch_rp::gossip::Gossip::join(cfg, set.clone()).await?;
    let mut watch = gossip.watch();
    let report = |set: &vouch_rp::RevocationSet| -> Result<()> {
        let v = set.view();
        let revoked: Vec<serde_json::Value> = set
            .records()
            .map(|c| serde_json::json!({"epoch": c.epoch, "kind": c.kind, "target": c.target}))
            .collect();
        // Validly signed records for an epoch whose first record says something else: kept,
        // revoking too, as evidence that a replica misbehaved.
        let conflicts: Vec<serde_json::Value> = set
            .conflicts()
            .map(|c| {
                serde_json::json!({
                    "epoch": c.epoch, "kind": c.kind, "target": c.target,
                    "by": c.by, "iss": c.iss,
                })
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({
                "node": node_id,
                "unix_ms": now_ms,
                "complete_through": v.complete_through,
                "head_epoch": v.head_epoch,
                "head_iat": v.head_iat,
                "revoked": revoked,
                "conflicts": conflicts,
            })
        );
        set.save(&args.state)
            .with_context(|| format!("saving {}", args.state.display()))
    };
    if let Ok(s) = set.read() {
        report(&s)?;
    }
    loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break;
                }
                if let Ok(s) = set.read() {
                    report(&s)?;
                }
            }
            () = shutdown_signal() => break,
        }
    }
    gossip.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

//! `vouch bench`: software-evidence attestations per second through the full HTTPS path
//! (challenge, sign, verify, appraise, sign the EAR, commit to SQLite), and in the same run the
//! raw cost of the signature work alone (Ed25519 verify of the evidence + EAR signing), so the
//! figure is a ratio that survives a noisy machine.

use anyhow::{Context, Result};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vouch_agent::{Agent, AgentConfig, VerifierClient};
use vouch_core::wire::AttestRequest;
use vouch_core::{ArStatus, SoftwareMeasurements, evidence_signing_input};
use vouch_evidence::sign_software_evidence;
use vouch_policy::ReferenceValue;
use vouch_server::{ServerConfig, unix_now};

use crate::cli::BenchArgs;
use crate::output;

fn raw_signature_cost(payload_len: usize, ear_len: usize, iters: usize) -> Result<Duration> {
    let agent = Ed25519KeyPair::generate()?;
    let verifier_key = Ed25519KeyPair::generate()?;
    let payload = vec![b'a'; payload_len];
    let msg = evidence_signing_input(
        vouch_core::EvidenceKind::Software,
        &String::from_utf8(payload)?,
    );
    let sig = agent.sign(&msg);
    let pk = UnparsedPublicKey::new(
        &ED25519,
        aws_lc_rs::signature::KeyPair::public_key(&agent)
            .as_ref()
            .to_vec(),
    );
    let ear = vec![b'e'; ear_len];
    let start = Instant::now();
    for _ in 0..iters {
        pk.verify(&msg, sig.as_ref())
            .map_err(|_| anyhow::anyhow!("verify failed"))?;
        std::hint::black_box(verifier_key.sign(&ear));
    }
    Ok(start.elapsed() / iters as u32)
}

/// X.509-SVIDs issued per second by the trust-domain CA (build the certificate, sign it with
/// ECDSA P-256, encode), against raw ECDSA P-256 signatures over a message of the same size, in
/// one run.
fn svid_bench(n: usize, json: bool) -> Result<ExitCode> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use rcgen::PublicKeyData as _;
    let n = n.max(10);
    let now = unix_now();
    let td = vouch_identity::TrustDomain::parse("bench.local")?;
    let ca = vouch_identity::SvidCa::generate(&td, 86_400, now)?;
    let leaf = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let spki = leaf.subject_public_key_info();
    let id = vouch_identity::SpiffeId::new(&td, "/bench/workload")?;
    let sample = ca.issue(&id, &spki, 3600, now)?;
    // Warm up both paths, then measure them back to back.
    for _ in 0..n / 10 {
        std::hint::black_box(ca.issue(&id, &spki, 3600, now)?);
    }
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ca.issue(&id, &spki, 3600, now)?);
    }
    let issue = start.elapsed();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("ECDSA key generation failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("ECDSA key parse failed"))?;
    let tbs = vec![0x5a; sample.len()];
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            key.sign(&rng, &tbs)
                .map_err(|_| anyhow::anyhow!("ECDSA sign failed"))?,
        );
    }
    let sign = start.elapsed();
    let per = |d: Duration| d.as_secs_f64() / n as f64;
    let (issue_per_s, sign_per_s) = (1.0 / per(issue), 1.0 / per(sign));
    let ratio = per(issue) / per(sign);
    if json {
        output::json(&serde_json::json!({
            "n": n,
            "svid_der_bytes": sample.len(),
            "svids_per_second": issue_per_s,
            "ecdsa_p256_signs_per_second": sign_per_s,
            "issue_over_sign": ratio,
        }))?;
    } else {
        println!("X.509-SVID issuance, {n} SVIDs of {} bytes", sample.len());
        println!(
            "  issue          {:>10.0}/s  {:>8.1} µs each",
            issue_per_s,
            per(issue) * 1e6
        );
        println!(
            "  ECDSA P-256    {:>10.0}/s  {:>8.1} µs each (raw sign)",
            sign_per_s,
            per(sign) * 1e6
        );
        println!("  ratio          {ratio:.2}x the raw signature");
    }
    Ok(ExitCode::SUCCESS)
}

/// The signing work of a 2-of-3 FROST quorum result against one Ed25519 signature over the
/// same message, in one run; the aggregate is checked as a plain Ed25519 signature.
fn quorum_bench(n: usize, json: bool) -> Result<ExitCode> {
    use vouch_server::quorum;
    let n = n.max(10);
    let dir = tempfile_dir()?.join("quorum");
    std::fs::create_dir_all(&dir)?;
    quorum::dealer(2, 3, &dir)?;
    let shares = [
        quorum::read_key_package(&dir.join("signer-1.json"))?,
        quorum::read_key_package(&dir.join("signer-2.json"))?,
    ];
    let group = quorum::read_group(&dir.join("group.json"))?;
    let pk = UnparsedPublicKey::new(&ED25519, quorum::group_public_key(&group)?);
    let _ = std::fs::remove_dir_all(&dir);
    let msg = vec![b'e'; 900];
    let sig = quorum::sign_locally(&shares, &group, &msg)?;
    pk.verify(&msg, &sig)
        .map_err(|_| anyhow::anyhow!("the aggregate is not a valid Ed25519 signature"))?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(quorum::sign_locally(&shares, &group, &msg)?);
    }
    let frost = t.elapsed() / n as u32;
    let single = Ed25519KeyPair::generate()?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(single.sign(&msg));
    }
    let ed = t.elapsed() / n as u32;
    let ratio = frost.as_secs_f64() / ed.as_secs_f64();
    if json {
        output::json(&serde_json::json!({
            "n": n, "frost_2_of_3_us": frost.as_secs_f64() * 1e6,
            "ed25519_us": ed.as_secs_f64() * 1e6, "ratio": ratio,
        }))?;
    } else {
        println!("quorum result signing, {n} rounds, 900-byte message");
        println!(
            "  FROST 2-of-3 (commit, sign, aggregate)  {:>8.1} µs",
            frost.as_secs_f64() * 1e6
        );
        println!(
            "  Ed25519 (one signer)                    {:>8.1} µs",
            ed.as_secs_f64() * 1e6
        );
        println!("  ratio                                   {ratio:.1}x");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: BenchArgs, json: bool) -> Result<ExitCode> {
    if args.svid {
        return svid_bench(args.n, json);
    }
    if args.quorum {
        return quorum_bench(args.n, json);
    }
    if !args.gossip.is_empty() {
        return crate::spread::run(
            &args.gossip,
            args.down_percent,
            args.gossip_interval_ms,
            json,
        )
        .await;
    }
    let dir = tempfile_dir()?;
    let replicas = args.replicas.max(1);
    anyhow::ensure!(
        replicas == 1 || args.database_url.is_some(),
        "several replicas need a shared store: pass --database-url"
    );
    // Replicas share the store, the nonce key and the TLS certificate (so one CA for clients).
    let nonce_key = dir.join("nonce.key");
    std::fs::write(&nonce_key, vouch_server::random_bytes::<32>())?;
    let mut running = Vec::new();
    let mut store = None;
    for r in 0..replicas {
        let tls = (r > 0).then(|| dir.join("r0/tls"));
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.join(format!("r{r}")),
            database_url: args.database_url.clone(),
            nonce_key: Some(nonce_key.clone()),
            tls_cert: tls.as_ref().map(|t| t.join("server.crt")),
            tls_key: tls.as_ref().map(|t| t.join("server.key")),
            ..ServerConfig::default()
        };
        let s = vouch_server::open_store(&cfg).await?;
        running.push(vouch_server::start_with_store(cfg, s.clone()).await?);
        store.get_or_insert(s);
    }
    let store = store.context("no replica")?;
    let ca_cert = running[0].ca_cert.clone();
    let token = vouch_server::create_join_token(store.as_ref(), 600, None).await?;
    let mut agent = Agent::new(AgentConfig {
        servers: vec![running[0].base_url.clone()],
        ca_cert: ca_cert.clone(),
        data_dir: dir.join("agent"),
        join_token: Some(token),
        workload_name: "bench".into(),
        ..AgentConfig::default()
    })
    .await?;
    // Real measurements of this machine, collected once; each round re-binds a fresh nonce.
    let ev = agent.evidence("template")?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&ev.payload)?;
    let template: SoftwareMeasurements = serde_json::from_slice(&payload)?;
    store
        .add_reference_value(
            &ReferenceValue {
                kind: "executable".into(),
                key: "bench".into(),
                value: template.workload.exe_sha256.clone(),
            },
            unix_now(),
        )
        .await?;
    let warm = agent.attest_once().await?;
    anyhow::ensure!(
        warm.status == ArStatus::Affirming,
        "bench workload is not affirming: {:?}",
        warm.reasons
    );

    let clients = running
        .iter()
        .map(|r| VerifierClient::new(&r.base_url, ca_cert.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let key_pk8 = agent.key().to_pkcs8()?;
    let key_id = agent.enrollment().key_id.clone();
    let template = Arc::new(template);
    let per_task = args.n.div_ceil(args.concurrency.max(1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..args.concurrency.max(1) {
        let client = clients[t % clients.len()].clone();
        let template = template.clone();
        let key = vouch_evidence::AgentKey::from_pkcs8(&key_pk8)?;
        let key_id = key_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let ch = client.challenge().await?;
                let mut m = (*template).clone();
                m.nonce = ch.nonce;
                m.collected_at = unix_now();
                let evidence = sign_software_evidence(&key, &key_id, &m)?;
                let r = client
                    .attest(&AttestRequest {
                        evidence,
                        result_audience: None,
                    })
                    .await?;
                anyhow::ensure!(
                    r.status == ArStatus::Affirming,
                    "not affirming: {:?}",
                    r.reasons
                );
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("bench task")??);
    }
    let wall = start.elapsed();
    lat.sort();
    let n = lat.len();
    let per_sec = n as f64 / wall.as_secs_f64();
    let raw = raw_signature_cost(ev.payload.len(), warm.result.len(), 2000)?;
    let per_attestation = wall / n as u32;
    let ratio = per_attestation.as_secs_f64() / raw.as_secs_f64();
    for r in running {
        r.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    let backend = if args.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let report = serde_json::json!({
        "store": backend,
        "replicas": replicas,
        "attestations": n,
        "concurrency": args.concurrency,
        "evidence_payload_bytes": ev.payload.len(),
        "wall_seconds": wall.as_secs_f64(),
        "attestations_per_second": per_sec,
        "latency_ms": {
            "p50": lat[n / 2].as_secs_f64() * 1e3,
            "p99": lat[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e3,
        },
        "raw_signature_work_us": raw.as_secs_f64() * 1e6,
        "wall_time_per_attestation_us": per_attestation.as_secs_f64() * 1e6,
        "ratio_full_path_to_raw_signatures": ratio,
    });
    if json {
        output::json(&report)?;
    } else {
        println!(
            "{n} attestations, concurrency {}, evidence {} bytes, {replicas} replica(s) on {backend}",
            args.concurrency,
            ev.payload.len()
        );
        println!(
            "  full HTTPS path    {per_sec:.0} attestations/s ({:.0} us each, wall)",
            per_attestation.as_secs_f64() * 1e6
        );
        println!(
            "  latency            p50 {:.2} ms, p99 {:.2} ms",
            report["latency_ms"]["p50"], report["latency_ms"]["p99"]
        );
        println!(
            "  raw signature work {:.1} us (Ed25519 verify of the evidence + EAR sign)",
            raw.as_secs_f64() * 1e6
        );
        println!("  ratio              {ratio:.1}x the raw signature cost");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("vouch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

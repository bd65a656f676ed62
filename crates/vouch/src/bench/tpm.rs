//! The TPM row: an agent with a TPM (swtpm, started here) attesting repeatedly, against the raw
//! signature work of one TPM attestation (the quote's RSA verify, the evidence's Ed25519 verify,
//! the result's Ed25519 signature).

use anyhow::{Context, Result};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vouch_agent::{Agent, AgentConfig, TpmConfig};
use vouch_core::wire::AttestRequest;

use super::cluster::{Cluster, allow_executable};

/// A swtpm serving the TPM command port on loopback; killed when dropped.
pub struct Swtpm {
    child: Child,
    port: u16,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` found in `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// A port whose successor is free too (swtpm's control port).
fn free_port_pair() -> Result<u16> {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0")?;
        let p = a.local_addr()?.port();
        if p < 65535 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    anyhow::bail!("no free pair of ports for swtpm")
}

impl Swtpm {
    /// Start a swtpm under `dir`; `None` when swtpm is not installed.
    pub fn start(dir: &Path) -> Result<Option<Self>> {
        let Some(bin) = on_path("swtpm") else {
            return Ok(None);
        };
        let state = dir.join("swtpm");
        std::fs::create_dir_all(&state)?;
        // Provisioned with its EKs persisted at the TCG handles when swtpm_setup is there (the
        // agent then finds its EK where a real TPM keeps it), else left empty.
        if let Some(setup) = on_path("swtpm_setup") {
            let conf = dir.join("swtpm_setup.conf");
            std::fs::write(&conf, "")?;
            let out = Command::new(setup)
                .args([
                    "--tpm2",
                    "--createek",
                    "--overwrite",
                    "--pcr-banks",
                    "sha256",
                ])
                .arg("--tpmstate")
                .arg(&state)
                .arg("--config")
                .arg(&conf)
                .output()
                .context("running swtpm_setup")?;
            anyhow::ensure!(
                out.status.success(),
                "swtpm_setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port_pair()?;
        let child = Command::new(bin)
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting swtpm")?;
        let me = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "swtpm did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(me))
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

/// What the TPM row measured.
pub struct TpmRun {
    /// Round trips of one attestation (challenge + attest; the quote made in between is the
    /// agent's and is not counted), median.
    pub per_attestation: Duration,
    /// One RSA-2048 PKCS#1 verify + one Ed25519 verify of the evidence + one Ed25519 signature
    /// of a result, single-threaded.
    pub raw: Duration,
    /// The results' status (the default policy without PCR reference values).
    pub status: String,
    /// Attestations timed.
    pub n: usize,
}

/// Enroll a TPM agent (EK, AK, credential activation) on swtpm against `cluster` and time `n`
/// repeat attestations; `None` when swtpm is not installed.
pub async fn run(cluster: &Cluster, dir: &Path, n: usize) -> Result<Option<TpmRun>> {
    let Some(tpm) = Swtpm::start(dir)? else {
        return Ok(None);
    };
    let token = vouch_server::create_join_token(cluster.store.as_ref(), 600, None).await?;
    let url = cluster
        .running
        .first()
        .context("no replica")?
        .base_url
        .clone();
    let mut agent = Agent::new(AgentConfig {
        servers: vec![url],
        ca_cert: cluster.ca_cert.clone(),
        data_dir: dir.join("tpm-agent"),
        join_token: Some(token),
        workload_name: "bench-tpm".into(),
        tpm: Some(TpmConfig {
            tcti: tpm.tcti(),
            key_alg: "rsa".into(),
            pcrs: vec![0, 1, 2, 3, 4, 5, 6, 7],
            ima_log: None,
            eventlog: None,
            ek_handle: None,
        }),
        ..AgentConfig::default()
    })
    .await
    .context("enrolling the TPM agent")?;
    let client = agent.client().clone();
    let mut times = Vec::with_capacity(n);
    let mut status = String::new();
    let mut ev_len = 0;
    let n = n.max(3);
    for i in 0..n + 2 {
        let t = Instant::now();
        let ch = client.challenge().await?;
        let challenge = t.elapsed();
        let evidence = agent.tpm_evidence(&ch.nonce).await?;
        if i == 0 {
            // The same measurements, allowed: the row times what a repeat attestation costs.
            ev_len = evidence.payload.len();
            if let Some(m) = tpm_measurements(&evidence.payload) {
                allow_executable(cluster.store.as_ref(), "bench-tpm", &m).await?;
            }
        }
        let t = Instant::now();
        let r = client
            .attest(&AttestRequest {
                evidence,
                result_audience: None,
            })
            .await?;
        // The first two warm the connection and the verifier's caches.
        if i >= 2 {
            times.push(challenge + t.elapsed());
        }
        status = r.status.to_string();
    }
    drop(tpm);
    times.sort();
    Ok(Some(TpmRun {
        per_attestation: super::cluster::quantile(&times, 0.5),
        raw: raw_tpm_signatures(ev_len, 600, 500)?,
        status,
        n: times.len(),
    }))
}

/// The software measurements inside `tpm` evidence's payload.
fn tpm_measurements(payload_b64: &str) -> Option<vouch_core::SoftwareMeasurements> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p: vouch_core::TpmPayload = serde_json::from_slice(&b64.decode(payload_b64).ok()?).ok()?;
    serde_json::from_slice(&b64.decode(p.measurements).ok()?).ok()
}

/// One RSA-2048 (PKCS#1 v1.5, SHA-256) verify of a quote-sized message, one Ed25519 verify of
/// an evidence-sized one and one Ed25519 signature of a result, single-threaded.
fn raw_tpm_signatures(evidence_len: usize, ear_len: usize, iters: usize) -> Result<Duration> {
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048)?;
    let quote = vec![0x51u8; 145];
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        &quote,
        &mut rsa_sig,
    )
    .map_err(|_| anyhow::anyhow!("RSA sign failed"))?;
    let rsa_pk = UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        rsa.public_key().as_ref().to_vec(),
    );
    let agent = Ed25519KeyPair::generate()?;
    let ev = vec![b'a'; evidence_len];
    let ev_sig = agent.sign(&ev);
    let ev_pk = UnparsedPublicKey::new(&ED25519, agent.public_key().as_ref().to_vec());
    let verifier = Ed25519KeyPair::generate()?;
    let ear = vec![b'e'; ear_len];
    let start = Instant::now();
    for _ in 0..iters {
        rsa_pk
            .verify(&quote, &rsa_sig)
            .map_err(|_| anyhow::anyhow!("RSA verify failed"))?;
        ev_pk
            .verify(&ev, ev_sig.as_ref())
            .map_err(|_| anyhow::anyhow!("Ed25519 verify failed"))?;
        std::hint::black_box(verifier.sign(&ear));
    }
    Ok(start.elapsed() / u32::try_from(iters.max(1)).unwrap_or(u32::MAX))
}

//! `vouch healthcheck`: is a verifier or an agent up? For container `HEALTHCHECK`s and exec
//! probes, where no HTTP client is at hand (the image is distroless).

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `vouch healthcheck --server URL | --agent URL`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["server", "agent"])))]
pub struct HealthcheckArgs {
    /// A verifier's base URL: its /readyz must answer 200 (store reachable, signing key
    /// active).
    #[arg(long)]
    pub server: Option<String>,
    /// An agent's metrics address (http://127.0.0.1:9464, its metrics_listen): its /healthz
    /// must answer 200 (attestation rounds keep finishing).
    #[arg(long)]
    pub agent: Option<String>,
    /// CA certificate (PEM) the verifier's TLS certificate chains to (default: the system's).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Exit 0 when the target answers 200, 1 (with the reason on standard error) otherwise.
pub(crate) async fn run(a: HealthcheckArgs) -> Result<ExitCode> {
    let (base, path) = match (&a.server, &a.agent) {
        (Some(s), _) => (s, "/readyz"),
        (None, Some(s)) => (s, "/healthz"),
        (None, None) => anyhow::bail!("--server or --agent"),
    };
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(a.timeout.max(1)));
    if let Some(p) = &a.ca_cert {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("parsing {}", p.display()))?;
        b = b.tls_certs_only(certs);
    }
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let http = b.build().context("HTTP client")?;
    match http.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("{url}: {}", r.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!(
                "unhealthy: {url}: {status}: {}",
                vouch_core::clip(body.trim(), 300)
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

//! `vouch-example-database --verifier https://127.0.0.1:8443 --ca-cert CA --listen 127.0.0.1:5433
//!  [--workload-api /run/vouch/agent.sock --allow spiffe://vouch.local/app]`

use clap::Parser;
use vouch_example_database::{router, serve_mtls};
use vouch_rp::{JwksSource, Requirements, SpiffeId, X509Source};

#[derive(Parser)]
struct Args {
    /// Verifier base URL (its JWKS is fetched from /.well-known/jwks.json and kept current).
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    verifier: String,
    /// CA certificate of the verifier.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:5433")]
    listen: std::net::SocketAddr,
    /// This service's name as an audience: only results requested for it are accepted (the
    /// caller's agent sets `result_audience` to it).
    #[arg(long, default_value = "database")]
    audience: String,
    /// Serve mTLS with the SVID from the agent's Workload API socket (or
    /// SPIFFE_ENDPOINT_SOCKET when set); plain HTTP otherwise.
    #[arg(long)]
    workload_api: Option<std::path::PathBuf>,
    /// SPIFFE IDs accepted as clients over mTLS (repeat the flag).
    #[arg(long)]
    allow: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let a = Args::parse();
    let mut keys = JwksSource::builder(format!(
        "{}/.well-known/jwks.json",
        a.verifier.trim_end_matches('/')
    ));
    if let Some(ca) = &a.ca_cert {
        keys = keys.ca_pem(&std::fs::read(ca)?);
    }
    let app = router(keys.build().await?, Requirements::for_audience(&a.audience));
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    let source = match &a.workload_api {
        Some(p) => Some(X509Source::connect(p).await?),
        None if std::env::var_os("SPIFFE_ENDPOINT_SOCKET").is_some() => {
            Some(X509Source::from_env().await?)
        }
        None => None,
    };
    match source {
        Some(s) => {
            let allowed = a
                .allow
                .iter()
                .map(|id| SpiffeId::parse(id))
                .collect::<Result<Vec<_>, _>>()?;
            tracing::info!(
                "database example on https://{} as {}",
                a.listen,
                s.svid()?.spiffe_id()
            );
            serve_mtls(listener, app, &s, allowed).await
        }
        None => {
            tracing::info!("database example on http://{}", a.listen);
            Ok(axum::serve(listener, app).await?)
        }
    }
}

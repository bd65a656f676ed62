//! `vouch-example-database --verifier https://127.0.0.1:8443 --ca-cert CA --listen 127.0.0.1:5433`

use clap::Parser;
use std::sync::Arc;
use vouch_example_database::{Db, router};
use vouch_rp::Requirements;

#[derive(Parser)]
struct Args {
    /// Verifier base URL (its JWKS is fetched from /.well-known/jwks.json).
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let a = Args::parse();
    let mut http = reqwest::Client::builder();
    if let Some(ca) = &a.ca_cert {
        http = http.tls_certs_only(reqwest::Certificate::from_pem_bundle(&std::fs::read(ca)?)?);
    }
    let http = http.build()?;
    let url = format!("{}/.well-known/jwks.json", a.verifier.trim_end_matches('/'));
    let fetch: vouch_example_database::JwksSource = Arc::new(move || {
        let (http, url) = (http.clone(), url.clone());
        Box::pin(async move {
            Ok(http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?)
        })
    });
    let db = Db::new(fetch, Requirements::for_audience(&a.audience)).await?;
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    tracing::info!("database example on http://{}", a.listen);
    axum::serve(listener, router(db)).await?;
    Ok(())
}

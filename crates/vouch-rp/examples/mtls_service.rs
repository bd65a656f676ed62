//! An HTTP service over mTLS with the SVID the local SPIFFE agent issues (rotating), open only
//! to the listed SPIFFE IDs, each request carrying an affirming attestation result:
//! `SPIFFE_ENDPOINT_SOCKET=unix:///run/vouch/agent.sock cargo run -p vouch-rp --features axum,workload-api --example mtls_service -- https://verifier:8443 ca.pem spiffe://example.org/app`

use axum::Router;
use axum::routing::get;
use vouch_rp::{
    AllowedIds, Attested, JwksSource, PeerSpiffeId, RequireResultLayer, Requirements, SpiffeId,
    SpiffeTlsListener, TlsPeer, X509Source,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [verifier, ca, allowed @ ..] = args.as_slice() else {
        return Err("usage: mtls_service VERIFIER_URL CA_PEM SPIFFE_ID...".into());
    };
    let keys = JwksSource::builder(format!("{verifier}/.well-known/jwks.json"))
        .ca_pem(&std::fs::read(ca)?)
        .build()
        .await?;
    let source = X509Source::from_env().await?;
    let allowed = allowed
        .iter()
        .map(|a| SpiffeId::parse(a))
        .collect::<Result<Vec<_>, _>>()?;

    let app = Router::new()
        .route(
            "/",
            get(
                |PeerSpiffeId(id): PeerSpiffeId, Attested(r): Attested| async move {
                    format!("hello {id}, attested {}\n", r.status)
                },
            ),
        )
        .layer(RequireResultLayer::new(
            keys,
            Requirements::for_audience("example"),
        ));
    let mut tls = source.server_config(AllowedIds::Only(allowed))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:8444").await?;
    println!(
        "serving https://127.0.0.1:8444 as {}",
        source.svid()?.spiffe_id()
    );
    let listener = SpiffeTlsListener::new(tcp, tls.into())?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<TlsPeer>(),
    )
    .await?;
    Ok(())
}

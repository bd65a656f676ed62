//! Keep a verifier's keys current and check results read from stdin, one per line:
//! `cargo run -p vouch-rp --features jwks --example jwks_source -- https://verifier:8443 ca.pem database`

use std::io::BufRead as _;
use vouch_rp::{JwksSource, Requirements};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [verifier, ca, audience] = args.as_slice() else {
        return Err("usage: jwks_source VERIFIER_URL CA_PEM AUDIENCE".into());
    };
    let keys = JwksSource::builder(format!("{verifier}/.well-known/jwks.json"))
        .ca_pem(&std::fs::read(ca)?)
        .build()
        .await?;
    let req = Requirements::for_audience(audience);
    for line in std::io::stdin().lock().lines() {
        match keys.verify(line?.trim(), &req).await {
            Ok(r) => println!("accepted: {:?} is {}", r.subject, r.status),
            Err(e) => println!("refused: {e}"),
        }
    }
    Ok(())
}

//! Verify one attestation result against a saved JWKS, with no network:
//! `cargo run -p vouch-rp --example verify_offline -- jwks.json result.jwt database`

use vouch_rp::{Requirements, ResultVerifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [jwks, token, audience] = args.as_slice() else {
        return Err("usage: verify_offline JWKS_FILE RESULT_FILE AUDIENCE".into());
    };
    let verifier = ResultVerifier::from_jwks_json(&std::fs::read_to_string(jwks)?)?;
    let result = verifier.verify(
        std::fs::read_to_string(token)?.trim(),
        &Requirements::for_audience(audience),
    )?;
    println!(
        "{} is {} (signed by key {:?})",
        result.subject.unwrap_or_default(),
        result.status,
        result.kid
    );
    Ok(())
}

#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_rp::{Requirements, ResultVerifier};

const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = ResultVerifier::from_jwks_json(JWKS) {
            // With an audience: requirements that name none refuse before reading the token.
            let _ = v.verify(s, &Requirements::for_audience("rp"));
            // Both signatures required: the JWS JSON path and the ML-DSA-65 check.
            let both = Requirements {
                signatures: vouch_rp::SignatureMode::Both,
                ..Requirements::for_audience("rp")
            };
            let _ = v.verify(s, &both);
        }
        let _ = ResultVerifier::from_jwks_json(s);
        let _ = serde_json::from_str::<vouch_core::Ear>(s);
        let _ = vouch_core::jws::GeneralJws::parse(s);
    }
});

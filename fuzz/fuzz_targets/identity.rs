#![no_main]
use libfuzzer_sys::fuzz_target;
use vouch_identity::{JwtSvidValidator, SpiffeId, TrustDomain};

fuzz_target!(|data: &str| {
    if let Ok(id) = SpiffeId::parse(data) {
        // A parsed ID prints back to itself.
        assert_eq!(SpiffeId::parse(&id.to_string()).ok(), Some(id));
    }
    let _ = TrustDomain::parse(data);
    if let Ok(td) = TrustDomain::parse("example.org") {
        let bundle = serde_json::json!({"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256", "kid": "k",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
        if let Ok(v) = JwtSvidValidator::from_bundle(&td, &bundle) {
            let _ = v.validate(data, "aud", 0);
        }
    }
});

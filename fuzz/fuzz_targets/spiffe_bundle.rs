#![no_main]
//! SPIFFE trust bundles and SVIDs as a relying party receives them: a bundle document fetched
//! over HTTPS (JwksSource), the Workload API's concatenated DER, a peer's certificate.
use libfuzzer_sys::fuzz_target;
use vouch_rp::{TrustBundle, TrustDomain, svid_spiffe_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(td) = TrustDomain::parse("example.org") {
        if let Ok(b) = TrustBundle::from_jwks(td.clone(), data) {
            // Every X.509 authority kept is one whole certificate.
            for der in b.x509_authorities() {
                assert_eq!(
                    TrustBundle::from_der(td.clone(), der)
                        .map(|b| b.x509_authorities().len())
                        .ok(),
                    Some(1)
                );
            }
        }
        let _ = TrustBundle::from_der(td, data);
    }
    let _ = svid_spiffe_id(data);
});

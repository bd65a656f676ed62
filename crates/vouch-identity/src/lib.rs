//! Workload identities in the SPIFFE formats: SPIFFE IDs validated per the SPIFFE-ID standard,
//! X.509-SVIDs per the X509-SVID standard signed by a trust-domain CA, JWT-SVIDs per the
//! JWT-SVID standard, and SPIFFE trust bundles (JWKS with `x509-svid` and `jwt-svid` keys).
//! The CA key is a file or stays in a PKCS#11 token ([`Pkcs11Key`]).
#![deny(missing_docs)]

mod entry;
mod hsm;
mod jwt;
mod rotation;
mod x509;

pub use entry::{Entry, Selector, matching};
pub use hsm::{Pkcs11Config, Pkcs11Key, pkcs11_context};
pub use jwt::JwtSvidSigner;
pub use rotation::CaSet;
/// The SPIFFE ID, trust domain and error types live in `vouch-spiffe` (shared with relying
/// parties, which need none of the issuing code); re-exported here unchanged.
pub use vouch_spiffe::{
    JwtSvidClaims, JwtSvidValidator, SpiffeError as IdentityError, SpiffeId, TrustBundle,
    TrustDomain,
};
pub use x509::{DOCUMENT_SIGNING_EKU, SvidCa, VERIFIER_PATH_PREFIX, bundle_jwks, cert_to_pem};

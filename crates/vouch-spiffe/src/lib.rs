//! `vouch-spiffe`: the SPIFFE types Vouch's identity issuer and its relying parties share, with
//! no issuing, key-store or server code.
//!
//! - [`SpiffeId`] and [`TrustDomain`], validated per the SPIFFE-ID standard;
//! - [`TrustBundle`]: a trust domain's X.509 and JWT authorities, from a SPIFFE bundle
//!   document (JWKS) or the Workload API's concatenated DER;
//! - [`svid_spiffe_id`]: the SPIFFE ID an X.509-SVID names (its one URI SAN);
//! - [`JwtSvidValidator`]: JWT-SVIDs checked against a bundle's `jwt-svid` keys;
//! - with the `workload-api` feature, [`workload_api`]: the SPIFFE Workload API protocol
//!   (tonic client; the server too with `workload-api-server`), generated from the one
//!   `proto/workload.proto` the Vouch agent serves.
//!
//! ```
//! use vouch_spiffe::{SpiffeId, TrustDomain};
//! let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/db")?;
//! assert_eq!(id.trust_domain(), &TrustDomain::parse("example.org")?);
//! assert_eq!(id.path(), "/ns/prod/sa/db");
//! assert!(SpiffeId::parse("spiffe://example.org/../etc").is_err());
//! # Ok::<(), vouch_spiffe::SpiffeError>(())
//! ```
#![deny(missing_docs)]

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod bundle;
mod error;
mod id;
mod jwt;
mod svid;
#[cfg(feature = "workload-api")]
pub mod workload_api;

pub use bundle::{MAX_BUNDLE, TrustBundle};
pub use error::SpiffeError;
pub use id::{SpiffeId, TrustDomain};
pub use jwt::{JwtSvidClaims, JwtSvidValidator};
pub use svid::{not_after, split_der_certificates, svid_spiffe_id};

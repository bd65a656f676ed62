//! `vouch-rp`: verify Vouch attestation results offline.
//!
//! A relying party fetches the verifier's JWKS once (`/.well-known/jwks.json`), caches it, and
//! then checks every EAR it is shown with no network: the signature under a key from the set
//! (by `kid`, with the algorithm the key is published for — never `none`, never an algorithm
//! the token picks for itself), expiry and not-before, the audience (always: requirements that
//! name none refuse every result), the nonce when asked for, the EAR profile, the appraisal
//! status, and the trust-vector tiers it requires.
//!
//! ```no_run
//! use vouch_rp::{Requirements, ResultVerifier};
//! # fn main() -> Result<(), vouch_rp::RpError> {
//! let jwks = std::fs::read_to_string("jwks.json").unwrap();
//! let verifier = ResultVerifier::from_jwks_json(&jwks)?;
//! let token = std::fs::read_to_string("result.jwt").unwrap();
//! // The name this relying party's clients' agents request results for (`result_audience`).
//! let result = verifier.verify(token.trim(), &Requirements::for_audience("database"))?;
//! println!("{} is {}", result.subject.unwrap_or_default(), result.status);
//! # Ok(()) }
//! ```
//!
//! Features add what a long-running service needs, each with its own dependencies (with none,
//! the crate has no async runtime and no HTTP stack):
//!
//! - `jwks`: [`JwksSource`], the verifier's JWKS or SPIFFE trust bundle over HTTPS, refreshed
//!   on the server's hint and on an unknown `kid`;
//! - `workload-api`: [`X509Source`], the X.509-SVID and bundle from the SPIFFE Workload API
//!   (the agent's Unix socket), rotating, as rustls server and client configurations that
//!   check peers' SPIFFE IDs; [`JwtSource`] for JWT-SVIDs;
//! - `axum`: [`RequireResultLayer`] and [`RequireSpiffeIdLayer`] (tower layers),
//!   [`SpiffeTlsListener`] (mTLS for `axum::serve`), the [`Attested`] and [`PeerSpiffeId`]
//!   extractors;
//! - `gossip`: revocations as they happen ([`gossip`]).
//!
//! The public API is listed in `public-api.txt` and checked against rustdoc's output by
//! `tests/public_api.rs`.
#![deny(missing_docs)]

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod audit;
mod error;
#[cfg(feature = "gossip")]
pub mod gossip;
#[cfg(feature = "workload-api")]
mod jwt_source;
#[cfg(feature = "axum")]
mod middleware;
mod pq;
mod revocation;
#[cfg(feature = "jwks")]
mod source;
mod spiffe;
mod verify;
#[cfg(feature = "workload-api")]
mod workload;
mod x5c;

pub use error::RpError;
#[cfg(feature = "workload-api")]
pub use jwt_source::JwtSource;
#[cfg(feature = "axum")]
pub use middleware::{
    Attested, PeerSpiffeId, RequireResult, RequireResultLayer, RequireSpiffeId,
    RequireSpiffeIdLayer, ResponseFuture, SpiffeTlsListener, TlsPeer,
};
pub use revocation::{RevocationSet, RevocationView};
#[cfg(feature = "jwks")]
pub use source::{JwksConfig, JwksSource, JwksSourceBuilder};
pub use spiffe::{AllowedIds, SpiffeVerifier, svid_spiffe_id};
pub use verify::{Audience, Requirements, ResultVerifier, SignatureMode, VerifiedResult};
pub use vouch_core::revocation::{RevocationClaims, RevocationHead, RevocationKind};
pub use vouch_core::{ArStatus, Ear, TrustClaim, TrustTier};
pub use vouch_spiffe::{JwtSvidClaims, SpiffeId, TrustBundle, TrustDomain};
#[cfg(feature = "workload-api")]
pub use workload::{SourceVerifier, X509Source, X509Svid};

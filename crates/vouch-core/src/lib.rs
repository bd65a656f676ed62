//! Vouch's claims and protocol core.
//!
//! Everything the three RATS roles (attester, verifier, relying party) must agree on, with no I/O
//! and no async runtime: the HTTP wire types, the self-authenticating nonce format, the EAR claim
//! set and the AR4SI trust vector, the stable error kinds, and the version ordering that policies
//! use to compare package and OS versions.
//!
//! The crate is deliberately small and pure so that it can be fuzzed and reused by any attester,
//! verifier or relying party implementation.
#![deny(missing_docs)]

pub mod admission;
pub mod audit;
mod ear;
mod error;
mod evidence;
pub mod jws;
mod nonce;
pub mod request_id;
pub mod revocation;
mod version;
pub mod wire;

pub use ear::{
    ArStatus, EAR_PROFILE, Ear, SUBMOD_NAME, Submod, TrustClaim, TrustTier, TrustVector,
    VerifierId, eat_nonce, tier_of,
};
pub use error::{ErrorKind, clip};
pub use evidence::{
    ComponentView, CompositePayload, ContainerImage, Evidence, EvidenceKind, FileMeasurement,
    ImaSlice, ListeningSocket, MAX_CONTAINER_DIGESTS, MAX_CONTAINERS_UNLISTED, MAX_EVIDENCE_BYTES,
    MAX_WORKLOAD_CONTAINERS, MEASUREMENT_PARTS, OsRelease, ProcessInfo, SoftwareMeasurements,
    TeePayload, TeeReport, TpmPayload, WorkloadMeasurement, composite_report_data,
    evidence_signing_input, part_digest, part_digests, send_held_parts_by_digest, tee_report_data,
    tpm_extra_data,
};
pub use nonce::{NONCE_RANDOM_LEN, Nonce, NonceError, NonceKey};
pub use version::compare_versions;

/// Seconds since the Unix epoch, the one time unit on the wire.
pub type UnixSeconds = u64;

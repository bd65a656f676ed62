//! Vouch evidence kinds.
//!
//! Each kind has an attester side (collect and sign measurements, runs in the agent) and a
//! verifier side (check signatures and freshness inputs, derive claims, runs in the verifier).
//! The verifier side is behind the [`EvidenceVerifier`] trait so the server dispatches on
//! [`vouch_core::EvidenceKind`] without knowing any kind's details.
//!
//! | kind | attester | verifier |
//! |---|---|---|
//! | `software` | [`SoftwareCollector`] + [`AgentKey`] | [`SoftwareVerifier`] |
//! | `tpm` | software measurements + a TPM quote binding them (agent `tpm` feature) | [`TpmVerifier`] |
//! | `tee` | software measurements bound into a TEE report's report data | [`TeeVerifier`] |
//! | `composite` | a TPM quote and a TEE report binding the same measurements and the AK | [`CompositeVerifier`] |
//! | `sample` | unsigned JSON (demos, tests) | [`SampleVerifier`], rejected by the default policy |
#![deny(missing_docs)]

mod collect;
mod error;
mod key;
mod parts;
mod release;
mod verify;

pub use collect::{CollectConfig, SoftwareCollector, sha256_file};

/// The text parsers behind software collection, exposed for fuzzing and reuse.
pub mod parsers {
    pub use crate::collect::{parse_dpkg_status, parse_os_release, parse_proc_net};
}
pub use error::EvidenceError;
pub use key::{AgentKey, verify_ed25519};
pub use parts::{HeldPart, PartSource, resolve_parts};
pub use release::{MAX_SECRET_BYTES, ReleaseKey, Sealed, seal as seal_secret, valid_release_key};
pub use verify::{
    CompositeVerifier, EvidenceVerifier, SampleVerifier, Signer, SoftwareVerifier, TeeVerifier,
    TpmContext, TpmVerifier, VerifiedEvidence, VerifyContext, check_azure_ak, clock_claims,
    composite_claims, decode_payload, sign_software_evidence, verifier_for,
};

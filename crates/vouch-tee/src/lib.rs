//! Confidential-computing evidence, verified against vendor roots with every field checked.
//!
//! - [`snp`]: AMD SEV-SNP attestation reports, signed by a VCEK or VLEK whose chain ends at the
//!   product line's ARK; the certificate's TCB and chip id must be the report's.
//! - [`nitro`]: AWS Nitro Enclaves attestation documents (COSE_Sign1 ES384), the CA bundle
//!   from the trusted Nitro root.
//!
//! Every verification takes the time to check certificates at, so real samples (valid only
//! in the past) are verified at a time inside their windows.
#![deny(missing_docs)]

pub mod dcap;
pub mod nitro;
pub mod snp;

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    /// The bytes are not a well-formed report or certificate.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A certificate chain does not lead to a trusted root, or a certificate is outside its
    /// validity window at the verification time.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// The report's signature does not verify under the certified key.
    #[error("signature: {0}")]
    Signature(String),
    /// The report and its certificate disagree (TCB, chip id, key type).
    #[error("mismatch: {0}")]
    Mismatch(String),
}

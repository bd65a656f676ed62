//! TPM 2.0 evidence, verified in pure Rust (no libtss2 on the verifier).
//!
//! The TPM marshals its structures big-endian with 16-bit size prefixes; every parser here
//! reads through a bounded [`Reader`] that refuses truncation, trailing bytes and sizes beyond
//! the TPM's own limits, and never panics.
//!
//! [`verify_quote`] checks every field of a quote, in this order: the signature (with the
//! scheme and hash the AK is bound to; SHA-1 refused unless allowed), `magic`
//! (`TPM_GENERATED_VALUE`), `type` (`TPM_ST_ATTEST_QUOTE`), `qualifiedSigner` against the AK's
//! qualified name, `extraData` against the expected nonce binding, `clockInfo.safe`, the signed
//! `pcrSelect` against exactly the PCR values claimed (same banks, same indices), and
//! `pcrDigest` against the hash of those values. `resetCount`/`restartCount`/`clock`
//! progress across quotes is checked by [`check_clock_progress`] against the last quote the
//! verifier accepted from the same AK.
#![deny(missing_docs)]

mod alg;
mod attest;
mod bootclaims;
mod buf;
mod credential;
mod ekcert;
mod error;
mod eventlog;
mod ima;
mod pcrs;
mod public;
mod quote;
mod signature;

pub use alg::{EccCurve, HashAlg};
pub use attest::{ClockInfo, PcrSelection, TpmsAttest};
pub use bootclaims::EventLogClaims;
pub use buf::Reader;
pub use credential::{MadeCredential, kdfa, kdfe, make_credential};
pub use ekcert::{EkCertInfo, EkTrustStore};
pub use error::TpmError;
pub use eventlog::{
    EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_NO_ACTION, EV_SEPARATOR,
    Event, EventLog, MAX_EVENT_LOG, SpecId, event_type_name,
};
pub use ima::{ImaEntry, ImaState, parse_ima_log};
pub use pcrs::{PcrBank, PcrValues, parse_tpm2_tools_pcrs};
pub use public::{ObjectAttributes, PublicKey, TpmtPublic, qualified_name};
pub use quote::{
    Ak, QuoteClaims, QuotePolicy, check_clock_progress, raw_signature_check, verify_quote,
};
pub use signature::TpmtSignature;

/// `TPM_GENERATED_VALUE`: the magic at the start of every TPM-generated attestation.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_RH_ENDORSEMENT`: the hierarchy handle whose "name" starts the qualified-name chain of
/// objects under the endorsement hierarchy (EK, and AKs created under it).
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;

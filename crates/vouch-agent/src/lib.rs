//! The Vouch agent (the RATS attester).
//!
//! It holds an Ed25519 key, enrolls it once with a one-time join token, and then attests its
//! workload: ask a verifier for a nonce, measure, sign, send, and keep the signed result. In
//! continuous mode it re-attests every interval and at once when a measured file changes.
#![deny(missing_docs)]

mod agent;
mod client;
mod error;
#[cfg(feature = "tpm")]
mod tpm;

pub use agent::{Agent, AgentConfig, Enrollment};
pub use client::VerifierClient;
pub use error::AgentError;
#[cfg(feature = "tpm")]
pub use tpm::{Tpm, TpmConfig, TpmIdentity, TpmQuote};

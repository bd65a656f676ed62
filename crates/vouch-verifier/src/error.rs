//! The verifier's one error type: a stable kind (which the server maps to an HTTP status) and a
//! message that says what was wrong and what to do.

use vouch_core::ErrorKind;

/// The longest message an error carries, bytes: messages may quote what a client sent.
pub const MAX_MESSAGE: usize = 512;

/// Why evidence was refused or could not be appraised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct VerifyError {
    /// Stable kind.
    pub kind: ErrorKind,
    /// Human-readable message, at most [`MAX_MESSAGE`] bytes.
    pub message: String,
}

impl VerifyError {
    /// A new error; a message longer than [`MAX_MESSAGE`] bytes is cut.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match vouch_core::clip(&message, MAX_MESSAGE) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(m) => m,
        };
        Self { kind, message }
    }
}

impl From<vouch_store::StoreError> for VerifyError {
    fn from(e: vouch_store::StoreError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<vouch_evidence::EvidenceError> for VerifyError {
    fn from(e: vouch_evidence::EvidenceError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<vouch_core::NonceError> for VerifyError {
    fn from(e: vouch_core::NonceError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

impl From<vouch_policy::PolicyError> for VerifyError {
    fn from(e: vouch_policy::PolicyError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
}

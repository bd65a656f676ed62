use vouch_core::ErrorKind;

/// Why a policy could not be compiled or evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The Rego did not parse or compile.
    #[error("policy {id} v{version} does not compile: {message}")]
    Compile {
        /// Policy id.
        id: String,
        /// Policy version.
        version: u32,
        /// The compiler's message.
        message: String,
    },
    /// Evaluation failed (a builtin error, a conflict, a time-out).
    #[error("policy {id} v{version} failed to evaluate: {message}")]
    Eval {
        /// Policy id.
        id: String,
        /// Policy version.
        version: u32,
        /// The interpreter's message.
        message: String,
    },
    /// The policy produced something other than the contract describes.
    #[error("policy {id} v{version} broke the output contract: {message}")]
    Contract {
        /// Policy id.
        id: String,
        /// Policy version.
        version: u32,
        /// What was wrong.
        message: String,
    },
}

impl PolicyError {
    /// The stable error kind.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::PolicyError
    }
}

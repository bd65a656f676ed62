use vouch_core::ErrorKind;

/// Why the agent could not attest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The verifier refused the request with a stable error kind.
    #[error("verifier refused ({kind}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable kind.
        kind: ErrorKind,
        /// The verifier's message.
        message: String,
    },
    /// No verifier could be reached.
    #[error("cannot reach the verifier at {url}: {source}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The TEE could not produce a report (no configfs-tsm, a racing writer, a bad table).
    #[error("TEE report: {0}")]
    Tee(String),
    /// The verifier answered something that is not the protocol.
    #[error("unexpected answer from the verifier: {0}")]
    Protocol(String),
    /// Collecting or signing evidence failed.
    #[error(transparent)]
    Evidence(#[from] vouch_evidence::EvidenceError),
    /// The agent is not enrolled and has no join token.
    #[error(
        "this agent is not enrolled: pass a join token from `vouch token create` (--join-token or VOUCH_JOIN_TOKEN), or configure node_attestation"
    )]
    NotEnrolled,
    /// Local state could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl AgentError {
    /// The stable kind of a refusal, if this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

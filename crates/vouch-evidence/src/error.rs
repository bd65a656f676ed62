use vouch_core::ErrorKind;

/// Why evidence could not be collected, signed or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The payload is not base64url, not the expected JSON, or too large.
    #[error("evidence payload is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the enrolled key.
    #[error("evidence signature does not verify with the enrolled key {key_id}")]
    Signature {
        /// The key the evidence claimed to be signed by.
        key_id: String,
    },
    /// The evidence kind has no verifier here.
    #[error("evidence kind {0:?} is not supported by this verifier")]
    Unsupported(String),
    /// `tpm` evidence from a node whose AK is not enrolled and activated.
    #[error(
        "this node has no activated TPM attestation key: enroll its TPM (credential activation) first"
    )]
    TpmNotEnrolled,
    /// The TPM quote did not verify.
    #[error("TPM quote refused: {0}")]
    Tpm(#[from] vouch_tpm::TpmError),
    /// The TEE report, quote or document was refused (chain, signature, binding).
    #[error("TEE evidence refused: {0}")]
    Tee(String),
    /// Parts of the measurements were sent by digest and this verifier does not hold them.
    #[error(
        "the evidence sends measurement parts {0} by digest, and this verifier does not hold \
         them: send the measurements in full"
    )]
    PartsUnknown(String),
    /// A key could not be generated, read or parsed.
    #[error("agent key error: {0}")]
    Key(String),
    /// Reading the machine's state failed.
    #[error("could not collect {what}: {source}")]
    Collect {
        /// What was being collected.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl EvidenceError {
    /// The stable error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Malformed(_) => ErrorKind::EvidenceMalformed,
            Self::Signature { .. } => ErrorKind::EvidenceSignature,
            Self::Unsupported(_) => ErrorKind::UnsupportedEvidence,
            Self::TpmNotEnrolled => ErrorKind::TpmNotEnrolled,
            Self::Tpm(_) => ErrorKind::TpmQuote,
            Self::Tee(_) => ErrorKind::TeeEvidence,
            Self::PartsUnknown(_) => ErrorKind::PartsUnknown,
            Self::Key(_) | Self::Collect { .. } => ErrorKind::Internal,
        }
    }
}

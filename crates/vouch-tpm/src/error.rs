/// Why TPM evidence was refused. Every check has its own variant, so a refusal says exactly
/// which field did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The bytes end before the structure does.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Bytes remain after the structure.
    #[error("{0} has {1} trailing bytes")]
    Trailing(&'static str, usize),
    /// A size field exceeds what the TPM allows.
    #[error("{what} size {size} exceeds the limit {limit}")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An algorithm identifier is unknown or not supported here.
    #[error("unsupported {what} algorithm 0x{alg:04x}")]
    Algorithm {
        /// Where.
        what: &'static str,
        /// The identifier.
        alg: u16,
    },
    /// A field has a value the specification does not allow.
    #[error("invalid {0}")]
    Invalid(String),
    /// `magic` is not `TPM_GENERATED_VALUE`: not produced by a TPM.
    #[error("magic 0x{0:08x} is not TPM_GENERATED_VALUE (0xff544347)")]
    Magic(u32),
    /// `type` is not `TPM_ST_ATTEST_QUOTE`.
    #[error("attestation type 0x{0:04x} is not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote(u16),
    /// `qualifiedSigner` is not the enrolled AK.
    #[error("qualifiedSigner {found} is not the enrolled AK ({expected})")]
    QualifiedSigner {
        /// The AK's qualified name.
        expected: String,
        /// What the quote says.
        found: String,
    },
    /// `extraData` does not carry the expected nonce binding.
    #[error("extraData does not match the expected nonce binding (quote over another nonce)")]
    ExtraData,
    /// `clockInfo.safe` is clear: the clock may have gone backwards.
    #[error("clockInfo.safe is clear: the TPM clock may have been rolled back")]
    ClockUnsafe,
    /// `resetCount` / `restartCount` / `clock` went backwards for this AK.
    #[error("TPM clock went backwards for this AK: {0}")]
    ClockRollback(String),
    /// The signed PCR selection differs from the PCR values presented.
    #[error("the signed PCR selection {signed} differs from the PCR values presented {claimed}")]
    PcrSelection {
        /// What the quote signed.
        signed: String,
        /// What was presented.
        claimed: String,
    },
    /// `pcrDigest` does not equal the hash of the presented PCR values.
    #[error("pcrDigest does not match the presented PCR values")]
    PcrDigest,
    /// The hash algorithm is not allowed by policy (e.g. a SHA-1 downgrade).
    #[error("hash algorithm {0} is not allowed by policy")]
    HashNotAllowed(String),
    /// The signature scheme does not match the AK's scheme.
    #[error("signature scheme {found} does not match the AK's scheme {expected}")]
    Scheme {
        /// The AK's scheme.
        expected: String,
        /// The signature's scheme.
        found: String,
    },
    /// The signature does not verify.
    #[error("quote signature does not verify with the AK")]
    Signature,
    /// The AK's public area lacks a required attribute or has a forbidden one.
    #[error("AK attributes are not those of a restricted TPM signing key: {0}")]
    AkAttributes(String),
    /// The EK certificate is invalid, untrusted, or for another key.
    #[error("EK certificate: {0}")]
    EkCertificate(String),
    /// The event log does not replay to a quoted PCR.
    #[error("event log replays {bank} PCR {pcr} to {replayed}, but the quote says {quoted}")]
    EventLogReplay {
        /// Bank.
        bank: String,
        /// PCR index.
        pcr: u8,
        /// The replayed value.
        replayed: String,
        /// The quoted value.
        quoted: String,
    },
    /// No IMA log came with the quote, but the verifier's replay of this boot's list has begun
    /// and the quoted PCR 10 is not where that replay left it (or PCR 10 is not quoted): what
    /// was measured since would go unseen.
    #[error("no IMA log was sent, but {0}; send the IMA log with the quote")]
    ImaSkipped(String),
    /// Input in the tpm2-tools file formats could not be read.
    #[error("tpm2-tools file: {0}")]
    Tpm2Tools(String),
}

/// Why an identity could not be parsed, issued or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not a valid SPIFFE ID or trust domain.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(String),
    /// A certificate or key could not be generated or parsed.
    #[error("X.509: {0}")]
    X509(String),
    /// A JWT-SVID is malformed or refused.
    #[error("JWT-SVID refused: {0}")]
    Jwt(String),
}

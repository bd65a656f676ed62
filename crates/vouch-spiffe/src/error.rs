/// Why an identity, an SVID or a trust bundle could not be parsed or was refused.
///
/// `vouch-identity` re-exports this type as `IdentityError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeError {
    /// Not a valid SPIFFE ID or trust domain.
    #[error("invalid SPIFFE ID: {0}")]
    SpiffeId(String),
    /// A certificate or key could not be generated or parsed.
    #[error("X.509: {0}")]
    X509(String),
    /// A JWT-SVID is malformed or refused.
    #[error("JWT-SVID refused: {0}")]
    Jwt(String),
    /// A SPIFFE trust bundle is malformed.
    #[error("trust bundle: {0}")]
    Bundle(String),
}

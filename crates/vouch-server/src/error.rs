//! The one place where errors become HTTP status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vouch_core::ErrorKind;
use vouch_core::wire::{ErrorBody, ErrorDetail};

/// The longest error message the verifier answers or logs, bytes.
pub const MAX_MESSAGE: usize = 512;

/// An API error: a stable kind and a message that says what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// Stable kind.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error. Messages longer than `MAX_MESSAGE` (512) bytes are cut: they may quote what a
    /// client sent, and neither the answer nor the log should carry a megabyte of it.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match vouch_core::clip(&message, MAX_MESSAGE) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(m) => m,
        };
        Self { kind, message }
    }

    /// The HTTP status for a kind.
    pub fn status(kind: ErrorKind) -> StatusCode {
        use ErrorKind::*;
        match kind {
            MalformedRequest | EvidenceMalformed | NonceMismatch | UnsupportedEvidence
            | TpmEnrollment => StatusCode::BAD_REQUEST,
            NonceInvalid | NonceExpired | NonceFromFuture | NonceAudience | EvidenceSignature
            | UnknownKey | TokenInvalid | TokenExpired | TpmQuote | TpmNotEnrolled
            | TeeEvidence | Unauthenticated | NodeAttestation => StatusCode::UNAUTHORIZED,
            NonceReused | TokenReused | QuorumDisagrees | TpmBound | TpmEkInUse | PartsUnknown
            | NodeAttested => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            NotAttested | NoIdentity | Revoked | TpmRequired | Forbidden => StatusCode::FORBIDDEN,
            StoreUnavailable | QuorumUnavailable | Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = Self::status(self.kind);
        if status.is_server_error() {
            tracing::error!(kind = %self.kind, "{}", self.message);
        } else {
            tracing::info!(kind = %self.kind, "refused: {}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.as_str().to_string(),
                message: self.message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// Every error the verifier's libraries return becomes an answer the way the appraisal
/// pipeline maps it (`vouch_verifier::VerifyError`'s conversions: the kind and the message).
impl<E> From<E> for ApiError
where
    vouch_verifier::VerifyError: From<E>,
{
    fn from(e: E) -> Self {
        let e = vouch_verifier::VerifyError::from(e);
        Self::new(e.kind, e.message)
    }
}

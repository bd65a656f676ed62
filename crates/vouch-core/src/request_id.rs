//! Request ids: the `x-request-id` an agent sets on each call to a verifier, which the
//! verifier carries into its log lines (the request's span and its access-log line) and echoes
//! in its answer, so one call can be followed from the agent's log to the verifier's.
//!
//! A request id comes from the network, so it is only ever logged after [`is_valid`] accepted
//! it: 1 to [`MAX_LEN`] bytes of `A-Z a-z 0-9 - _ . :`. Nothing else can reach a log line
//! through it (no newline, quote, escape sequence or megabyte of text); an id that fails the
//! check is replaced by one the verifier makes.

/// The HTTP header that carries the request id.
pub const HEADER: &str = "x-request-id";

/// The longest request id accepted, in bytes.
pub const MAX_LEN: usize = 64;

/// Whether `id` is a request id that may be logged and echoed as it is.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A request id made from 16 random bytes (the caller's: this crate does no I/O), as 32
/// lowercase hex digits.
pub fn from_random(random: [u8; 16]) -> String {
    use std::fmt::Write as _;
    random.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_of_the_safe_charset_only() {
        assert!(is_valid("0f1e2d3c4b5a69788796a5b4c3d2e1f0"));
        assert!(is_valid("req-1.2_3:4"));
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        assert!(!is_valid(""));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        for bad in [
            "a b",
            "a\nb",
            "a\"b",
            "a\u{1b}[31mb",
            "a/b",
            "é",
            "a\rforged=1",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn random_ids_are_valid_hex() {
        let id = from_random([0xab; 16]);
        assert_eq!(id, "ab".repeat(16));
        assert!(is_valid(&id));
    }
}

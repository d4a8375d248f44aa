//! Checking a presented secret against the expected one in constant time,
//! so the time a guess takes says nothing about how much of it was right.

use subtle::ConstantTimeEq;

/// Whether `given` is `expected` (only their lengths may leak).
pub fn matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header value. The
/// scheme is case-insensitive (RFC 7235; the Python client sends `bearer`).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        assert!(matches("s3cret", "s3cret"));
        assert!(!matches("s3cret", "s3cres"));
        assert!(!matches("s3cret", "s3cret-and-more"));
        assert!(!matches("s3cret", ""));
        assert_eq!(bearer("Bearer abc "), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}

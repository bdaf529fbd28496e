//! Conditional requests from visitors (`If-None-Match` → 304) and entity tags for stored pages.

use crate::rules::key::hex;
use sha2::{Digest, Sha256};

/// Whether an `If-None-Match` header value matches `etag`, using the weak comparison
/// RFC 9110 §13.1.2 requires for `If-None-Match` (`W/"x"` matches `"x"`; `*` matches anything).
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    header.split(',').map(str::trim).any(|candidate| candidate == "*" || opaque(candidate) == ours)
}

/// A strong entity tag derived from the body: the same bytes always get the same tag, so a
/// regenerated page that did not change keeps its tag and browsers keep getting 304s.
pub fn etag_for_body(body: &[u8]) -> String {
    format!("\"{}\"", hex(&Sha256::digest(body)[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_comparison_and_lists() {
        assert!(if_none_match_matches("\"a\"", "\"a\""));
        assert!(if_none_match_matches("W/\"a\"", "\"a\""));
        assert!(if_none_match_matches("\"a\"", "W/\"a\""));
        assert!(if_none_match_matches("\"x\", \"a\"", "\"a\""));
        assert!(if_none_match_matches("*", "\"a\""));
        assert!(!if_none_match_matches("\"b\"", "\"a\""));
        assert!(!if_none_match_matches("", "\"a\""));
    }

    #[test]
    fn body_etags_depend_only_on_the_body() {
        assert_eq!(etag_for_body(b"hello"), etag_for_body(b"hello"));
        assert_ne!(etag_for_body(b"hello"), etag_for_body(b"hello!"));
        assert!(etag_for_body(b"").starts_with('"'));
    }
}

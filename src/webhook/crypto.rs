//! The few cryptographic primitives the credential checks share: HMAC-SHA256 and
//! constant-time comparisons, in one place so no check compares secrets with `==`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts`, keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    // HMAC accepts keys of any length, so this never fails; `None` is treated as a mismatch.
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

/// Whether `tag` is the HMAC-SHA256 of `parts` under `key`, compared in constant time.
pub(crate) fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Whether a presented secret equals the configured one, in time independent of both their
/// contents and their lengths (SHA-256 digests of equal length are compared).
pub fn secret_matches(presented: &str, secret: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    a.ct_eq(&b).into()
}

/// Constant-time equality of two strings whose length is public (encoded signatures).
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Decodes hex digits (either case); `None` unless every character is a hex digit in pairs.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::key::hex;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).unwrap();
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(hmac_sha256_verify(b"Jefe", &[b"what do ya want for nothing?"], &mac));
        assert!(!hmac_sha256_verify(b"Jefe", &[b"what do ya want for nothing!"], &mac));
        assert!(!hmac_sha256_verify(b"Jefe", &[b"what do ya want for nothing?"], &mac[..31]));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cret ", "s3cret"));
        assert!(!secret_matches("", "s3cret"));
        assert!(str_eq("abc", "abc"));
        assert!(!str_eq("abc", "abd"));
        assert!(!str_eq("abc", "abcd"));
    }

    #[test]
    fn hex_decoding_refuses_junk() {
        assert_eq!(hex_decode("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(hex_decode(""), Some(vec![]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("é1"), None);
    }
}

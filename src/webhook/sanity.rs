//! Sanity's GROQ-powered webhook signature, `sanity-webhook-signature`, so a Sanity webhook can
//! call the webhook directly with its own "Secret" field set to `REVALIDATE_SECRET`.
//!
//! The algorithm is the one `@sanity/webhook` (v4.0.4, `src/signature.ts`,
//! github.com/sanity-io/webhook-toolkit) verifies:
//! - header: `t=<timestamp>,v1=<signature>`, parsed with `/^t=(\d+)[, ]+v1=([^, ]+)$/` on the
//!   trimmed value; the timestamp is Unix time in **milliseconds**;
//! - signature: HMAC-SHA256 keyed with the secret's UTF-8 bytes over `"<timestamp>.<raw body>"`
//!   (the timestamp as its decimal number), encoded as **base64url without padding**;
//! - an empty body is refused.
//!
//! The library checks no age; here the timestamp must also be within [`REPLAY_WINDOW_S`] of the
//! worker's clock. The library compares the rebuilt header `t=<t>,v1=<sig>` to the received
//! one with `!==`; here the signature part is compared in constant time, which accepts the
//! same headers and also the `[, ]+` separators its own regex admits.

use super::auth::{outside_window, Check};
use super::{crypto, MAX_BODY_BYTES, REPLAY_WINDOW_S};
use crate::http::Request;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The header Sanity signs webhook deliveries with.
pub const SANITY_SIGNATURE_HEADER: &str = "sanity-webhook-signature";

/// Checks `sanity-webhook-signature` against `secret` at `now_ms`.
pub(crate) fn check(req: &Request, secret: &str, now_ms: u64) -> Check {
    let Some(value) = req.headers.get(SANITY_SIGNATURE_HEADER) else {
        return Check::Absent;
    };
    let Some((t_ms, signature)) = parse(value) else {
        return Check::Invalid(format!(
            "the {SANITY_SIGNATURE_HEADER} header is malformed: expected `t=<unix milliseconds>,v1=<base64url signature>`"
        ));
    };
    let skew_ms = now_ms.abs_diff(t_ms);
    if skew_ms > REPLAY_WINDOW_S * 1000 {
        return Check::Invalid(outside_window(SANITY_SIGNATURE_HEADER, skew_ms / 1000, "s", REPLAY_WINDOW_S, now_ms > t_ms));
    }
    if req.body.is_empty() {
        return Check::Invalid(format!("the {SANITY_SIGNATURE_HEADER} cannot sign an empty body"));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Check::Invalid(format!("the body is over {MAX_BODY_BYTES} bytes, so its {SANITY_SIGNATURE_HEADER} was not checked"));
    }
    let t = t_ms.to_string();
    let Some(mac) = crypto::hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", &req.body]) else {
        return Check::Invalid(format!("the {SANITY_SIGNATURE_HEADER} could not be computed"));
    };
    if crypto::str_eq(&URL_SAFE_NO_PAD.encode(mac), signature) {
        Check::Valid
    } else {
        Check::Invalid(format!(
            "the {SANITY_SIGNATURE_HEADER} does not match the body: set the Sanity webhook's secret to REVALIDATE_SECRET"
        ))
    }
}

/// `^t=(\d+)[, ]+v1=([^, ]+)$` on the trimmed value: the timestamp and the signature text.
fn parse(value: &str) -> Option<(u64, &str)> {
    let rest = value.trim().strip_prefix("t=")?;
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(digits_end);
    let after_sep = rest.trim_start_matches([',', ' ']);
    if digits.is_empty() || after_sep.len() == rest.len() {
        return None;
    }
    let signature = after_sep.strip_prefix("v1=")?;
    if signature.is_empty() || signature.contains([',', ' ']) {
        return None;
    }
    Some((digits.parse().ok()?, signature))
}

#[cfg(test)]
mod tests {
    use super::super::auth::authenticate;
    use super::super::{AuthMethod, WebhookError};
    use super::*;

    /// Vector from `@sanity/webhook`'s own test suite (test/signature.test.ts): secret `test`,
    /// payload `JSON.stringify({_id: 'resume'})`.
    const VENDOR_SECRET: &str = "test";
    const VENDOR_BODY: &str = r#"{"_id":"resume"}"#;
    const VENDOR_HEADER: &str = "t=1633519811129,v1=tLa470fx7qkLLEcMOcEUFuBbRSkGujyskxrNXcoh0N0";
    const VENDOR_T: u64 = 1_633_519_811_129;

    /// Vector produced by the real `@sanity/webhook@4.0.4` from npm, in node 20:
    /// `node -e "require('@sanity/webhook').encodeSignatureHeader(body, 1700000000000, secret).then(console.log)"`
    /// with `body = JSON.stringify({_type:'post',slug:{current:'hello'}})` and
    /// `secret = 'edge-isr-sanity-secret'`; `isValidSignature` returns true for it.
    const NODE_SECRET: &str = "edge-isr-sanity-secret";
    const NODE_BODY: &str = r#"{"_type":"post","slug":{"current":"hello"}}"#;
    const NODE_HEADER: &str = "t=1700000000000,v1=arDyBn_hW7NNbc4IcI9vuCCB2kW4P_9vfW-v3-efyfA";
    const NODE_T: u64 = 1_700_000_000_000;

    fn req(header: &str, body: &str) -> Request {
        let mut r = Request::new("POST", "https://isr.test/api/revalidate").with_header(SANITY_SIGNATURE_HEADER, header);
        r.body = body.to_string().into();
        r
    }

    fn refusal(header: &str, body: &str, secret: &str, now: u64) -> String {
        match authenticate(&req(header, body), secret, now) {
            Err(WebhookError::InvalidCredentials(r)) => r.join("; "),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_vendor_test_vector() {
        assert_eq!(authenticate(&req(VENDOR_HEADER, VENDOR_BODY), VENDOR_SECRET, VENDOR_T + 2_000), Ok(AuthMethod::Sanity));
    }

    #[test]
    fn accepts_the_vector_signed_by_the_npm_package() {
        assert_eq!(authenticate(&req(NODE_HEADER, NODE_BODY), NODE_SECRET, NODE_T), Ok(AuthMethod::Sanity));
        let spaced = NODE_HEADER.replace(',', ", ");
        assert_eq!(authenticate(&req(&spaced, NODE_BODY), NODE_SECRET, NODE_T - 299_000), Ok(AuthMethod::Sanity));
    }

    #[test]
    fn refuses_what_the_vendor_suite_refuses() {
        let now = VENDOR_T;
        // Timestamp changed by 1 ms, signature changed by one character, other payload, v5 instead of v1.
        let ts = VENDOR_HEADER.replace("1633519811129", "1633519811128");
        assert!(refusal(&ts, VENDOR_BODY, VENDOR_SECRET, now).contains("does not match"));
        let sig = VENDOR_HEADER.replace("0N0", "0N1");
        assert!(refusal(&sig, VENDOR_BODY, VENDOR_SECRET, now).contains("does not match"));
        assert!(refusal(VENDOR_HEADER, r#"{"_id":"structure"}"#, VENDOR_SECRET, now).contains("does not match"));
        let v5 = VENDOR_HEADER.replace("v1=", "v5=");
        assert!(refusal(&v5, VENDOR_BODY, VENDOR_SECRET, now).contains("malformed"));
    }

    #[test]
    fn refuses_a_wrong_secret() {
        assert!(refusal(NODE_HEADER, NODE_BODY, "another-secret", NODE_T).contains("does not match"));
    }

    #[test]
    fn refuses_expired_and_future_timestamps() {
        let old = refusal(NODE_HEADER, NODE_BODY, NODE_SECRET, NODE_T + 300_001);
        assert!(old.contains("300 s old") && old.contains("replay"), "{old}");
        let future = refusal(NODE_HEADER, NODE_BODY, NODE_SECRET, NODE_T - 301_000);
        assert!(future.contains("in the future"), "{future}");
    }

    #[test]
    fn refuses_malformed_headers_and_empty_bodies() {
        for bad in [
            "",
            "t=,v1=abc",
            "t=1700000000000",
            "t=1700000000000v1=abc",
            "t=1700000000000,v1=",
            "t=1700000000000,v1=a,b",
            "t=1700000000000,v1=a b",
            "v1=abc,t=1700000000000",
            "t=99999999999999999999999,v1=abc",
            "t=١٧,v1=abc",
        ] {
            assert!(refusal(bad, NODE_BODY, NODE_SECRET, NODE_T).contains("malformed"), "{bad:?}");
        }
        assert!(refusal(NODE_HEADER, "", NODE_SECRET, NODE_T).contains("empty body"));
    }

    #[test]
    fn parse_follows_the_vendor_regex() {
        assert_eq!(parse(" t=12, ,v1=x-_y "), Some((12, "x-_y")));
        assert_eq!(parse("t=007 v1=x"), Some((7, "x")));
        assert_eq!(parse("t=1,v1=x="), Some((1, "x=")));
    }
}

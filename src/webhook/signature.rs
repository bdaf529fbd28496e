//! edge-isr's own signed credential, `x-isr-signature: t=<unix seconds>,v1=<hex>`, where the hex
//! is HMAC-SHA256 of `"<t>.<raw body>"` keyed with `REVALIDATE_SECRET`.
//!
//! For callers that can compute an HMAC (CI jobs, custom CMS hooks): unlike a plain secret it
//! never travels, it binds the body, and the timestamp limits replays to [`REPLAY_WINDOW_S`].
//! It is Stripe's construction (seconds, hex; Sanity's differs only in milliseconds and
//! base64url), so existing signing code can be reused.

use super::auth::{outside_window, Check};
use super::{crypto, MAX_BODY_BYTES, REPLAY_WINDOW_S};
use crate::http::Request;

/// The header carrying edge-isr's own signature.
pub const ISR_SIGNATURE_HEADER: &str = "x-isr-signature";

const FORMAT: &str = "expected `t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256(secret, \"<t>.<body>\")>`";

/// Checks `x-isr-signature` against `secret` at `now_ms`.
pub(crate) fn check(req: &Request, secret: &str, now_ms: u64) -> Check {
    let Some(value) = req.headers.get(ISR_SIGNATURE_HEADER) else {
        return Check::Absent;
    };
    let Some((t, mac)) = parse(value) else {
        return Check::Invalid(format!("the {ISR_SIGNATURE_HEADER} header is malformed: {FORMAT}"));
    };
    let Ok(t_s) = t.parse::<u64>() else {
        return Check::Invalid(format!("the {ISR_SIGNATURE_HEADER} timestamp is out of range: {FORMAT}"));
    };
    let now_s = now_ms / 1000;
    let skew = now_s.abs_diff(t_s);
    if skew > REPLAY_WINDOW_S {
        let mut reason = outside_window(ISR_SIGNATURE_HEADER, skew, "s", REPLAY_WINDOW_S, now_s > t_s);
        if t.len() >= 13 {
            reason.push_str(" (t must be in seconds, not milliseconds)");
        }
        return Check::Invalid(reason);
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Check::Invalid(format!("the body is over {MAX_BODY_BYTES} bytes, so its {ISR_SIGNATURE_HEADER} was not checked"));
    }
    if crypto::hmac_sha256_verify(secret.as_bytes(), &[t.as_bytes(), b".", &req.body], &mac) {
        Check::Valid
    } else {
        Check::Invalid(format!(
            "the {ISR_SIGNATURE_HEADER} does not match the body: sign \"<t>.<raw body bytes>\" with HMAC-SHA256 keyed with REVALIDATE_SECRET"
        ))
    }
}

/// Splits `t=<digits>,v1=<64 hex>` (spaces around the parts allowed, any order) into the
/// timestamp's digits and the decoded MAC.
fn parse(value: &str) -> Option<(&str, Vec<u8>)> {
    let mut t = None;
    let mut v1 = None;
    for part in value.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key.trim() {
            "t" if t.is_none() => t = Some(val.trim()),
            "v1" if v1.is_none() => v1 = Some(val.trim()),
            _ => return None,
        }
    }
    let t = t.filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))?;
    let mac = crypto::hex_decode(v1?).filter(|m| m.len() == 32)?;
    Some((t, mac))
}

#[cfg(test)]
mod tests {
    use super::super::auth::authenticate;
    use super::super::{AuthMethod, WebhookError};
    use super::*;
    use crate::rules::key::hex;

    const SECRET: &str = "s3cret-value";
    const NOW_MS: u64 = 1_700_000_000_123;
    const BODY: &str = r#"{"tags":["posts"]}"#;

    fn sign(secret: &str, t: &str, body: &str) -> String {
        let mac = crypto::hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", body.as_bytes()]).unwrap();
        format!("t={t},v1={}", hex(&mac))
    }

    fn req(header: &str, body: &str) -> Request {
        let mut r = Request::new("POST", "https://isr.test/api/revalidate").with_header(ISR_SIGNATURE_HEADER, header);
        r.body = body.to_string().into();
        r
    }

    fn reason(header: &str, body: &str) -> String {
        match authenticate(&req(header, body), SECRET, NOW_MS) {
            Err(WebhookError::InvalidCredentials(r)) => r.join("; "),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn fixed_vector_computed_outside_rust() {
        // printf '%s' '1700000000.{"tags":["posts"]}' | openssl dgst -sha256 -hmac 's3cret-value'
        // (node's crypto.createHmac gives the same digest).
        let header = "t=1700000000,v1=07454bdad5bbe9cefb1dc85db64b71c10b3ee8bf1cb14679c6c65ba8aff9a7e4";
        assert_eq!(sign(SECRET, "1700000000", BODY), header);
        assert_eq!(authenticate(&req(header, BODY), SECRET, NOW_MS), Ok(AuthMethod::IsrSignature));
    }

    #[test]
    fn accepts_a_correct_signature_within_the_window() {
        let header = sign(SECRET, "1700000000", BODY);
        assert_eq!(authenticate(&req(&header, BODY), SECRET, NOW_MS), Ok(AuthMethod::IsrSignature));
        let upper = header.to_ascii_uppercase().replace("T=", "t=").replace("V1=", "v1=");
        assert_eq!(authenticate(&req(&upper, BODY), SECRET, NOW_MS), Ok(AuthMethod::IsrSignature));
        let spaced = header.replace(',', " , ");
        assert_eq!(authenticate(&req(&spaced, BODY), SECRET, NOW_MS), Ok(AuthMethod::IsrSignature));
        for t in ["1699999700", "1700000300"] {
            assert_eq!(authenticate(&req(&sign(SECRET, t, BODY), BODY), SECRET, NOW_MS), Ok(AuthMethod::IsrSignature), "{t}");
        }
    }

    #[test]
    fn refuses_wrong_secret_and_altered_body() {
        assert!(reason(&sign("other", "1700000000", BODY), BODY).contains("does not match the body"));
        assert!(reason(&sign(SECRET, "1700000000", BODY), r#"{"tags":["post"]}"#).contains("does not match"));
        // The timestamp is part of what is signed.
        let moved = sign(SECRET, "1700000000", BODY).replace("t=1700000000", "t=1700000001");
        assert!(reason(&moved, BODY).contains("does not match"));
    }

    #[test]
    fn refuses_expired_and_future_timestamps() {
        let old = reason(&sign(SECRET, "1699999699", BODY), BODY);
        assert!(old.contains("301 s old") && old.contains("replay"), "{old}");
        let future = reason(&sign(SECRET, "1700000301", BODY), BODY);
        assert!(future.contains("301 s in the future"), "{future}");
        let millis = reason(&sign(SECRET, "1700000000123", BODY), BODY);
        assert!(millis.contains("seconds, not milliseconds"), "{millis}");
    }

    #[test]
    fn refuses_malformed_headers() {
        let good = sign(SECRET, "1700000000", BODY);
        let mac = good.split("v1=").nth(1).unwrap().to_string();
        for bad in [
            String::new(),
            "garbage".into(),
            format!("v1={mac}"),
            "t=1700000000".into(),
            format!("t=,v1={mac}"),
            format!("t=-1700000000,v1={mac}"),
            format!("t=1700000000,v1={}", &mac[..62]),
            format!("t=1700000000,v1={mac}00"),
            format!("t=1700000000,v1=zz{}", &mac[2..]),
            format!("t=1700000000,v1={mac},v2=x"),
            format!("t=1700000000,t=1700000000,v1={mac}"),
            format!("t=99999999999999999999999,v1={mac}"),
            format!("t=1700000000;v1={mac}"),
        ] {
            let r = reason(&bad, BODY);
            assert!(r.contains(ISR_SIGNATURE_HEADER), "{bad}: {r}");
        }
    }

    #[test]
    fn refuses_to_hash_oversized_bodies() {
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(reason(&sign(SECRET, "1700000000", &big), &big).contains("not checked"));
    }
}

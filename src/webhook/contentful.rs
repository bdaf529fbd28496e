//! Contentful's webhook request verification (`x-contentful-signature`), so a Contentful webhook
//! can call the webhook directly once the space's signing secret is `REVALIDATE_SECRET`
//! (Contentful requires exactly 64 characters of `[0-9a-zA-Z+/=_-]`).
//!
//! The algorithm is the one `verifyRequest` of `@contentful/node-apps-toolkit` implements
//! (`src/requests/{verify-request,sign-request,utils}.ts`, github.com/contentful/node-apps-toolkit,
//! identical in the npm releases 3.16.1 and 4.0.1):
//! 1. Header names are lower-cased and trimmed, values trimmed. `x-contentful-signature` must be
//!    64 characters, `x-contentful-timestamp` Unix **milliseconds** after 2020-01-01, and
//!    `x-contentful-signed-headers` split on `,` must have at least two names.
//! 2. The request is too old when `now - timestamp >= ttl` (the toolkit's default TTL is 30 s,
//!    [`CONTENTFUL_TTL_S`]); here a timestamp more than the TTL in the future is refused too.
//! 3. The signed headers are the request headers whose name appears verbatim in that list,
//!    plus `x-contentful-timestamp` (value: the parsed number) and `x-contentful-signed-headers`
//!    (value: the names of all of them, sorted and joined with `,`), all sorted by name and
//!    joined as `name:value` with `;`.
//! 4. The path is `getNormalizedEncodedURI(path + "?" + query)`: split on `?`, the first query
//!    piece escaped with Node's `querystring.escape`, then the whole run through `encodeURI`.
//! 5. The canonical request is `method \n path \n headers \n body`; the signature is the
//!    lower-case hex HMAC-SHA256 of it keyed with the secret, compared in constant time.

use super::auth::{outside_window, Check};
use super::{crypto, MAX_BODY_BYTES};
use crate::http::Request;
use crate::rules::key::{hex, percent_encode as encode};
use std::collections::BTreeMap;

/// Header with the hex signature.
pub const CONTENTFUL_SIGNATURE_HEADER: &str = "x-contentful-signature";
/// Header with the signing time, Unix milliseconds.
pub const CONTENTFUL_TIMESTAMP_HEADER: &str = "x-contentful-timestamp";
/// Header listing the signed header names, comma-separated.
pub const CONTENTFUL_SIGNED_HEADERS_HEADER: &str = "x-contentful-signed-headers";
/// How long a Contentful signature stays valid, in seconds (the toolkit's default TTL).
pub const CONTENTFUL_TTL_S: u64 = 30;

/// Timestamps at or before 2020-01-01T00:00:00Z are refused by the toolkit.
const MIN_TIMESTAMP_MS: u64 = 1_577_836_800_000;

/// Checks Contentful's request signature against `secret` at `now_ms`.
pub(crate) fn check(req: &Request, secret: &str, now_ms: u64) -> Check {
    let Some(signature) = req.headers.get(CONTENTFUL_SIGNATURE_HEADER).map(str::trim) else {
        return Check::Absent;
    };
    if signature.len() != 64 {
        return Check::Invalid(format!("the {CONTENTFUL_SIGNATURE_HEADER} header must be 64 hex digits"));
    }
    let timestamp = req
        .headers
        .get(CONTENTFUL_TIMESTAMP_HEADER)
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > MIN_TIMESTAMP_MS);
    let Some(timestamp) = timestamp else {
        return Check::Invalid(format!(
            "the {CONTENTFUL_TIMESTAMP_HEADER} header is missing or not Unix milliseconds after 2020"
        ));
    };
    let signed: Vec<&str> = req
        .headers
        .get(CONTENTFUL_SIGNED_HEADERS_HEADER)
        .map(str::trim)
        .unwrap_or("")
        .split(',')
        .collect();
    if signed.len() < 2 {
        return Check::Invalid(format!("the {CONTENTFUL_SIGNED_HEADERS_HEADER} header must list at least two headers"));
    }
    let ttl_ms = CONTENTFUL_TTL_S * 1000;
    if now_ms >= timestamp && now_ms - timestamp >= ttl_ms {
        return Check::Invalid(outside_window(CONTENTFUL_TIMESTAMP_HEADER, (now_ms - timestamp) / 1000, "s", CONTENTFUL_TTL_S, true));
    }
    if timestamp > now_ms && timestamp - now_ms > ttl_ms {
        return Check::Invalid(outside_window(CONTENTFUL_TIMESTAMP_HEADER, (timestamp - now_ms) / 1000, "s", CONTENTFUL_TTL_S, false));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Check::Invalid(format!("the body is over {MAX_BODY_BYTES} bytes, so its {CONTENTFUL_SIGNATURE_HEADER} was not checked"));
    }
    let Ok(url) = crate::rules::key::parse_url(&req.url) else {
        return Check::Invalid("the request URL could not be parsed, so its Contentful signature was not checked".into());
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let canonical = canonical_request(&req.method, &path, req.headers.iter(), &signed, timestamp);
    let Some(mac) = crypto::hmac_sha256(secret.as_bytes(), &[canonical.as_bytes(), &req.body]) else {
        return Check::Invalid(format!("the {CONTENTFUL_SIGNATURE_HEADER} could not be computed"));
    };
    if crypto::str_eq(&hex(&mac), signature) {
        Check::Valid
    } else {
        Check::Invalid(format!(
            "the {CONTENTFUL_SIGNATURE_HEADER} does not match the request: set the space's webhook signing secret to REVALIDATE_SECRET"
        ))
    }
}

/// `method \n path \n headers \n` (the body follows): everything the signature covers.
fn canonical_request<'a>(
    method: &str,
    path_and_query: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    signed: &[&str],
    timestamp: u64,
) -> String {
    let mut picked: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        if signed.contains(&name.as_str()) && !picked.contains_key(&name) {
            picked.insert(name, value.trim().to_string());
        }
    }
    picked.insert(CONTENTFUL_TIMESTAMP_HEADER.to_string(), timestamp.to_string());
    picked.insert(CONTENTFUL_SIGNED_HEADERS_HEADER.to_string(), String::new());
    let names: Vec<&str> = picked.keys().map(String::as_str).collect();
    let names = names.join(",");
    picked.insert(CONTENTFUL_SIGNED_HEADERS_HEADER.to_string(), names);
    let headers: Vec<String> = picked.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{method}\n{}\n{}\n", normalized_encoded_uri(path_and_query), headers.join(";"))
}

/// The toolkit's `getNormalizedEncodedURI`: `[pathname, search] = uri.split('?')` (so only the
/// first `?`-piece of the query counts), `search` through `querystring.escape`, then `encodeURI`
/// over the whole (which escapes the `%` of those escapes once more).
fn normalized_encoded_uri(uri: &str) -> String {
    let mut pieces = uri.split('?');
    let pathname = pieces.next().unwrap_or("");
    let search = pieces.next().unwrap_or("");
    if search.is_empty() {
        encode(pathname, ENCODE_URI_KEEPS)
    } else {
        encode(&format!("{pathname}?{}", encode(search, ESCAPE_KEEPS)), ENCODE_URI_KEEPS)
    }
}

/// ASCII characters JavaScript's `encodeURI` leaves alone besides letters and digits.
const ENCODE_URI_KEEPS: &[u8] = b";,/?:@&=+$-_.!~*'()#";
/// ASCII characters Node's `querystring.escape` (like `encodeURIComponent`) leaves alone besides letters and digits.
const ESCAPE_KEEPS: &[u8] = b"-_.!~*'()";

#[cfg(test)]
mod tests {
    use super::super::auth::authenticate;
    use super::super::{AuthMethod, WebhookError};
    use super::*;

    // Vectors produced with the real `@contentful/node-apps-toolkit@3.16.1` from npm, in node 20
    // (its signing code is identical to v4.0.1's source):
    //   const { signRequest, verifyRequest } = require('@contentful/node-apps-toolkit')
    //   signRequest(SECRET, { method: 'POST', path, headers: SIGNED, body: BODY }, TS)
    // and `verifyRequest(SECRET, { ...request, headers: { ...SIGNED, ...signed } }, 0)` is true.
    const SECRET: &str = "q7Hn2bV9xK4mP0sL8dR3tY6wZ1cF5gJ2hN7vB4kM9pQ3rT8xW0yE6uI1oA5sD2fG";
    const TS: u64 = 1_700_000_000_000;
    const BODY: &str =
        r#"{"sys":{"type":"Entry","contentType":{"sys":{"id":"post"}}},"fields":{"slug":{"en-US":"hello"}}}"#;
    const PLAIN_PATH: &str = "/api/revalidate";
    const PLAIN_SIGNATURE: &str = "a32762670a54b5a0c5c1f67ab8fb01dce9c9bd2841df106e8953901c14e48a87";
    const QUERY_PATH: &str = "/api/revalidate?tag=a%20b&path=/blog/caf%C3%A9";
    const QUERY_SIGNATURE: &str = "bda77ffd69c536896714f369ba8609196d9b178bc87e1d056225f55634f6caa5";
    const SIGNED_HEADERS: &str = "content-type,x-contentful-signed-headers,x-contentful-timestamp,x-contentful-topic";

    fn request(path: &str, signature: &str) -> Request {
        let mut r = Request::new("POST", &format!("https://isr.example.com{path}"))
            .with_header("Content-Type", "application/vnd.contentful.management.v1+json")
            .with_header("X-Contentful-Topic", "ContentManagement.Entry.publish")
            .with_header("X-Contentful-Webhook-Name", "edge-isr")
            .with_header("x-contentful-signature", signature)
            .with_header("x-contentful-signed-headers", SIGNED_HEADERS)
            .with_header("x-contentful-timestamp", &TS.to_string());
        r.body = BODY.to_string().into();
        r
    }

    fn refusal(req: &Request, secret: &str, now: u64) -> String {
        match authenticate(req, secret, now) {
            Err(WebhookError::InvalidCredentials(r)) => r.join("; "),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_vectors_signed_by_the_npm_toolkit() {
        assert_eq!(authenticate(&request(PLAIN_PATH, PLAIN_SIGNATURE), SECRET, TS + 1_000), Ok(AuthMethod::Contentful));
        assert_eq!(authenticate(&request(QUERY_PATH, QUERY_SIGNATURE), SECRET, TS), Ok(AuthMethod::Contentful));
    }

    #[test]
    fn unsigned_headers_do_not_matter_but_signed_ones_do() {
        let mut r = request(PLAIN_PATH, PLAIN_SIGNATURE);
        r.headers.set("x-contentful-webhook-name", "renamed");
        assert_eq!(authenticate(&r, SECRET, TS), Ok(AuthMethod::Contentful));
        r.headers.set("x-contentful-topic", "ContentManagement.Entry.unpublish");
        assert!(refusal(&r, SECRET, TS).contains("does not match"));
    }

    #[test]
    fn refuses_wrong_secret_altered_body_method_or_path() {
        let r = request(PLAIN_PATH, PLAIN_SIGNATURE);
        assert!(refusal(&r, &"x".repeat(64), TS).contains("does not match"));
        let mut altered = r.clone();
        altered.body = BODY.replace("hello", "hellp").into();
        assert!(refusal(&altered, SECRET, TS).contains("does not match"));
        let mut put = r.clone();
        put.method = "PUT".into();
        assert!(refusal(&put, SECRET, TS).contains("does not match"));
        let moved = request("/api/revalidate2", PLAIN_SIGNATURE);
        assert!(refusal(&moved, SECRET, TS).contains("does not match"));
    }

    #[test]
    fn refuses_expired_and_future_timestamps() {
        let r = request(PLAIN_PATH, PLAIN_SIGNATURE);
        assert_eq!(authenticate(&r, SECRET, TS + 29_999), Ok(AuthMethod::Contentful));
        let old = refusal(&r, SECRET, TS + 30_000);
        assert!(old.contains("30 s old") && old.contains("replay"), "{old}");
        assert_eq!(authenticate(&r, SECRET, TS - 30_000), Ok(AuthMethod::Contentful));
        assert!(refusal(&r, SECRET, TS - 30_001).contains("in the future"));
    }

    #[test]
    fn refuses_malformed_headers() {
        let base = request(PLAIN_PATH, PLAIN_SIGNATURE);
        let cases: [(&str, &str, &str); 6] = [
            ("x-contentful-signature", "abc", "64 hex digits"),
            ("x-contentful-timestamp", "", "Unix milliseconds"),
            ("x-contentful-timestamp", "1700000000", "Unix milliseconds"),
            ("x-contentful-timestamp", "17e11", "Unix milliseconds"),
            ("x-contentful-signed-headers", "x-contentful-timestamp", "at least two"),
            ("x-contentful-signed-headers", "", "at least two"),
        ];
        for (name, value, expected) in cases {
            let mut r = base.clone();
            r.headers.set(name, value);
            let reason = refusal(&r, SECRET, TS);
            assert!(reason.contains(expected), "{name}: {value:?}: {reason}");
        }
        let mut r = base.clone();
        r.headers.remove("x-contentful-timestamp");
        assert!(refusal(&r, SECRET, TS).contains("Unix milliseconds"));
        let mut r = base.clone();
        r.headers.set("x-contentful-signature", PLAIN_SIGNATURE.to_ascii_uppercase());
        assert!(refusal(&r, SECRET, TS).contains("does not match"), "hex is compared as the toolkit does, lower-case");
    }

    #[test]
    fn uri_normalisation_matches_node() {
        // node -e "const qs=require('querystring');console.log(encodeURI('/a b/é?'+qs.escape('x=1&y=a%20b ~*')))"
        assert_eq!(normalized_encoded_uri("/a b/é?x=1&y=a%20b ~*"), "/a%20b/%C3%A9?x%253D1%2526y%253Da%252520b%2520~*");
        assert_eq!(normalized_encoded_uri("/p?a?b"), "/p?a");
        assert_eq!(normalized_encoded_uri("/p?"), "/p");
        assert_eq!(normalized_encoded_uri("/[x]#;,"), "/%5Bx%5D#;,");
    }
}

//! Who may call the webhook: any one valid credential among six kinds.
//!
//! CMSes differ in what they can send: some only let you type a URL (`?secret=`), some let you
//! add a header (Bearer, `x-isr-secret`), and some sign each delivery with their own scheme,
//! which also proves the body was not altered (Sanity, Contentful). Accepting all of them lets
//! any CMS call the webhook without code in between. Every credential is checked against the
//! one `REVALIDATE_SECRET`; every comparison is constant-time.

use super::error::WebhookError;
use super::{contentful, crypto, sanity, signature};
use crate::http::Request;

/// Header carrying the secret itself.
pub const SECRET_HEADER: &str = "x-isr-secret";
/// Query parameter carrying the secret itself (for CMSes that only take a URL; it ends up in
/// access logs, so prefer a header or a signature when the CMS allows one).
pub const SECRET_QUERY_PARAM: &str = "secret";

/// Which credential was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `x-isr-secret: <secret>`.
    SecretHeader,
    /// `?secret=<secret>`.
    QueryParameter,
    /// `x-isr-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    IsrSignature,
    /// Sanity's `sanity-webhook-signature`.
    Sanity,
    /// Contentful's `x-contentful-signature` request verification.
    Contentful,
}

impl AuthMethod {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::SecretHeader => "secret-header",
            AuthMethod::QueryParameter => "query-secret",
            AuthMethod::IsrSignature => "isr-signature",
            AuthMethod::Sanity => "sanity-signature",
            AuthMethod::Contentful => "contentful-signature",
        }
    }

    /// Whether this credential vouches for the query string too. A secret sent as it is
    /// (Bearer, header, `?secret=`) vouches for the whole request, and Contentful signs the
    /// path and query; `x-isr-signature` and Sanity's signature cover the body only, so a
    /// captured delivery with `?prefix=/&mode=expire` added would still verify.
    pub fn covers_query(self) -> bool {
        !matches!(self, AuthMethod::IsrSignature | AuthMethod::Sanity)
    }
}

/// The outcome of checking one kind of credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// The request does not carry this kind of credential.
    Absent,
    /// It does, and it is valid.
    Valid,
    /// It does, and it is not valid, for this reason (never revealing the secret).
    Invalid(String),
}

/// Checks the request's credentials against `secret` at time `now_ms` (ms since the epoch).
///
/// Accepts any one valid credential of the kinds in [`AuthMethod`]; a wrong credential of one
/// kind does not spoil a valid one of another. An empty (or blank) `secret` refuses everything
/// with [`WebhookError::SecretNotConfigured`]. Signed credentials are refused when their
/// timestamp is outside [`super::REPLAY_WINDOW_S`] (Contentful: [`super::CONTENTFUL_TTL_S`]) or
/// the body is over [`super::MAX_BODY_BYTES`] (the signature is then not computed).
pub fn authenticate(req: &Request, secret: &str, now_ms: u64) -> Result<AuthMethod, WebhookError> {
    if secret.trim().is_empty() {
        return Err(WebhookError::SecretNotConfigured);
    }
    type Checker = fn(&Request, &str, u64) -> Check;
    let checks: [(AuthMethod, Checker); 6] = [
        (AuthMethod::Bearer, bearer),
        (AuthMethod::SecretHeader, secret_header),
        (AuthMethod::QueryParameter, query_secret),
        (AuthMethod::IsrSignature, signature::check),
        (AuthMethod::Sanity, sanity::check),
        (AuthMethod::Contentful, contentful::check),
    ];
    let mut reasons = Vec::new();
    for (method, checker) in checks {
        match checker(req, secret, now_ms) {
            Check::Valid => return Ok(method),
            Check::Invalid(reason) => reasons.push(reason),
            Check::Absent => {}
        }
    }
    if reasons.is_empty() {
        Err(WebhookError::MissingCredentials)
    } else {
        Err(WebhookError::InvalidCredentials(reasons))
    }
}

fn bearer(req: &Request, secret: &str, _now_ms: u64) -> Check {
    let Some(value) = req.headers.get("authorization") else {
        return Check::Absent;
    };
    let token = value
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        None => Check::Invalid("the Authorization header is not of the form `Bearer <secret>`".into()),
        Some(token) if crypto::secret_matches(token, secret) => Check::Valid,
        Some(_) => Check::Invalid("the Bearer token does not match REVALIDATE_SECRET".into()),
    }
}

fn secret_header(req: &Request, secret: &str, _now_ms: u64) -> Check {
    match req.headers.get(SECRET_HEADER) {
        None => Check::Absent,
        Some(value) if crypto::secret_matches(value.trim(), secret) => Check::Valid,
        Some(_) => Check::Invalid(format!("the {SECRET_HEADER} header does not match REVALIDATE_SECRET")),
    }
}

fn query_secret(req: &Request, secret: &str, _now_ms: u64) -> Check {
    let Ok(url) = crate::rules::key::parse_url(&req.url) else {
        return Check::Absent;
    };
    let values: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == SECRET_QUERY_PARAM)
        .map(|(_, v)| v.into_owned())
        .collect();
    match values.as_slice() {
        [] => Check::Absent,
        [value] if crypto::secret_matches(value, secret) => Check::Valid,
        [_] => Check::Invalid(
            "the ?secret= query parameter does not match REVALIDATE_SECRET (percent-encode characters such as + & # in it)".into(),
        ),
        _ => Check::Invalid("send ?secret= only once".into()),
    }
}

/// A replay-window message for a timestamp `skew` away from now, in the unit named.
pub(crate) fn outside_window(header: &str, skew: u64, unit: &str, window_s: u64, now_is_later: bool) -> String {
    let when = if now_is_later { "old" } else { "in the future" };
    format!(
        "the {header} timestamp is {skew} {unit} {when}; signed requests are only accepted within {window_s} s \
         of the worker's clock (replay protection): sign each delivery with the current time"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-value";
    const NOW: u64 = 1_700_000_000_000;

    fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    #[test]
    fn an_unconfigured_secret_refuses_everything() {
        let req = post("https://isr.test/api/revalidate?secret=").with_header("authorization", "Bearer ");
        for blank in ["", "   "] {
            let err = authenticate(&req, blank, NOW).unwrap_err();
            assert_eq!(err, WebhookError::SecretNotConfigured);
            assert_eq!(err.status(), 401);
            assert!(err.message().contains("REVALIDATE_SECRET is not configured"));
        }
    }

    #[test]
    fn no_credentials_is_401_saying_what_to_send() {
        let err = authenticate(&post("https://isr.test/api/revalidate"), SECRET, NOW).unwrap_err();
        assert_eq!(err, WebhookError::MissingCredentials);
        assert_eq!(err.status(), 401);
        assert!(err.message().contains("Authorization: Bearer"));
    }

    #[test]
    fn bearer_token() {
        let ok = post("https://isr.test/r").with_header("Authorization", &format!("Bearer {SECRET}"));
        assert_eq!(authenticate(&ok, SECRET, NOW), Ok(AuthMethod::Bearer));
        let lower = post("https://isr.test/r").with_header("authorization", &format!("bearer  {SECRET} "));
        assert_eq!(authenticate(&lower, SECRET, NOW), Ok(AuthMethod::Bearer));
        for bad in ["Bearer wrong", &format!("Basic {SECRET}"), SECRET, "Bearer", &format!("Bearer {SECRET}x")] {
            let req = post("https://isr.test/r").with_header("authorization", bad);
            let err = authenticate(&req, SECRET, NOW).unwrap_err();
            assert!(matches!(err, WebhookError::InvalidCredentials(_)), "{bad}: {err:?}");
            assert!(!err.message().contains(SECRET), "never echo the secret");
        }
    }

    #[test]
    fn secret_header() {
        let ok = post("https://isr.test/r").with_header("X-ISR-Secret", SECRET);
        assert_eq!(authenticate(&ok, SECRET, NOW), Ok(AuthMethod::SecretHeader));
        let bad = post("https://isr.test/r").with_header("x-isr-secret", "s3cret-valu");
        let err = authenticate(&bad, SECRET, NOW).unwrap_err();
        assert!(err.message().contains("x-isr-secret header does not match"), "{err}");
    }

    #[test]
    fn query_secret() {
        let ok = post(&format!("https://isr.test/r?tag=a&secret={SECRET}"));
        assert_eq!(authenticate(&ok, SECRET, NOW), Ok(AuthMethod::QueryParameter));
        let encoded = post("https://isr.test/r?secret=a%2Bb%26c");
        assert_eq!(authenticate(&encoded, "a+b&c", NOW), Ok(AuthMethod::QueryParameter));
        let wrong = post("https://isr.test/r?secret=nope");
        assert!(matches!(authenticate(&wrong, SECRET, NOW), Err(WebhookError::InvalidCredentials(_))));
        let twice = post(&format!("https://isr.test/r?secret=x&secret={SECRET}"));
        assert!(authenticate(&twice, SECRET, NOW).unwrap_err().message().contains("only once"));
    }

    #[test]
    fn one_valid_credential_is_enough_and_reasons_are_listed_otherwise() {
        let req = post(&format!("https://isr.test/r?secret={SECRET}")).with_header("authorization", "Bearer wrong");
        assert_eq!(authenticate(&req, SECRET, NOW), Ok(AuthMethod::QueryParameter));
        let req = post("https://isr.test/r?secret=nope").with_header("authorization", "Bearer wrong");
        let err = authenticate(&req, SECRET, NOW).unwrap_err();
        assert_eq!(err.status(), 401);
        let WebhookError::InvalidCredentials(reasons) = &err else { panic!("{err:?}") };
        assert_eq!(reasons.len(), 2);
    }

    #[test]
    fn unparsable_urls_and_odd_headers_do_not_panic() {
        let req = Request::new("POST", "not a url").with_header("authorization", "Bearer \u{0}é");
        assert!(authenticate(&req, SECRET, NOW).is_err());
        assert_eq!(AuthMethod::Sanity.as_str(), "sanity-signature");
    }
}

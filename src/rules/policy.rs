//! What may be cached, for how long, and with which tags: pure functions of headers.
//!
//! Mirrors what users expect from Next.js ISR behind a CDN: `s-maxage` (or the CDN-specific
//! `CDN-Cache-Control`) sets the revalidate time, `private`/`no-store`/`Set-Cookie` keep a
//! response out of the shared cache, and requests carrying credentials never see a cached page.

use crate::rules::config::{name_matches, Config};
use crate::http::{Headers, Request};
use crate::rules::key::{self, CacheKey};
use crate::rules::state::BypassReason;

/// Most tags kept per page (Next.js's limit).
pub const MAX_TAGS_PER_PAGE: usize = 128;
/// Longest tag, in characters (Next.js's limit).
pub const MAX_TAG_CHARS: usize = 256;

/// The only request headers a request taken for the cache (a HIT, STALE, 304, or a MISS
/// rendered for it) is decided by: [`classify_parsed`]'s credentials and event-stream rules, and
/// the stored page's `ETag` against `If-None-Match`. The engine keeps only these of a cacheable
/// request ([`cache_view`]), so every test of the cache path runs with what the Workers fast
/// path takes from the runtime (`src/cloudflare/js.rs`, `request_view_text`, which must name the
/// same headers: a test below reads it): four lookups instead of a walk over every header.
pub const CACHE_PATH_HEADERS: [&str; 4] = ["authorization", "cookie", "accept", "if-none-match"];

/// `req` as the cache path sees it: its method, URL and [`CACHE_PATH_HEADERS`], no body (a
/// cacheable request is a GET or HEAD).
/// Nothing is copied: a request the Workers fast path took as this view already is one.
pub fn cache_view(req: Request) -> Request {
    let Request { method, url, mut headers, .. } = req;
    headers.retain(|name| CACHE_PATH_HEADERS.contains(&name));
    Request { method, url, headers, body: crate::http::Body::new() }
}

/// What to do with an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestDecision {
    /// Look the page up under this key.
    Cacheable(CacheKey),
    /// Send the request to the origin as it is.
    Bypass(BypassReason),
}

/// Decides whether a request may be answered from the shared cache.
pub fn classify_request(req: &Request, config: &Config) -> RequestDecision {
    classify_parsed(req, key::parse_url(&req.url).ok().as_ref(), config)
}

/// [`classify_request`] with the request's URL already parsed by [`key::parse_url`] (`None`
/// when it did not parse).
pub fn classify_parsed(req: &Request, url: Option<&url::Url>, config: &Config) -> RequestDecision {
    if let Some(reason) = bypass_reason(req, config) {
        return RequestDecision::Bypass(reason);
    }
    match url.map(|u| key::normalise_parsed(u, config)) {
        Some(Ok(k)) => RequestDecision::Cacheable(k),
        _ => RequestDecision::Bypass(BypassReason::Unkeyable),
    }
}

/// Why `req` must not be answered from the cache whatever its URL (its method, credentials,
/// an event stream), if it must not: [`classify_parsed`] before it keys the URL.
pub fn bypass_reason(req: &Request, config: &Config) -> Option<BypassReason> {
    if req.method != "GET" && req.method != "HEAD" {
        return Some(BypassReason::Method);
    }
    if req.headers.contains("authorization") {
        return Some(BypassReason::Authorization);
    }
    let has_session_cookie = req
        .headers
        .get_all("cookie")
        .flat_map(|c| c.split(';'))
        .filter_map(|pair| pair.split('=').next())
        .any(|name| config.bypass_cookies.iter().any(|p| name_matches(p, name.trim())));
    if has_session_cookie {
        return Some(BypassReason::SessionCookie);
    }
    if req.headers.get_all("accept").any(|a| a.to_ascii_lowercase().contains("text/event-stream")) {
        return Some(BypassReason::EventStream);
    }
    None
}

/// One `Cache-Control`-style header, parsed into directives (names lower-cased).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives(Vec<(String, Option<String>)>);

impl Directives {
    /// Parses `a, b=1, c="x"`; tolerant of spacing, case and junk (unknown directives are kept and ignored).
    pub fn parse(value: &str) -> Self {
        Directives(
            value
                .split(',')
                .filter_map(|part| {
                    let part = part.trim();
                    if part.is_empty() {
                        return None;
                    }
                    let (name, arg) = match part.split_once('=') {
                        Some((n, a)) => (n, Some(a.trim().trim_matches('"').to_string())),
                        None => (part, None),
                    };
                    Some((name.trim().to_ascii_lowercase(), arg))
                })
                .collect(),
        )
    }

    /// Whether the directive is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The directive's value as seconds, if present and a valid non-negative number
    /// (RFC 9111 §1.2.2: an invalid delta-seconds is ignored; huge values saturate).
    pub fn seconds(&self, name: &str) -> Option<u32> {
        let (_, arg) = self.0.iter().find(|(n, _)| n == name)?;
        let arg = arg.as_deref()?;
        if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(arg.parse::<u64>().map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32))
    }

    fn forbids_shared_storage(&self) -> bool {
        self.has("private") || self.has("no-store") || self.has("no-cache")
    }
}

/// Statuses ISR stores (RFC 9110 heuristically cacheable ones that make sense for pages).
pub fn is_cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 301 | 308 | 404 | 410)
}

/// Resolves how long an origin response stays fresh, first match wins:
/// `Cloudflare-CDN-Cache-Control` / `CDN-Cache-Control` `max-age`, then `Cache-Control`
/// `s-maxage`, then the configured default (a shorter one for 404/410).
pub fn revalidate_seconds(status: u16, headers: &Headers, config: &Config) -> Result<u32, BypassReason> {
    let cc = Directives::parse(&headers.get_all("cache-control").collect::<Vec<_>>().join(","));
    if cc.has("private") || cc.has("no-store") {
        return Err(BypassReason::NotPublic);
    }
    for name in ["cloudflare-cdn-cache-control", "cdn-cache-control"] {
        if let Some(value) = headers.get(name) {
            let d = Directives::parse(value);
            if d.forbids_shared_storage() {
                return Err(BypassReason::NotPublic);
            }
            if let Some(s) = d.seconds("max-age").or_else(|| d.seconds("s-maxage")) {
                return nonzero(s);
            }
        }
    }
    if cc.has("no-cache") {
        return Err(BypassReason::NotPublic);
    }
    if let Some(s) = cc.seconds("s-maxage") {
        return nonzero(s);
    }
    Ok(if matches!(status, 404 | 410) {
        config.not_found_revalidate_s
    } else {
        config.default_revalidate_s
    })
    .and_then(nonzero)
}

/// Whether the headers set a shared-cache lifetime themselves (`s-maxage`, or a CDN cache
/// header): if not, a route's own revalidate time applies instead of the default.
pub fn has_freshness_headers(headers: &Headers) -> bool {
    headers.contains("cloudflare-cdn-cache-control")
        || headers.contains("cdn-cache-control")
        || Directives::parse(&headers.get_all("cache-control").collect::<Vec<_>>().join(",")).seconds("s-maxage").is_some()
}

fn nonzero(s: u32) -> Result<u32, BypassReason> {
    if s == 0 {
        Err(BypassReason::ZeroRevalidate)
    } else {
        Ok(s)
    }
}

/// Tags from `Cache-Tag` (comma-separated), `Surrogate-Key` (space-separated) and Next.js's
/// `x-next-cache-tags` (comma-separated): trimmed, de-duplicated, in order of appearance.
/// Tags over [`MAX_TAG_CHARS`] or with control characters are dropped; at most
/// [`MAX_TAGS_PER_PAGE`] are kept.
pub fn tags_from_headers(headers: &Headers) -> Vec<String> {
    let comma = ["cache-tag", "x-next-cache-tags"]
        .into_iter()
        .flat_map(|n| headers.get_all(n).flat_map(|v| v.split(',')).collect::<Vec<_>>());
    let space = headers.get_all("surrogate-key").flat_map(|v| v.split_ascii_whitespace());
    let mut tags: Vec<String> = Vec::new();
    for tag in comma.chain(space).map(str::trim) {
        if is_valid_tag(tag) && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
            if tags.len() == MAX_TAGS_PER_PAGE {
                break;
            }
        }
    }
    tags
}

/// A tag is 1 to 256 characters without control characters.
pub fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.chars().count() <= MAX_TAG_CHARS && !tag.chars().any(char::is_control)
}

/// Headers never stored with a page: hop-by-hop fields (RFC 9110 §7.6.1), fields the runtime
/// recomputes, cookies, and the cache-control fields this cache consumes itself.
const UNSTORED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "set-cookie",
    "age",
    "date",
    "etag",
    "last-modified",
    "cache-tag",
    "surrogate-key",
    "surrogate-control",
    "x-next-cache-tags",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
];

/// Headers dropped, in this order, when a page's headers do not fit in KV metadata:
/// informational ones whose loss changes nothing for the visitor.
pub const DROPPABLE_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "via",
    "server-timing",
    "x-request-id",
    "x-runtime",
    "alt-svc",
    "report-to",
    "nel",
    "expires",
    "pragma",
];

/// The origin response headers kept with a stored page. Fields named in `Connection` are
/// hop-by-hop too (RFC 9110 §7.6.1) and are dropped with it.
pub fn headers_to_store(headers: &Headers) -> Headers {
    let connection_listed: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    headers
        .iter()
        .filter(|(n, _)| !UNSTORED_HEADERS.contains(n) && !n.starts_with("x-isr-") && !connection_listed.iter().any(|c| c == n))
        .collect()
}

/// What to do with an origin response to a cacheable request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Store it, fresh for `revalidate_s` seconds, under these tags.
    Store {
        /// Seconds until the page is stale.
        revalidate_s: u32,
        /// Tags from the origin's tag headers.
        tags: Vec<String>,
    },
    /// Pass it on without storing.
    DoNotStore(BypassReason),
}

/// Decides whether an origin response may be stored in the shared cache.
pub fn classify_response(status: u16, headers: &Headers, body_len: usize, config: &Config) -> ResponseDecision {
    if !is_cacheable_status(status) {
        return ResponseDecision::DoNotStore(BypassReason::Status(status));
    }
    if headers.contains("set-cookie") {
        return ResponseDecision::DoNotStore(BypassReason::SetCookie);
    }
    let varies = headers
        .get_all("vary")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|v| !v.is_empty() && !v.eq_ignore_ascii_case("accept-encoding"));
    if varies {
        return ResponseDecision::DoNotStore(BypassReason::Vary);
    }
    if body_len > crate::store::limits::MAX_VALUE_BYTES {
        return ResponseDecision::DoNotStore(BypassReason::TooLarge);
    }
    match revalidate_seconds(status, headers, config) {
        Ok(revalidate_s) => ResponseDecision::Store {
            revalidate_s,
            tags: tags_from_headers(headers),
        },
        Err(reason) => ResponseDecision::DoNotStore(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::for_origin("http://origin.test")
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    #[test]
    fn the_cache_path_keeps_only_the_headers_it_reads() {
        let req = get("https://e.com/a")
            .with_header("Authorization", "Bearer x")
            .with_header("cookie", "a=1")
            .with_header("x-forwarded-for", "203.0.113.9")
            .with_header("Accept", "text/html")
            .with_header("if-none-match", "\"e\"")
            .with_header("user-agent", "test");
        let view = cache_view(req);
        let names: Vec<&str> = view.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["authorization", "cookie", "accept", "if-none-match"]);
        assert_eq!((view.method.as_str(), view.url.as_str()), ("GET", "https://e.com/a"));
    }

    #[test]
    fn the_workers_fast_path_takes_the_same_headers() {
        // `request_view_text` (src/cloudflare/js.rs, JavaScript inside a Rust string) names the
        // headers it takes from the runtime; they must be these, or a rule would not see its header.
        let js = include_str!("../cloudflare/js.rs");
        let listed = format!("const CACHE_PATH_HEADERS = [{}];", CACHE_PATH_HEADERS.map(|n| format!("\"{n}\"")).join(", "));
        assert!(js.contains(&listed), "src/cloudflare/js.rs should say: {listed}");
    }

    #[test]
    fn only_anonymous_get_and_head_are_cacheable() {
        let c = cfg();
        assert!(matches!(classify_request(&get("https://e.com/"), &c), RequestDecision::Cacheable(_)));
        assert!(matches!(classify_request(&Request::new("HEAD", "https://e.com/"), &c), RequestDecision::Cacheable(_)));
        let cases = [
            (Request::new("POST", "https://e.com/"), BypassReason::Method),
            (get("https://e.com/").with_header("Authorization", "Bearer x"), BypassReason::Authorization),
            (get("https://e.com/").with_header("cookie", "a=1; __session=abc"), BypassReason::SessionCookie),
            (get("https://e.com/").with_header("cookie", "wordpress_logged_in_123=x"), BypassReason::SessionCookie),
            (get("not a url"), BypassReason::Unkeyable),
        ];
        for (req, reason) in cases {
            assert_eq!(classify_request(&req, &c), RequestDecision::Bypass(reason), "{req:?}");
        }
        let harmless_cookie = get("https://e.com/").with_header("cookie", "theme=dark; session_hint=1");
        assert!(matches!(classify_request(&harmless_cookie, &c), RequestDecision::Cacheable(_)));
    }

    #[test]
    fn revalidate_time_first_match_wins() {
        let c = cfg();
        let r = |pairs: &[(&str, &str)]| revalidate_seconds(200, &h(pairs), &c);
        assert_eq!(r(&[]), Ok(60));
        assert_eq!(r(&[("cache-control", "public, max-age=0, s-maxage=30")]), Ok(30));
        assert_eq!(r(&[("cache-control", "s-maxage=30"), ("cdn-cache-control", "max-age=10")]), Ok(10));
        assert_eq!(
            r(&[("cdn-cache-control", "max-age=10"), ("cloudflare-cdn-cache-control", "max-age=5")]),
            Ok(5)
        );
        assert_eq!(r(&[("cache-control", "max-age=300")]), Ok(60), "browser max-age is not ours");
        assert_eq!(r(&[("cache-control", "S-MaxAge=\"45\"")]), Ok(45));
        assert_eq!(r(&[("cache-control", "s-maxage=abc")]), Ok(60), "invalid value ignored");
        assert_eq!(r(&[("cache-control", "s-maxage=99999999999")]), Ok(u32::MAX));
        assert_eq!(revalidate_seconds(404, &h(&[]), &c), Ok(30));
        assert_eq!(revalidate_seconds(410, &h(&[("cache-control", "s-maxage=5")]), &c), Ok(5));
    }

    #[test]
    fn private_no_store_no_cache_and_zero_are_not_stored() {
        let c = cfg();
        let r = |pairs: &[(&str, &str)]| revalidate_seconds(200, &h(pairs), &c);
        assert_eq!(r(&[("cache-control", "private, s-maxage=60")]), Err(BypassReason::NotPublic));
        assert_eq!(r(&[("cache-control", "no-store")]), Err(BypassReason::NotPublic));
        assert_eq!(r(&[("cache-control", "no-cache")]), Err(BypassReason::NotPublic));
        assert_eq!(r(&[("cdn-cache-control", "no-store"), ("cache-control", "s-maxage=9")]), Err(BypassReason::NotPublic));
        assert_eq!(r(&[("cache-control", "s-maxage=0")]), Err(BypassReason::ZeroRevalidate));
        assert_eq!(
            r(&[("cache-control", "no-cache"), ("cdn-cache-control", "max-age=20")]),
            Ok(20),
            "the CDN header speaks for shared caches"
        );
    }

    #[test]
    fn response_classification() {
        let c = cfg();
        let store = |status, pairs: &[(&str, &str)]| classify_response(status, &h(pairs), 10, &c);
        assert!(matches!(store(200, &[]), ResponseDecision::Store { revalidate_s: 60, .. }));
        for status in [200, 203, 301, 308, 404, 410] {
            assert!(matches!(store(status, &[]), ResponseDecision::Store { .. }), "{status}");
        }
        for status in [201, 204, 302, 307, 400, 403, 500, 502, 503] {
            assert_eq!(store(status, &[]), ResponseDecision::DoNotStore(BypassReason::Status(status)));
        }
        assert_eq!(store(200, &[("set-cookie", "a=1")]), ResponseDecision::DoNotStore(BypassReason::SetCookie));
        assert_eq!(store(200, &[("vary", "Cookie")]), ResponseDecision::DoNotStore(BypassReason::Vary));
        assert_eq!(store(200, &[("vary", "*")]), ResponseDecision::DoNotStore(BypassReason::Vary));
        assert!(matches!(store(200, &[("vary", "Accept-Encoding")]), ResponseDecision::Store { .. }));
        assert_eq!(
            classify_response(200, &h(&[]), 26 * 1024 * 1024, &c),
            ResponseDecision::DoNotStore(BypassReason::TooLarge)
        );
    }

    #[test]
    fn tags_come_from_all_three_headers() {
        let headers = h(&[
            ("cache-tag", "posts, post-1,,posts"),
            ("surrogate-key", "  author-7   posts "),
            ("x-next-cache-tags", "_N_T_/blog"),
        ]);
        assert_eq!(tags_from_headers(&headers), vec!["posts", "post-1", "_N_T_/blog", "author-7"]);
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        let many: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
        let headers = h(&[("cache-tag", &format!("{long},ok,bad\u{7}tag")), ("surrogate-key", &many.join(" "))]);
        let tags = tags_from_headers(&headers);
        assert_eq!(tags[0], "ok");
        assert_eq!(tags.len(), MAX_TAGS_PER_PAGE);
    }

    #[test]
    fn stored_headers_drop_hop_by_hop_cookies_and_cache_fields() {
        let stored = headers_to_store(&h(&[
            ("content-type", "text/html"),
            ("connection", "close, X-Internal"),
            ("x-internal", "secret"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "a=1"),
            ("cache-tag", "x"),
            ("cdn-cache-control", "max-age=1"),
            ("x-isr-cache", "HIT"),
            ("location", "/next"),
            ("cache-control", "public, s-maxage=60"),
        ]));
        let names: Vec<&str> = stored.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["content-type", "location", "cache-control"]);
    }
}

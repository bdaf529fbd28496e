//! Cache keys: one stored page per distinct origin page, whatever the visitor typed.
//!
//! A key is (host, normalised path, kept query). The origin is always fetched at exactly the
//! key's path and query, never at the raw URL, so two different origin pages can never share a
//! key: whatever the normaliser merges, the origin sees merged too. Normalisation makes the
//! many spellings of one page (`/a//b`, `/a/./b`, `/%61/b`, `?utm_source=x`) one key, and keeps
//! keys within KV's 512-byte limit by truncating long ones with a hash suffix.

use crate::rules::config::{Config, TrailingSlash};
use sha2::{Digest, Sha256};
use std::fmt;
use url::Url;

/// Longest normalised path that is cached; longer paths are passed to the origin uncached.
pub const MAX_PATH_BYTES: usize = 2048;

/// Longest page id inside a KV key; longer ids keep their start and get a hash suffix.
pub const MAX_PAGE_ID_BYTES: usize = 400;

/// A normalised cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Lower-case host name, no port.
    pub host: String,
    /// Normalised path, always starting with `/`.
    pub path: String,
    /// Kept query parameters, sorted and re-encoded, without `?` (may be empty).
    pub query: String,
}

/// Why a URL cannot be cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not an absolute http(s) URL with a host.
    InvalidUrl,
    /// The path is longer than [`MAX_PATH_BYTES`].
    PathTooLong(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::InvalidUrl => write!(f, "not an absolute http(s) URL"),
            KeyError::PathTooLong(n) => write!(f, "path of {n} bytes is over {MAX_PATH_BYTES}"),
        }
    }
}

impl CacheKey {
    /// `host/path?query`: the page's identity, also shown in logs and on the admin page.
    pub fn page_id(&self) -> String {
        let mut id = format!("{}{}", self.host, self.path);
        if !self.query.is_empty() {
            id.push('?');
            id.push_str(&self.query);
        }
        shorten(id, MAX_PAGE_ID_BYTES)
    }

    /// The origin URL to render this page from: the origin base joined with the key's path and query.
    pub fn origin_url(&self, origin: &Url) -> String {
        let base = origin.as_str().trim_end_matches('/');
        let base = base.split(['?', '#']).next().unwrap_or(base);
        if self.query.is_empty() {
            format!("{base}{}", self.path)
        } else {
            format!("{base}{}?{}", self.path, self.query)
        }
    }
}

/// Keeps `id` as it is when it fits in `max` bytes; otherwise keeps its start (so prefix
/// listing still finds it) and appends `~` and 32 hex digits of its SHA-256.
pub fn shorten(id: String, max: usize) -> String {
    if id.len() <= max {
        return id;
    }
    let digest = hex(&Sha256::digest(id.as_bytes())[..16]);
    let mut cut = max - 1 - digest.len();
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}", &id[..cut], digest)
}

/// Bytes of a hashed suffix added by [`shorten`] (`~` and 32 hex digits).
const SHORTENED_SUFFIX_BYTES: usize = 33;

/// The part of an id prefix that every page id starting with it keeps when shortened: ids
/// longer than [`MAX_PAGE_ID_BYTES`] keep only their first `MAX_PAGE_ID_BYTES - 33` bytes (a
/// little less at a character boundary), so a longer prefix is listed by that start, and the
/// listed ids are matched with [`id_may_start_with`].
pub fn listing_prefix(prefix: &str) -> &str {
    let mut cut = MAX_PAGE_ID_BYTES - SHORTENED_SUFFIX_BYTES - 3;
    if prefix.len() <= cut {
        return prefix;
    }
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    &prefix[..cut]
}

/// Whether the page with id `id` may have an id (before shortening) starting with `prefix`:
/// surely when `id` itself does; possibly when `id` is shortened and its kept start is a
/// prefix of `prefix` (the rest is hashed away, so such a page is matched: invalidating a page
/// too many is harmless, missing one is not).
pub fn id_may_start_with(id: &str, prefix: &str) -> bool {
    if id.starts_with(prefix) {
        return true;
    }
    let Some(kept) = shortened_start(id) else {
        return false;
    };
    prefix.starts_with(kept)
}

/// The kept start of an id that [`shorten`] shortened (`start~<32 hex>`, exactly as long as
/// a shortened id can be), or `None`.
fn shortened_start(id: &str) -> Option<&str> {
    if id.len() + 3 < MAX_PAGE_ID_BYTES || id.len() > MAX_PAGE_ID_BYTES {
        return None;
    }
    let (start, digest) = id.split_at_checked(id.len().checked_sub(SHORTENED_SUFFIX_BYTES)?)?;
    let hex = digest.strip_prefix('~')?;
    hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()).then_some(start)
}

/// Percent-encodes (upper-case hex, UTF-8) every byte but ASCII letters, digits and `keeps`.
pub fn percent_encode(s: &str, keeps: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keeps.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a URL whose host is plain ASCII (as the runtime delivers request URLs: hosts in
/// punycode, `xn--...`).
///
/// The wasm is built with `url`'s IDNA mapping switched off (`idna_adapter` 1.0, to keep it
/// small), which is only correct for ASCII hosts without percent-escapes; anything else is
/// refused here, before `url` sees it. Use this instead of `Url::parse` for every URL that comes
/// from outside.
pub fn parse_url(raw: &str) -> Result<Url, url::ParseError> {
    // Find the authority the way the WHATWG parser does: tabs and newlines removed, any number
    // of slashes or backslashes after the scheme.
    let cleaned: std::borrow::Cow<'_, str> = if raw.contains(['\t', '\n', '\r']) {
        raw.replace(['\t', '\n', '\r'], "").into()
    } else {
        raw.into() // the usual case, on every request: no copy
    };
    let rest = cleaned.split_once(':').map_or("", |(_, rest)| rest);
    let authority = rest.trim_start_matches(['/', '\\']).split(['/', '\\', '?', '#']).next().unwrap_or("");
    if !authority.is_ascii() || authority.contains('%') {
        return Err(url::ParseError::IdnaError);
    }
    Url::parse(raw)
}

/// Builds the cache key of `url` under `config`.
pub fn normalise(url: &str, config: &Config) -> Result<CacheKey, KeyError> {
    normalise_parsed(&parse_url(url).map_err(|_| KeyError::InvalidUrl)?, config)
}

/// [`normalise`] for a URL already parsed with [`parse_url`] (the engine parses each request's
/// URL once, to route it and to key it).
pub fn normalise_parsed(parsed: &Url, config: &Config) -> Result<CacheKey, KeyError> {
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(KeyError::InvalidUrl);
    }
    let request_host = parsed.host_str().ok_or(KeyError::InvalidUrl)?.to_ascii_lowercase();
    let host = match config.cache_hosts.first() {
        None => request_host,
        Some(canonical) => {
            if config.cache_hosts.contains(&request_host) {
                request_host
            } else {
                canonical.clone()
            }
        }
    };
    let path = normalise_path(parsed.path(), config.trailing_slash);
    if path.len() > MAX_PATH_BYTES {
        return Err(KeyError::PathTooLong(path.len()));
    }
    let mut pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| config.query_params.keeps(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let query = if pairs.is_empty() {
        String::new()
    } else {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
    };
    Ok(CacheKey { host, path, query })
}

/// Normalises an already WHATWG-parsed path: collapses empty segments, resolves `.` and `..`
/// (again, after decoding), decodes percent-escapes of unreserved characters, upper-cases the
/// hex of the others, and applies the trailing-slash policy. Case is kept: paths are case-sensitive.
pub fn normalise_path(raw: &str, trailing: TrailingSlash) -> String {
    let mut segments: Vec<String> = Vec::new();
    for segment in raw.split('/') {
        let segment = normalise_escapes(segment);
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let had_trailing = raw.len() > 1 && raw.ends_with('/');
    let trailing = match trailing {
        TrailingSlash::Keep => had_trailing,
        TrailingSlash::Strip => false,
        TrailingSlash::Add => segments.last().is_some_and(|s| !s.contains('.')),
    };
    let mut path = String::with_capacity(raw.len() + 1);
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    path
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986 §2.3: they are equivalent to the
/// character), upper-cases the hex digits of every other escape (§6.2.2.1), and escapes a `%`
/// that starts no escape. Every `%` in the result starts an escape, so normalising twice gives
/// the same path.
fn normalise_escapes(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_string();
    }
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() {
            // Both digits are ASCII, so this slice is on character boundaries.
            let hex = &segment[i + 1..i + 3];
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        if bytes[i] == b'%' {
            // A '%' that starts no escape is itself escaped: otherwise it could combine with a
            // decoded character into a new escape (`%%32e` → `%2e`), and the origin, decoding
            // once more, would see a dot segment or a character the visitor never sent.
            out.push_str("%25");
            i += 1;
            continue;
        }
        let ch = segment[i..].chars().next().unwrap_or('%');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::QueryParams;

    fn cfg() -> Config {
        Config::for_origin("http://origin.test")
    }

    fn key(url: &str) -> CacheKey {
        normalise(url, &cfg()).unwrap()
    }

    #[test]
    fn spellings_of_one_page_share_a_key() {
        let base = key("https://Example.COM/blog/post");
        for variant in [
            "https://example.com/blog/post",
            "http://example.com:8080/blog/post",
            "https://example.com//blog//post",
            "https://example.com/blog/./post",
            "https://example.com/blog/x/../post",
            "https://example.com/blog/x/%2e%2e/post",
            "https://example.com/%62log/post",
            "https://example.com/blog/post#section",
            "https://example.com/blog/post?utm_source=x",
        ] {
            assert_eq!(key(variant), base, "{variant}");
        }
    }

    #[test]
    fn different_pages_get_different_keys() {
        let a = key("https://example.com/About");
        assert_ne!(a, key("https://example.com/about"), "paths are case-sensitive");
        assert_ne!(key("https://example.com/a%2Fb"), key("https://example.com/a/b"), "an encoded slash is not a slash");
        assert_ne!(key("https://example.com/a/"), key("https://example.com/a"), "trailing slash kept by default");
        assert_ne!(key("https://a.example.com/"), key("https://b.example.com/"));
    }

    #[test]
    fn dot_segments_cannot_escape_the_root() {
        assert_eq!(key("https://example.com/../../etc/passwd").path, "/etc/passwd");
        assert_eq!(key("https://example.com/%2e%2e/%2E%2E/x").path, "/x");
        // Found by fuzzing: a stray '%' must not combine with a decoded '2' into "%2e".
        let k = key("https://e.com/%%32e%%32e/%%32e%%32e/etc/passwd");
        let origin = Url::parse("http://127.0.0.1:8788/base/").unwrap();
        let fetched = Url::parse(&k.origin_url(&origin)).unwrap();
        assert!(fetched.path().starts_with("/base/"), "{}", fetched.path());
    }

    #[test]
    fn escapes_are_canonical() {
        assert_eq!(key("https://example.com/a%7eb%2fc").path, "/a~b%2Fc");
        assert_eq!(key("https://example.com/caf%C3%A9").path, "/caf%C3%A9");
        assert_eq!(key("https://example.com/café").path, "/caf%C3%A9");
        assert_eq!(key("https://example.com/100%").path, "/100%25");
        assert_eq!(key("https://example.com/%2%63").path, "/%252c", "no new escape from a stray %");
    }

    #[test]
    fn trailing_slash_policies() {
        assert_eq!(normalise_path("/a/", TrailingSlash::Strip), "/a");
        assert_eq!(normalise_path("/a", TrailingSlash::Add), "/a/");
        assert_eq!(normalise_path("/feed.xml", TrailingSlash::Add), "/feed.xml");
        assert_eq!(normalise_path("/", TrailingSlash::Strip), "/");
        assert_eq!(normalise_path("//", TrailingSlash::Keep), "/");
    }

    #[test]
    fn query_keeps_only_allowed_params_sorted() {
        let mut c = cfg();
        c.query_params = QueryParams::Only(vec!["page".into(), "sort".into()]);
        let k = normalise("https://e.com/list?sort=new&utm_source=x&page=2&page=1", &c).unwrap();
        assert_eq!(k.query, "page=1&page=2&sort=new");
        let same = normalise("https://e.com/list?page=2&sort=new&page=1&fbclid=z", &c).unwrap();
        assert_eq!(k, same);
        assert_eq!(key("https://e.com/list?page=2").query, "", "default keeps no parameter");
    }

    #[test]
    fn spoofed_hosts_fall_back_to_the_canonical_host() {
        let mut c = cfg();
        c.cache_hosts = vec!["www.example.com".into(), "example.com".into()];
        assert_eq!(normalise("https://evil.test/", &c).unwrap().host, "www.example.com");
        assert_eq!(normalise("https://example.com/", &c).unwrap().host, "example.com");
    }

    #[test]
    fn long_keys_fit_kv_and_stay_distinct() {
        let long_a = format!("https://e.com/{}", "a".repeat(1500));
        let long_b = format!("https://e.com/{}b", "a".repeat(1499));
        let (a, b) = (key(&long_a).page_id(), key(&long_b).page_id());
        assert!(a.len() <= MAX_PAGE_ID_BYTES && b.len() <= MAX_PAGE_ID_BYTES);
        assert_ne!(a, b);
        assert!(a.starts_with("e.com/aaaa"), "start kept for prefix listing");
        assert!(matches!(
            normalise(&format!("https://e.com/{}", "a".repeat(MAX_PATH_BYTES)), &cfg()),
            Err(KeyError::PathTooLong(_))
        ));
        let multibyte = shorten("é".repeat(300), MAX_PAGE_ID_BYTES);
        assert!(multibyte.len() <= MAX_PAGE_ID_BYTES);
    }

    #[test]
    fn a_prefix_matches_shortened_ids_by_their_kept_start() {
        let long = |tail: &str| format!("e.com/{}{tail}", "é".repeat(200));
        let (one, two) = (shorten(long("/one"), MAX_PAGE_ID_BYTES), shorten(long("/two"), MAX_PAGE_ID_BYTES));
        let prefix = long("/");
        assert!(!one.starts_with(&prefix), "the prefix is longer than the kept start");
        assert!(one.starts_with(listing_prefix(&prefix)) && two.starts_with(listing_prefix(&prefix)));
        assert!(id_may_start_with(&one, &prefix) && id_may_start_with(&two, &prefix));
        assert!(!id_may_start_with(&shorten(format!("e.com/{}", "x".repeat(500)), MAX_PAGE_ID_BYTES), &prefix));
        assert!(!id_may_start_with("e.com/other", "e.com/o/"));
        assert!(id_may_start_with("e.com/o/x", "e.com/o/"));
        assert_eq!(listing_prefix("e.com/short/"), "e.com/short/");
        // An id that merely ends like a shortened one but is short is matched by its text only.
        let lookalike = format!("e.com/a~{}", "0".repeat(32));
        assert!(!id_may_start_with(&lookalike, "e.com/a/b"));
    }

    #[test]
    fn origin_url_uses_the_key_not_the_raw_url() {
        let mut c = cfg();
        c.query_params = QueryParams::Only(vec!["q".into()]);
        let k = normalise("https://e.com//a/./b?x=1&q=2", &c).unwrap();
        let origin = Url::parse("http://127.0.0.1:8788/base/").unwrap();
        assert_eq!(k.origin_url(&origin), "http://127.0.0.1:8788/base/a/b?q=2");
    }

    #[test]
    fn hosts_are_ascii_only() {
        // The runtime hands the worker punycode hosts (`xn--bcher-kva.example`); edge-isr
        // builds `url` without Unicode IDNA tables (idna_adapter 1.0) to keep the wasm small,
        // so a raw Unicode host is refused rather than mapped.
        let c = Config::for_origin("http://origin.test");
        assert!(normalise("https://xn--bcher-kva.example/a", &c).is_ok());
        assert_eq!(normalise("https://bücher.example/a", &c), Err(KeyError::InvalidUrl));
        // Found by fuzzing: upper-case ASCII beside non-ASCII tripped a debug assertion
        // inside idna_adapter 1.0; such hosts never reach `url` now.
        assert_eq!(normalise("https://B\u{15c}p\u{39f}e", &c), Err(KeyError::InvalidUrl));
        assert_eq!(normalise("https:/B%C3%9Fe/x", &c), Err(KeyError::InvalidUrl), "escaped non-ASCII host");
        assert_eq!(normalise("https:/\t/B%C3%9Fe/x", &c), Err(KeyError::InvalidUrl), "tabs are dropped before looking");
        assert!(parse_url("https://example.com/caf%C3%A9?q=%C3%A9").is_ok(), "escapes in the path are fine");
    }
}

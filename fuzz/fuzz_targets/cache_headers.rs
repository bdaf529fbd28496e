//! Header policy: any origin response header list through the cacheability rules.
//!
//! Input (see `src/lib.rs`): a first line `<status> [<body length>]`, then `name: value`
//! header lines (the same list is also tried as request headers).
//! Invariants:
//! - no panic in `Directives::parse`, `revalidate_seconds`, `tags_from_headers`,
//!   `classify_response`, `classify_request`, `headers_to_store`, `PageMeta::encode`;
//! - tags: at most `MAX_TAGS_PER_PAGE`, each 1..=`MAX_TAG_CHARS` characters, trimmed, without
//!   control characters, distinct, and taken from a tag header;
//! - a revalidate time is never 0, and `private`/`no-store` in `Cache-Control` never store;
//! - `classify_response` stores only cacheable statuses, without `Set-Cookie`, within KV's
//!   value limit, with exactly `revalidate_seconds` and `tags_from_headers`;
//! - stored headers never include `Set-Cookie`, hop-by-hop fields or `x-isr-*`, and keep the
//!   others in order;
//! - metadata that encodes fits KV's 1024 bytes and decodes back to itself;
//! - a request with `Authorization` is never answered from the cache.
#![no_main]

use edge_isr::rules::config::Config;
use edge_isr::http::{Headers, Request};
use edge_isr::rules::meta::{usable_validator, PageMeta, META_VERSION};
use edge_isr::rules::policy::{
    classify_request, classify_response, headers_to_store, is_cacheable_status, is_valid_tag, revalidate_seconds,
    tags_from_headers, Directives, RequestDecision, ResponseDecision, MAX_TAGS_PER_PAGE, MAX_TAG_CHARS,
};
use edge_isr::rules::state::BypassReason;
use edge_isr::store::limits::{MAX_METADATA_BYTES, MAX_VALUE_BYTES};
use edge_isr_fuzz::parse_message;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Never stored with a page: cookies and hop-by-hop fields (RFC 9110 §7.6.1).
const NEVER_STORED: &[&str] = &[
    "set-cookie",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const TAG_HEADERS: &[&str] = &["cache-tag", "x-next-cache-tags", "surrogate-key"];

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::for_origin("http://origin.test"))
}

fn check_tags(tags: &[String], headers: &Headers) {
    assert!(tags.len() <= MAX_TAGS_PER_PAGE, "{} tags", tags.len());
    for (i, tag) in tags.iter().enumerate() {
        assert!(is_valid_tag(tag), "invalid tag {tag:?}");
        assert!(!tag.is_empty() && tag.chars().count() <= MAX_TAG_CHARS, "tag length: {tag:?}");
        assert!(!tag.chars().any(char::is_control), "control character in tag {tag:?}");
        assert_eq!(tag.trim(), tag, "untrimmed tag");
        assert!(!tags[..i].contains(tag), "duplicate tag {tag:?}");
        let from_header = TAG_HEADERS.iter().any(|n| headers.get_all(n).any(|v| v.contains(tag.as_str())));
        assert!(from_header, "tag {tag:?} is in no tag header");
    }
}

fn check_directives(value: &str) {
    let d = Directives::parse(value);
    for part in value.split(',') {
        let name = part.split_once('=').map_or(part, |(n, _)| n).trim().to_ascii_lowercase();
        if !name.is_empty() {
            assert!(d.has(&name), "directive {name:?} lost from {value:?}");
        }
    }
    for name in ["max-age", "s-maxage", "stale-while-revalidate"] {
        if d.seconds(name).is_some() {
            assert!(d.has(name));
        }
    }
}

fn check_response(status: u16, body_len: usize, headers: &Headers) {
    let config = config();
    for (_, value) in headers.iter() {
        check_directives(value);
    }

    let tags = tags_from_headers(headers);
    check_tags(&tags, headers);

    let revalidate = revalidate_seconds(status, headers, config);
    if let Ok(s) = revalidate {
        assert!(s > 0, "revalidate time 0 accepted");
    }
    let cc = Directives::parse(&headers.get_all("cache-control").collect::<Vec<_>>().join(","));
    if cc.has("private") || cc.has("no-store") {
        assert_eq!(revalidate, Err(BypassReason::NotPublic));
    }

    match classify_response(status, headers, body_len, config) {
        ResponseDecision::Store { revalidate_s, tags: stored_tags } => {
            assert!(is_cacheable_status(status), "stored status {status}");
            assert!(!headers.contains("set-cookie"), "stored a response with Set-Cookie");
            assert!(body_len <= MAX_VALUE_BYTES, "stored {body_len} bytes");
            assert_eq!(Ok(revalidate_s), revalidate);
            assert_eq!(stored_tags, tags);
        }
        ResponseDecision::DoNotStore(reason) => {
            let _ = reason.as_str();
        }
    }

    let stored = headers_to_store(headers);
    let mut rest = headers.iter();
    for (name, value) in stored.iter() {
        assert!(!NEVER_STORED.contains(&name), "stored header {name:?}");
        assert!(!name.starts_with("x-isr-"), "stored header {name:?}");
        assert!(rest.any(|(n, v)| n == name && v == value), "stored header {name:?} not from the response, or reordered");
    }

    let mut meta = PageMeta {
        version: META_VERSION,
        rendered_at: 1_700_000_000_000,
        revalidate_s: revalidate.unwrap_or(60),
        status,
        etag: usable_validator(headers.get("etag")).unwrap_or_else(|| "\"fuzz\"".into()),
        origin_etag: usable_validator(headers.get("etag")),
        last_modified: usable_validator(headers.get("last-modified")),
        invalidated_at: None,
        expired: false,
        stale_if_error_s: None,
        tags_digest: None,
        tier_tags: None,
        tag_hashes: None,
        headers: stored.into_pairs(),
    };
    match meta.encode() {
        Ok(json) => {
            assert!(json.len() <= MAX_METADATA_BYTES, "metadata of {} bytes", json.len());
            assert_eq!(PageMeta::decode(Some(&json)).as_ref(), Ok(&meta), "metadata does not round-trip: {json}");
        }
        Err(reason) => assert_eq!(reason, BypassReason::HeadersTooLarge),
    }
}

fn check_request(headers: &Headers) {
    let mut req = Request::new("GET", "https://example.com/page");
    req.headers = headers.clone();
    if let RequestDecision::Cacheable(_) = classify_request(&req, config()) {
        assert!(!headers.contains("authorization"), "a request with Authorization is cacheable");
    }
}

fuzz_target!(|data: &[u8]| {
    let msg = parse_message(data);
    let mut first = msg.first_line.split_whitespace();
    let status = first.next().and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
    let body_len = first.next().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    check_response(status, body_len, &msg.headers);
    check_request(&msg.headers);
});

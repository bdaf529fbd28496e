//! Cache key normaliser: any string as a request URL, under several configurations.
//!
//! Input: the bytes as a URL (invalid UTF-8 replaced); also tried as a path under
//! `http://h.test/`, so random bytes exercise path normalisation and not only URL parsing.
//! Invariants, for every key produced:
//! - no panic;
//! - `page_id()` fits `MAX_PAGE_ID_BYTES` (KV keys are built from it);
//! - the path starts with `/`, fits `MAX_PATH_BYTES`, has no empty, `.` or `..` segment, and
//!   is a fixed point of `normalise_path`;
//! - the host is lower-case, and one of `CACHE_HOSTS` when those are set;
//! - the kept query parameters are allowed by the configuration and sorted;
//! - normalising the key's origin URL (an origin at the key's host) gives the same key: the
//!   origin is fetched at exactly the page the key stands for.
#![no_main]

use edge_isr::rules::config::{Config, QueryParams, TrailingSlash};
use edge_isr::rules::key::{normalise, normalise_path, MAX_PAGE_ID_BYTES, MAX_PATH_BYTES};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn configs() -> &'static [Config] {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let base = Config::for_origin("http://origin.test");
        let mut strip = base.clone();
        strip.trailing_slash = TrailingSlash::Strip;
        strip.query_params = QueryParams::AllButTracking;
        let mut add = base.clone();
        add.trailing_slash = TrailingSlash::Add;
        add.query_params = QueryParams::Only(vec!["page".into(), "q*".into()]);
        add.cache_hosts = vec!["www.example.com".into(), "example.com".into()];
        let mut hosts = base.clone();
        hosts.query_params = QueryParams::AllButTracking;
        hosts.cache_hosts = vec!["example.com".into()];
        vec![base, strip, add, hosts]
    })
}

fn check(url: &str, config: &Config) {
    let Ok(key) = normalise(url, config) else { return };
    let id = key.page_id();
    assert!(id.len() <= MAX_PAGE_ID_BYTES, "page id of {} bytes for {url:?}", id.len());

    assert!(key.path.starts_with('/'), "{key:?}");
    assert!(key.path.len() <= MAX_PATH_BYTES, "{key:?}");
    let segments: Vec<&str> = key.path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        // Only the last segment may be empty (a trailing slash, or the root).
        let bad = matches!(*segment, "." | "..") || (segment.is_empty() && i + 1 < segments.len());
        assert!(!bad, "segment {segment:?} left in {key:?} from {url:?}");
    }
    assert_eq!(normalise_path(&key.path, config.trailing_slash), key.path, "path not a fixed point, from {url:?}");

    assert!(!key.host.is_empty());
    assert_eq!(key.host, key.host.to_ascii_lowercase(), "{key:?}");
    if !config.cache_hosts.is_empty() {
        assert!(config.cache_hosts.contains(&key.host), "{key:?}");
    }

    if !key.query.is_empty() {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(key.query.as_bytes()).into_owned().collect();
        assert!(pairs.iter().all(|(k, _)| config.query_params.keeps(k)), "{key:?}");
        assert!(pairs.windows(2).all(|w| w[0] <= w[1]), "query not sorted: {key:?}");
    }

    let Ok(origin) = url::Url::parse(&format!("http://{}/", key.host)) else { return };
    let origin_url = key.origin_url(&origin);
    let again = normalise(&origin_url, config);
    assert_eq!(again.as_ref(), Ok(&key), "origin URL {origin_url:?} of {url:?} normalises to another key");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let as_path = format!("http://h.test/{text}");
    for config in configs() {
        check(&text, config);
        check(&as_path, config);
    }
});

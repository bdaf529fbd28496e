//! What edge-isr tells the caches after it (browsers, and any shared cache in front of the
//! worker) about a page it serves from its store, so that none keeps the page longer than a
//! webhook can reach.
//!
//! edge-isr can invalidate only its own store. A shared cache in front of the worker (a CDN, or
//! Cloudflare's Workers Cache switched on for it) that honoured the origin's `s-maxage=3600`
//! would keep serving a page for an hour after the CMS published. So shared caches are told to
//! revalidate every time (`s-maxage=0`, which RFC 9111 §5.2.2.10 says implies
//! `proxy-revalidate`: no serving stale either), and the origin's directives aimed at shared
//! caches and stale serving (`s-maxage`, `stale-while-revalidate`, `stale-if-error`,
//! `proxy-revalidate`) are not passed on, the way Vercel strips `s-maxage` before the browser.
//! The CDN-only fields (`CDN-Cache-Control`, `Cloudflare-CDN-Cache-Control`,
//! `Surrogate-Control`) are consumed by edge-isr and never stored (see
//! [`super::policy::headers_to_store`]), and dropped here too.
//!
//! A browser-only `max-age` is kept: it is the origin's explicit choice for browsers (a
//! browser's copy cannot be purged by anyone, so an origin that wants invalidations to reach
//! browsers at once sends `max-age=0` or nothing). Without one, browsers get
//! `public, max-age=0, must-revalidate`: they revalidate every time, cheaply with a 304.
//!
//! [`downstream_cache_headers`] is the one place that decides these headers. The Workers Cache
//! mode, whose purge reaches that cache, adds `Cloudflare-CDN-Cache-Control` and `Cache-Tag`
//! for it alone right after ([`crate::tier::headers`]), leaving these untouched.

use crate::http::Headers;

/// `Cache-Control` for browsers when the origin gave no browser lifetime: revalidate every time
/// (cheaply, with `If-None-Match` → 304), so an invalidation reaches them at once.
pub const DEFAULT_BROWSER_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Directives for shared caches and stale serving, never passed on.
const SHARED_CACHE_DIRECTIVES: [&str; 4] = ["s-maxage", "stale-while-revalidate", "stale-if-error", "proxy-revalidate"];

/// Header fields aimed at CDNs only, never passed on.
const CDN_FIELDS: [&str; 3] = ["cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control"];

/// Sets the caching headers of a stored page's answer (`headers` are the stored ones): see the
/// module documentation.
pub fn downstream_cache_headers(headers: &mut Headers) {
    for name in CDN_FIELDS {
        headers.remove(name);
    }
    let stored: Vec<String> = headers.get_all("cache-control").map(str::to_string).collect();
    headers.remove("cache-control");
    headers.set("cache-control", visitor_cache_control(&stored.join(", ")));
}

/// The `Cache-Control` visitors get for a stored page whose origin sent `origin` (empty: none).
pub fn visitor_cache_control(origin: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut browser_max_age = None;
    for directive in origin.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let name = directive.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
        if SHARED_CACHE_DIRECTIVES.contains(&name.as_str()) {
            continue;
        }
        if name == "max-age" {
            let seconds = directive.split_once('=').and_then(|(_, v)| v.trim().trim_matches('"').parse::<u64>().ok());
            browser_max_age = Some(seconds.unwrap_or(0));
            if browser_max_age == Some(0) {
                continue;
            }
        }
        if !kept.iter().any(|k| k.eq_ignore_ascii_case(directive)) {
            kept.push(directive);
        }
    }
    match browser_max_age {
        Some(s) if s > 0 => {
            kept.push("s-maxage=0");
            kept.join(", ")
        }
        _ => {
            let extra: Vec<&str> = kept
                .into_iter()
                .filter(|d| !d.eq_ignore_ascii_case("public") && !d.eq_ignore_ascii_case("must-revalidate"))
                .collect();
            if extra.is_empty() {
                DEFAULT_BROWSER_CACHE_CONTROL.to_string()
            } else {
                format!("{DEFAULT_BROWSER_CACHE_CONTROL}, {}", extra.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_caches_always_revalidate_and_browsers_keep_their_own_max_age() {
        for (origin, visitor) in [
            ("", DEFAULT_BROWSER_CACHE_CONTROL),
            ("s-maxage=3600", DEFAULT_BROWSER_CACHE_CONTROL),
            ("public, s-maxage=3600, stale-while-revalidate=60", DEFAULT_BROWSER_CACHE_CONTROL),
            ("public, max-age=0, must-revalidate", DEFAULT_BROWSER_CACHE_CONTROL),
            ("public, max-age=60, s-maxage=3600", "public, max-age=60, s-maxage=0"),
            ("max-age=300, stale-if-error=86400, proxy-revalidate", "max-age=300, s-maxage=0"),
            ("public, max-age=31536000, immutable", "public, max-age=31536000, immutable, s-maxage=0"),
            ("S-MAXAGE=10, Max-Age=5", "Max-Age=5, s-maxage=0"),
            ("max-age=0, no-transform", "public, max-age=0, must-revalidate, no-transform"),
            ("max-age=junk", DEFAULT_BROWSER_CACHE_CONTROL),
        ] {
            assert_eq!(visitor_cache_control(origin), visitor, "{origin:?}");
        }
    }

    #[test]
    fn cdn_fields_are_dropped_and_cache_control_set_once() {
        let mut headers: Headers = [
            ("cache-control", "public, s-maxage=3600"),
            ("cache-control", "max-age=30"),
            ("cdn-cache-control", "max-age=3600"),
            ("cloudflare-cdn-cache-control", "max-age=3600"),
            ("surrogate-control", "max-age=3600"),
            ("content-type", "text/html"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        downstream_cache_headers(&mut headers);
        assert_eq!(headers.get_all("cache-control").collect::<Vec<_>>(), vec!["public, max-age=30, s-maxage=0"]);
        for name in CDN_FIELDS {
            assert_eq!(headers.get(name), None, "{name}");
        }
        assert_eq!(headers.get("content-type"), Some("text/html"));
    }
}

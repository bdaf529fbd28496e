//! Whether a stored page may be served as it is: a pure function of its metadata and `now`,
//! and which origin answers are failures that a stored page may hide (stale-if-error).

use crate::http::Headers;
use crate::rules::meta::PageMeta;
use crate::rules::policy::Directives;
use crate::runtime::clock::Millis;

/// How usable a stored page is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Within its revalidate time and not invalidated: serve it (HIT).
    Fresh,
    /// Past its revalidate time, or invalidated: serve it and regenerate in the background (STALE).
    Stale,
    /// Invalidated with `mode: expire`, or stale for longer than its stale-if-error limit:
    /// render before answering; if the origin fails, the visitor gets the error (the page stays
    /// stored, but is not served).
    Expired,
}

/// Decides the freshness of a page at `now`, with no limit on how long it may stay stale.
///
/// A page is stale once `now >= rendered_at + revalidate`: with `revalidate = 60`, a page
/// rendered at t=0 is a HIT up to t=59.999 s and STALE from t=60 s (Next.js's rule).
pub fn freshness(meta: &PageMeta, now: Millis) -> Freshness {
    if meta.invalidated_at.is_some() {
        return if meta.expired { Freshness::Expired } else { Freshness::Stale };
    }
    if now < fresh_until(meta) {
        Freshness::Fresh
    } else {
        Freshness::Stale
    }
}

/// [`freshness`], where a page stale for `max_stale_s` seconds or more (the page's own
/// `stale-if-error`, at most `max_stale_s`: see [`stale_limit_s`]) is [`Freshness::Expired`]:
/// it is rendered while the visitor waits, so an origin that has been failing all along is no
/// longer hidden behind it (RFC 5861's stale-if-error).
pub fn freshness_within(meta: &PageMeta, now: Millis, max_stale_s: u32) -> Freshness {
    match freshness(meta, now) {
        Freshness::Stale => {
            let limit_ms = u64::from(stale_limit_s(meta, max_stale_s)) * 1000;
            if now >= stale_since(meta).saturating_add(limit_ms) {
                Freshness::Expired
            } else {
                Freshness::Stale
            }
        }
        other => other,
    }
}

/// When a page stops being fresh by itself (ms).
fn fresh_until(meta: &PageMeta) -> Millis {
    meta.rendered_at.saturating_add(u64::from(meta.revalidate_s) * 1000)
}

/// When a page became stale: the end of its revalidate time, or its invalidation if earlier.
pub fn stale_since(meta: &PageMeta) -> Millis {
    let until = fresh_until(meta);
    meta.invalidated_at.map_or(until, |at| at.min(until))
}

/// How long a page may be served stale (seconds): the origin's `stale-if-error` for it, if it
/// gave one, never more than the deployment's `STALE_IF_ERROR_S`.
pub fn stale_limit_s(meta: &PageMeta, max_stale_s: u32) -> u32 {
    meta.stale_if_error_s.map_or(max_stale_s, |s| s.min(max_stale_s))
}

/// The `stale-if-error` (seconds) the origin's headers give a page: from
/// `Cloudflare-CDN-Cache-Control`, else `CDN-Cache-Control`, else `Cache-Control`.
pub fn stale_if_error_seconds(headers: &Headers) -> Option<u32> {
    ["cloudflare-cdn-cache-control", "cdn-cache-control", "cache-control"]
        .into_iter()
        .find_map(|name| {
            let joined = headers.get_all(name).collect::<Vec<_>>().join(",");
            Directives::parse(&joined).seconds("stale-if-error")
        })
}

/// Whether an origin answer with `status` is the origin failing (a server error, or rate
/// limiting), not an answer about the page. A stored page hides failures (stale-if-error):
/// it stays and is served. Every other answer that cannot be stored (401, 403, 451, a 302,
/// 303 or 307 redirect, any other 4xx) is believed: the stored page is removed.
///
/// RFC 5861 names 500, 502, 503 and 504. Every 5xx is taken as a failure here, because
/// 5xx means the server could not answer, not that the page is gone (507 Insufficient
/// Storage, 508, and Cloudflare's 520-527 origin errors are outages), and a stale page is
/// served for a bounded time only. 429 (Too Many Requests) is the origin shedding load: a
/// transient failure too.
pub fn is_origin_failure(status: u16) -> bool {
    status >= 500 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::page_meta as meta;

    #[test]
    fn fresh_until_the_revalidate_time_then_stale() {
        let m = meta(10_000, 60);
        assert_eq!(freshness(&m, 10_000), Freshness::Fresh);
        assert_eq!(freshness(&m, 69_999), Freshness::Fresh);
        assert_eq!(freshness(&m, 70_000), Freshness::Stale);
        assert_eq!(freshness(&m, u64::MAX), Freshness::Stale);
    }

    #[test]
    fn a_clock_behind_the_render_time_counts_as_fresh() {
        assert_eq!(freshness(&meta(10_000, 1), 5_000), Freshness::Fresh);
    }

    #[test]
    fn invalidation_makes_a_fresh_page_stale_or_expired() {
        let mut m = meta(10_000, 3600);
        m.invalidated_at = Some(11_000);
        assert_eq!(freshness(&m, 12_000), Freshness::Stale);
        m.expired = true;
        assert_eq!(freshness(&m, 12_000), Freshness::Expired);
    }

    #[test]
    fn a_page_stale_past_its_stale_if_error_limit_is_expired() {
        let m = meta(10_000, 60); // stale from t=70 s
        assert_eq!(freshness_within(&m, 69_999, 100), Freshness::Fresh);
        assert_eq!(freshness_within(&m, 70_000, 100), Freshness::Stale);
        assert_eq!(freshness_within(&m, 169_999, 100), Freshness::Stale);
        assert_eq!(freshness_within(&m, 170_000, 100), Freshness::Expired);
        assert_eq!(freshness(&m, 170_000), Freshness::Stale, "freshness alone has no limit");
        assert_eq!(freshness_within(&m, 70_000, 0), Freshness::Expired, "a limit of 0: never served stale");
        assert_eq!(freshness_within(&m, u64::MAX, u32::MAX), Freshness::Expired);
    }

    #[test]
    fn an_invalidation_starts_the_stale_time_and_the_origin_may_ask_for_less() {
        let mut m = meta(10_000, 3600);
        m.invalidated_at = Some(20_000);
        assert_eq!(stale_since(&m), 20_000);
        assert_eq!(freshness_within(&m, 29_999, 10), Freshness::Stale);
        assert_eq!(freshness_within(&m, 30_000, 10), Freshness::Expired);
        m.stale_if_error_s = Some(5);
        assert_eq!(freshness_within(&m, 25_000, 10), Freshness::Expired);
        m.stale_if_error_s = Some(1_000);
        assert_eq!(stale_limit_s(&m, 10), 10, "never more than the deployment allows");
        m.invalidated_at = Some(u64::MAX);
        assert_eq!(stale_since(&m), 3_610_000, "an invalidation after the page went stale changes nothing");
    }

    #[test]
    fn server_errors_and_rate_limiting_are_failures_other_answers_are_not() {
        for status in [500, 501, 502, 503, 504, 505, 507, 520, 524, 599, 429] {
            assert!(is_origin_failure(status), "{status}");
        }
        for status in [200, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 410, 418, 451] {
            assert!(!is_origin_failure(status), "{status}");
        }
    }

    #[test]
    fn the_origin_gives_stale_if_error_in_its_cache_headers() {
        let h = |pairs: &[(&str, &str)]| -> Headers { pairs.iter().copied().collect() };
        assert_eq!(stale_if_error_seconds(&h(&[("cache-control", "s-maxage=60, stale-if-error=300")])), Some(300));
        assert_eq!(stale_if_error_seconds(&h(&[("cache-control", "s-maxage=60")])), None);
        let both = h(&[("cache-control", "stale-if-error=300"), ("cdn-cache-control", "max-age=60, stale-if-error=10")]);
        assert_eq!(stale_if_error_seconds(&both), Some(10));
        assert_eq!(stale_if_error_seconds(&h(&[("cache-control", "stale-if-error=soon")])), None);
    }

    #[test]
    fn huge_revalidate_times_do_not_overflow() {
        assert_eq!(freshness(&meta(u64::MAX - 5, u32::MAX), u64::MAX - 1), Freshness::Fresh);
    }
}

//! `Server-Timing` on every answer, so that browser devtools show what the cache did and where
//! the time went: the cache state, the KV read and the origin's (or the worker's) render.
//!
//! Durations come from the engine's [`crate::runtime::clock::Clock`]. On Workers that is
//! `Date.now()`, which only advances across I/O: right for a KV read or an origin fetch, which
//! are I/O; CPU time in between shows as 0.

use super::CACHE_STATE_HEADER;
use crate::http::Response;

/// Response header carrying the timings.
pub const SERVER_TIMING_HEADER: &str = "server-timing";

/// Where one answer's time went, in milliseconds; `None`: that step did not happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Reading the stored page from KV.
    pub kv_ms: Option<u64>,
    /// Waiting for the origin's answer or the route's render (a MISS, a BYPASS). For a MISS
    /// whose page streams ([`super::render`]), the wait for the answer's head: the body is
    /// still arriving when the header is sent.
    pub origin_ms: Option<u64>,
}

/// The header's value: `cache;desc=HIT, kv;dur=3, origin;dur=120`. Written with `push_str`
/// rather than `write!`: this runs for every HIT, and Rust's formatting machinery was a
/// measurable part of a HIT's wasm time (BENCHMARKS.md, issue 15).
pub(crate) fn value(state: &str, timing: Timing) -> String {
    let mut v = String::with_capacity(48);
    v.push_str("cache;desc=");
    v.push_str(state);
    if let Some(ms) = timing.kv_ms {
        v.push_str(", kv;dur=");
        push_decimal(&mut v, ms);
    }
    if let Some(ms) = timing.origin_ms {
        v.push_str(", origin;dur=");
        push_decimal(&mut v, ms);
    }
    v
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(text: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    text.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Adds `Server-Timing` to `resp`, with the cache state of its `x-isr-cache` header (`BYPASS`
/// when it has none: the webhook, the admin page). A stored page's own `Server-Timing` (the
/// origin's, from when it was rendered) is replaced on a HIT or STALE; a fresh origin answer's
/// (MISS, BYPASS) is kept after edge-isr's entries.
pub(crate) fn add(mut resp: Response, timing: Timing) -> Response {
    let state = resp.headers.get(CACHE_STATE_HEADER).unwrap_or("BYPASS");
    let mut v = value(state, timing);
    let from_store = matches!(state, "HIT" | "STALE");
    if let Some(theirs) = resp.headers.get(SERVER_TIMING_HEADER).filter(|_| !from_store) {
        v = format!("{v}, {theirs}");
    }
    resp.headers.set(SERVER_TIMING_HEADER, v);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_the_state_then_the_durations_that_happened() {
        assert_eq!(value("HIT", Timing { kv_ms: Some(3), origin_ms: None }), "cache;desc=HIT, kv;dur=3");
        assert_eq!(value("MISS", Timing { kv_ms: Some(0), origin_ms: Some(120) }), "cache;desc=MISS, kv;dur=0, origin;dur=120");
        assert_eq!(value("BYPASS", Timing::default()), "cache;desc=BYPASS");
    }

    #[test]
    fn decimals_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 1_234_567, u64::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn the_origins_own_timings_are_kept_only_when_fresh() {
        let origin = || Response::new(200).with_header(SERVER_TIMING_HEADER, "db;dur=7");
        let miss = add(origin().with_header(CACHE_STATE_HEADER, "MISS"), Timing { kv_ms: Some(1), origin_ms: Some(9) });
        assert_eq!(miss.headers.get(SERVER_TIMING_HEADER), Some("cache;desc=MISS, kv;dur=1, origin;dur=9, db;dur=7"));
        let hit = add(origin().with_header(CACHE_STATE_HEADER, "HIT"), Timing { kv_ms: Some(1), origin_ms: None });
        assert_eq!(hit.headers.get(SERVER_TIMING_HEADER), Some("cache;desc=HIT, kv;dur=1"));
        assert_eq!(hit.headers.get_all(SERVER_TIMING_HEADER).count(), 1);
        let admin = add(Response::new(200), Timing::default());
        assert_eq!(admin.headers.get(SERVER_TIMING_HEADER), Some("cache;desc=BYPASS"));
    }
}

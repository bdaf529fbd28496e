//! A failing origin is not hammered: after a MISS (or expired-page) render of a key fails, this
//! isolate answers that key's visitors with the recent error for a short, growing time instead
//! of asking the origin again (negative caching, like a CDN's cached 5xx).
//!
//! Only failures count ([`crate::rules::freshness::is_origin_failure`], or no answer at all);
//! an answer about the page (403, a redirect) is passed on every time. A successful render of
//! the key, or a webhook invalidation, ends the back-off.

use crate::http::Response;
use crate::runtime::clock::Millis;
use std::cell::RefCell;
use std::collections::HashMap;

/// Back-off after the first failed render of a key.
pub const FIRST_BACKOFF_MS: u64 = 2_000;
/// Longest back-off (also the cap on an origin's own `Retry-After`).
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Most keys one isolate remembers (bounded memory).
pub const MAX_REMEMBERED: usize = 1_000;
/// Largest error body kept to answer again; a larger one is replaced by a short JSON error.
pub const MAX_KEPT_BODY_BYTES: usize = 8 * 1024;
/// Value of `x-isr-reason` on an answer given from the back-off, without an origin call.
pub const BACKOFF_REASON: &str = "origin-backoff";

/// Back-off after `failures` consecutive failed renders (1, 2, ...): 2 s, 4 s, 8 s, 16 s, 30 s.
pub fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

struct Failing {
    failures: u32,
    until: Millis,
    answer: Response,
}

/// The keys whose renders failed recently in this isolate, with the answer visitors got.
#[derive(Default)]
pub struct FailingRenders {
    keys: RefCell<HashMap<String, Failing>>,
}

impl FailingRenders {
    /// The recent error for `page_key`, if its back-off runs at `now`: the answer the failed
    /// render gave, with `Retry-After` (seconds left), `Cache-Control: no-store` and
    /// `x-isr-reason: origin-backoff`.
    pub fn answer(&self, page_key: &str, now: Millis) -> Option<Response> {
        let keys = self.keys.borrow();
        let failing = keys.get(page_key).filter(|f| now < f.until)?;
        let mut resp = failing.answer.clone();
        resp.headers.set("retry-after", seconds_left(failing.until, now));
        resp.headers.set("cache-control", "no-store");
        resp.headers.set(super::BYPASS_REASON_HEADER, BACKOFF_REASON);
        Some(resp)
    }

    /// Records that rendering `page_key` failed at `now` with `answer` (what the visitor got),
    /// and returns the answer with `Retry-After` set (unless the origin sent one).
    pub fn record(&self, page_key: &str, now: Millis, mut answer: Response) -> Response {
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= MAX_REMEMBERED && !keys.contains_key(page_key) {
            keys.retain(|_, f| now < f.until);
            if keys.len() >= MAX_REMEMBERED {
                keys.clear();
            }
        }
        // A failure long after the last back-off ended starts again from the first delay.
        let previous = keys
            .get(page_key)
            .filter(|f| now < f.until.saturating_add(MAX_BACKOFF_MS))
            .map_or(0, |f| f.failures);
        let failures = previous.saturating_add(1);
        let asked = origin_retry_after_ms(&answer).unwrap_or(0).min(MAX_BACKOFF_MS);
        let until = now + backoff_ms(failures).max(asked);
        if !answer.headers.contains("retry-after") {
            answer.headers.set("retry-after", seconds_left(until, now));
        }
        let mut kept = answer.clone();
        if kept.body.len() > MAX_KEPT_BODY_BYTES {
            let message = format!("the origin answered {} (body of {} bytes not kept)", kept.status, kept.body.len());
            let mut short = Response::json_error(kept.status, &message);
            for name in [super::CACHE_STATE_HEADER, super::BYPASS_REASON_HEADER] {
                if let Some(v) = kept.headers.get(name) {
                    short.headers.set(name, v.to_string());
                }
            }
            kept = short;
        }
        // A cookie the origin set was for the visitor who got the answer, nobody else.
        kept.headers.remove("set-cookie");
        keys.insert(page_key.to_string(), Failing { failures, until, answer: kept });
        answer
    }

    /// Ends the back-off of `page_key` (its render succeeded).
    pub fn clear(&self, page_key: &str) {
        if !self.keys.borrow().is_empty() {
            self.keys.borrow_mut().remove(page_key);
        }
    }

    /// Ends every back-off (a webhook call: the content changed, the origin may answer now).
    pub fn clear_all(&self) {
        self.keys.borrow_mut().clear();
    }
}

/// Whole seconds from `now` to `until`, rounded up (at least 1).
fn seconds_left(until: Millis, now: Millis) -> String {
    until.saturating_sub(now).div_ceil(1000).max(1).to_string()
}

/// The origin's own `Retry-After` in ms, when it is a number of seconds (an HTTP date is not
/// used: the isolate's clock and the origin's may disagree).
fn origin_retry_after_ms(resp: &Response) -> Option<u64> {
    let v = resp.headers.get("retry-after")?.trim();
    v.parse::<u64>().ok().map(|s| s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_and_is_capped() {
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(2), 4_000);
        assert_eq!(backoff_ms(4), 16_000);
        assert_eq!(backoff_ms(5), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn the_recent_error_is_answered_until_the_back_off_ends() {
        let f = FailingRenders::default();
        let first = f.record("k", 1_000, Response::new(503).with_header("set-cookie", "a=b").with_body("down"));
        assert_eq!(first.headers.get("retry-after"), Some("2"));
        assert_eq!(first.headers.get("set-cookie"), Some("a=b"), "the visitor who got it keeps its cookie");
        let again = f.answer("k", 2_001).expect("backing off");
        assert_eq!((again.status, &*again.body), (503, &b"down"[..]));
        assert_eq!(again.headers.get("retry-after"), Some("1"));
        assert_eq!(again.headers.get("cache-control"), Some("no-store"));
        assert_eq!(again.headers.get("set-cookie"), None);
        assert!(f.answer("k", 3_000).is_none());
        assert!(f.answer("other", 1_000).is_none());
        f.record("k", 3_000, Response::new(503));
        assert!(f.answer("k", 6_999).is_some(), "second failure: 4 s");
        f.clear("k");
        assert!(f.answer("k", 4_000).is_none());
        f.record("k", 100_000, Response::new(503));
        assert!(f.answer("k", 102_000).is_none(), "cleared: 2 s again");
    }

    #[test]
    fn a_failure_long_after_the_last_starts_again_from_the_first_delay() {
        let f = FailingRenders::default();
        f.record("k", 0, Response::new(500));
        f.record("k", 2_000, Response::new(500)); // until 6 s
        f.record("k", 6_000 + MAX_BACKOFF_MS, Response::new(500));
        assert!(f.answer("k", 6_000 + MAX_BACKOFF_MS + 2_000).is_none());
    }

    #[test]
    fn the_origins_retry_after_is_honoured_up_to_the_cap() {
        let f = FailingRenders::default();
        let r = f.record("k", 0, Response::new(429).with_header("retry-after", "10"));
        assert_eq!(r.headers.get("retry-after"), Some("10"));
        assert!(f.answer("k", 9_999).is_some());
        assert!(f.answer("k", 10_000).is_none());
        f.record("j", 0, Response::new(503).with_header("retry-after", "3600"));
        assert!(f.answer("j", MAX_BACKOFF_MS).is_none());
        f.record("d", 0, Response::new(503).with_header("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT"));
        assert!(f.answer("d", FIRST_BACKOFF_MS).is_none());
    }

    #[test]
    fn large_error_bodies_are_not_kept_and_memory_is_bounded() {
        let f = FailingRenders::default();
        let big = Response::new(502).with_header("x-isr-cache", "BYPASS").with_body(vec![b'x'; MAX_KEPT_BODY_BYTES + 1]);
        let first = f.record("k", 0, big);
        assert_eq!(first.body.len(), MAX_KEPT_BODY_BYTES + 1, "the first visitor gets the whole answer");
        let again = f.answer("k", 1).unwrap();
        assert_eq!((again.status, again.headers.get("x-isr-cache")), (502, Some("BYPASS")));
        assert!(again.body.len() < 200);
        for i in 0..MAX_REMEMBERED + 10 {
            f.record(&format!("k{i}"), 0, Response::new(500));
        }
        assert!(f.keys.borrow().len() <= MAX_REMEMBERED);
        f.clear_all();
        assert!(f.keys.borrow().is_empty());
    }
}

//! What Workers Cache, switched on in front of the worker, is told about one answer: how long
//! it may keep it, and the tags that purge it.
//!
//! Workers Cache reads `Cloudflare-CDN-Cache-Control` first (then `CDN-Cache-Control`, then
//! `Cache-Control`; RFC 9213: a cache that finds its targeted field ignores the others). edge-isr
//! sets only `Cloudflare-CDN-Cache-Control`: it is read by Cloudflare alone, so the
//! `Cache-Control` of the hostile-input issue's point 8 (no shared-cache lifetime) still holds
//! for browsers and for any other cache, which edge-isr cannot purge.
//!
//! - A HIT (a fresh stored page) on its canonical URL, with all its tags known, is kept for the
//!   page's remaining freshness, `stale-while-revalidate` and `stale-if-error` as configured,
//!   with `Cache-Tag` (its path tag and its tags, [`crate::tier::tags`]).
//! - Everything else gets `no-store`: a STALE page is being replaced; a MISS was rendered by a
//!   render that may have started before an invalidation whose purge has already gone out; a
//!   BYPASS answer is not edge-isr's to keep; a page on a non-canonical URL (`/Blog/%7e` for
//!   `/blog/~`) would escape a `pathPrefixes` purge; a page with unknown or too many tags would
//!   escape a tag purge.
//! - When purges cannot be promised within [`PURGE_BOUND_MS`] (the planner is backlogged or
//!   failing, or its state is not known: no coordinator, or the isolate's copy of the
//!   coordinator's outlook is older than the log's 1.5 s bound), the lifetime is capped
//!   ([`UNPURGEABLE_LIFETIME_S`]) and nothing stale is allowed: the copy then ends by itself
//!   within the bound, as a purge would have ended it. The tier never holds a page it cannot be rid of in time.
//!
//! The lifetime is `max-age` = the page's remaining freshness in whole seconds (rounded down).
//! edge-isr also sends `Age` (the page's age); a tier that subtracts it (RFC 9111 §4.2.3) ends
//! the copy earlier, never later.

use crate::http::Headers;
use crate::rules::state::CacheState;
use crate::runtime::clock::Millis;
use crate::tier::purge::{PURGE_BOUND_MS, SETTLE_MS};

/// The lifetime of copies made while purges cannot be promised in time: a copy handed to the
/// tier by an isolate that had not yet learnt of an invalidation (at most [`SETTLE_MS`] after
/// it) still ends within [`PURGE_BOUND_MS`] of it (13 s).
pub const UNPURGEABLE_LIFETIME_S: u64 = (PURGE_BOUND_MS - SETTLE_MS) / 1000;

/// The field Workers Cache reads first.
pub const TIER_CACHE_CONTROL: &str = "cloudflare-cdn-cache-control";
/// The field carrying the tier's tags.
pub const CACHE_TAG: &str = "cache-tag";

/// How stored pages are kept by the tier (the `WORKERS_CACHE_*` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierSettings {
    /// Seconds the tier may serve a page past its lifetime while it asks the worker again
    /// (the worker answers STALE at once and regenerates; the copy is replaced on the next HIT).
    pub stale_while_revalidate_s: u32,
    /// Seconds the tier may serve a page past its lifetime when the worker fails (5xx).
    pub stale_if_error_s: u32,
}

impl Default for TierSettings {
    /// 60 s of stale-while-revalidate; one day of stale-if-error (the engine's own default
    /// maximum stale-if-error age).
    fn default() -> Self {
        TierSettings {
            stale_while_revalidate_s: 60,
            stale_if_error_s: 86_400,
        }
    }
}

/// What the purge planner promises for invalidations from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeOutlook {
    /// Every invalidation is purged from the tier within this many ms of the webhook's answer.
    Within(u64),
    /// Nothing is known (no planner state, purges failing, no `ctx.cache`).
    Unknown,
}

impl PurgeOutlook {
    /// Whether copies may live their full lifetime (purges arrive within [`PURGE_BOUND_MS`]).
    pub fn purges_in_time(self) -> bool {
        matches!(self, PurgeOutlook::Within(ms) if ms <= PURGE_BOUND_MS)
    }
}

/// One answer, as the tier decision needs it.
#[derive(Clone, Copy, Debug)]
pub struct TierAnswer<'a> {
    /// How the answer was produced.
    pub state: &'a CacheState,
    /// When the page stops being fresh (ms).
    pub fresh_until: Millis,
    /// Now (ms).
    pub now: Millis,
    /// The page's `Cache-Tag` value ([`crate::tier::tags::page_cache_tags`]); `None` when its
    /// tags are not all known.
    pub cache_tag: Option<&'a str>,
    /// Whether the visitor's URL path is the page's normalised path (what a `pathPrefixes`
    /// purge matches).
    pub canonical: bool,
}

/// Why the tier is told not to keep an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoStoreReason {
    /// STALE, MISS or BYPASS.
    NotAHit,
    /// The page's tags are not all known.
    TagsUnknown,
    /// The visitor's URL is not the page's normalised one.
    NotCanonical,
}

/// What the tier may do with an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TierVerdict {
    /// Keep it.
    Keep {
        /// Seconds fresh.
        max_age_s: u64,
        /// Seconds it may be served stale while revalidating.
        stale_while_revalidate_s: u32,
        /// Seconds it may be served stale when the worker fails.
        stale_if_error_s: u32,
        /// `Cache-Tag`.
        cache_tag: String,
    },
    /// Do not store it.
    NoStore(NoStoreReason),
}

/// Decides what the tier may do with `answer` (see the module documentation).
pub fn tier_verdict(answer: &TierAnswer, settings: &TierSettings, outlook: PurgeOutlook) -> TierVerdict {
    if !matches!(answer.state, CacheState::Hit) {
        return TierVerdict::NoStore(NoStoreReason::NotAHit);
    }
    let Some(cache_tag) = answer.cache_tag else {
        return TierVerdict::NoStore(NoStoreReason::TagsUnknown);
    };
    if !answer.canonical {
        return TierVerdict::NoStore(NoStoreReason::NotCanonical);
    }
    let remaining_s = answer.fresh_until.saturating_sub(answer.now) / 1000;
    if outlook.purges_in_time() {
        TierVerdict::Keep {
            max_age_s: remaining_s,
            stale_while_revalidate_s: settings.stale_while_revalidate_s,
            stale_if_error_s: settings.stale_if_error_s,
            cache_tag: cache_tag.to_string(),
        }
    } else {
        TierVerdict::Keep {
            max_age_s: remaining_s.min(UNPURGEABLE_LIFETIME_S),
            stale_while_revalidate_s: 0,
            stale_if_error_s: 0,
            cache_tag: cache_tag.to_string(),
        }
    }
}

/// Sets the tier's fields on an answer's headers (replacing any the origin sent).
pub fn apply_tier_headers(headers: &mut Headers, verdict: &TierVerdict) {
    headers.remove("cdn-cache-control");
    headers.remove(CACHE_TAG);
    match verdict {
        TierVerdict::Keep {
            max_age_s,
            stale_while_revalidate_s,
            stale_if_error_s,
            cache_tag,
        } => {
            let mut value = format!("max-age={max_age_s}");
            if *stale_while_revalidate_s > 0 {
                value.push_str(&format!(", stale-while-revalidate={stale_while_revalidate_s}"));
            }
            if *stale_if_error_s > 0 {
                value.push_str(&format!(", stale-if-error={stale_if_error_s}"));
            }
            headers.set(TIER_CACHE_CONTROL, value);
            headers.set(CACHE_TAG, cache_tag.clone());
        }
        TierVerdict::NoStore(_) => headers.set(TIER_CACHE_CONTROL, "no-store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::state::BypassReason;

    fn hit<'a>(state: &'a CacheState, fresh_for_ms: u64) -> TierAnswer<'a> {
        TierAnswer {
            state,
            fresh_until: 1_000_000 + fresh_for_ms,
            now: 1_000_000,
            cache_tag: Some("isr-p-00,posts"),
            canonical: true,
        }
    }

    #[test]
    fn a_hit_is_kept_for_its_remaining_freshness_with_its_tags() {
        let v = tier_verdict(&hit(&CacheState::Hit, 299_999), &TierSettings::default(), PurgeOutlook::Within(5_000));
        let mut h = Headers::new();
        h.set("cache-control", "public, max-age=0, must-revalidate");
        apply_tier_headers(&mut h, &v);
        assert_eq!(h.get(TIER_CACHE_CONTROL), Some("max-age=299, stale-while-revalidate=60, stale-if-error=86400"));
        assert_eq!(h.get(CACHE_TAG), Some("isr-p-00,posts"));
        assert_eq!(h.get("cache-control"), Some("public, max-age=0, must-revalidate"), "browsers keep point 8's header");
    }

    #[test]
    fn stale_miss_and_bypass_answers_are_never_kept() {
        for state in [CacheState::Stale, CacheState::Miss, CacheState::Bypass(BypassReason::Method)] {
            let v = tier_verdict(&hit(&state, 60_000), &TierSettings::default(), PurgeOutlook::Within(0));
            assert_eq!(v, TierVerdict::NoStore(NoStoreReason::NotAHit), "{state}");
            let mut h: Headers = [("cloudflare-cdn-cache-control", "max-age=3600"), ("cdn-cache-control", "max-age=3600"), ("cache-tag", "x")]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            apply_tier_headers(&mut h, &v);
            assert_eq!(h.get_all(TIER_CACHE_CONTROL).collect::<Vec<_>>(), ["no-store"]);
            assert_eq!((h.get("cdn-cache-control"), h.get(CACHE_TAG)), (None, None));
        }
    }

    #[test]
    fn pages_a_purge_could_miss_are_not_kept() {
        let state = CacheState::Hit;
        let mut a = hit(&state, 60_000);
        a.cache_tag = None;
        assert_eq!(tier_verdict(&a, &TierSettings::default(), PurgeOutlook::Within(0)), TierVerdict::NoStore(NoStoreReason::TagsUnknown));
        let mut a = hit(&state, 60_000);
        a.canonical = false;
        assert_eq!(tier_verdict(&a, &TierSettings::default(), PurgeOutlook::Within(0)), TierVerdict::NoStore(NoStoreReason::NotCanonical));
    }

    #[test]
    fn late_purges_shorten_the_lifetime_and_forbid_stale_copies() {
        let state = CacheState::Hit;
        for outlook in [PurgeOutlook::Unknown, PurgeOutlook::Within(PURGE_BOUND_MS + 1)] {
            let v = tier_verdict(&hit(&state, 3_600_000), &TierSettings::default(), outlook);
            assert_eq!(
                v,
                TierVerdict::Keep {
                    max_age_s: UNPURGEABLE_LIFETIME_S,
                    stale_while_revalidate_s: 0,
                    stale_if_error_s: 0,
                    cache_tag: "isr-p-00,posts".into()
                },
                "{outlook:?}"
            );
            let mut h = Headers::new();
            apply_tier_headers(&mut h, &v);
            assert_eq!(h.get(TIER_CACHE_CONTROL), Some("max-age=13"));
        }
        // A page fresher than the bound keeps its own, shorter, lifetime.
        let v = tier_verdict(&hit(&state, 4_000), &TierSettings::default(), PurgeOutlook::Unknown);
        assert!(matches!(v, TierVerdict::Keep { max_age_s: 4, .. }));
        assert!(PurgeOutlook::Within(PURGE_BOUND_MS).purges_in_time());
    }
}

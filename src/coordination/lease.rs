//! Who may regenerate a page, and when to try again after a failure.
//!
//! Two layers, like pingora-cache's cache lock but across a global store without locks:
//! - within one isolate, [`IsolateState`] lets exactly one regeneration of a page run at a time
//!   (the guard releases it on drop, even if the task is cancelled) and remembers back-off;
//! - across isolates and locations, a best-effort [`Lease`] in KV says "someone is regenerating
//!   this version of the page until T" or "it failed N times; next attempt at T". KV has no
//!   compare-and-swap, so two isolates can both win a race for the lease; the lease only makes a
//!   herd of stale hits cost a handful of origin renders instead of one per isolate.

use crate::runtime::clock::Millis;
use crate::rules::meta::PageMeta;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// First retry delay after a failed regeneration.
pub const FIRST_RETRY_MS: u64 = 5_000;
/// Longest retry delay.
pub const MAX_RETRY_MS: u64 = 300_000;
/// Most pages whose back-off one isolate remembers (bounded memory).
pub const MAX_REMEMBERED_BACKOFFS: usize = 10_000;

/// Delay before the next attempt after `failures` consecutive failures (1, 2, ...):
/// 5 s, 10 s, 20 s, ... capped at 5 minutes.
pub fn retry_delay_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY_MS << doublings).min(MAX_RETRY_MS)
}

/// The version of a stored page a lease is about: its render time and invalidation time.
/// A new render or a new invalidation is a new version, which no old lease blocks.
pub fn page_version(meta: &PageMeta) -> (Millis, Millis) {
    (meta.rendered_at, meta.invalidated_at.unwrap_or(0))
}

/// A regeneration lease or back-off record, stored as JSON in KV.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `rendered_at` of the page version being regenerated.
    #[serde(rename = "p")]
    pub rendered_at: Millis,
    /// `invalidated_at` (or 0) of that version.
    #[serde(rename = "i", default)]
    pub invalidated_at: Millis,
    /// No other regeneration of that version before this time (ms).
    #[serde(rename = "u")]
    pub until: Millis,
    /// Consecutive failed regenerations of that version.
    #[serde(rename = "f", default)]
    pub failures: u32,
}

impl Lease {
    /// Whether this lease forbids regenerating `meta`'s version at `now`.
    pub fn blocks(&self, meta: &PageMeta, now: Millis) -> bool {
        (self.rendered_at, self.invalidated_at) == page_version(meta) && now < self.until
    }

    /// Failures already recorded for `meta`'s version (0 for another version).
    pub fn failures_for(&self, meta: &PageMeta) -> u32 {
        if (self.rendered_at, self.invalidated_at) == page_version(meta) {
            self.failures
        } else {
            0
        }
    }

    /// A lease on `meta`'s version until `until`, after `failures` failures.
    pub fn new(meta: &PageMeta, until: Millis, failures: u32) -> Lease {
        let (rendered_at, invalidated_at) = page_version(meta);
        Lease {
            rendered_at,
            invalidated_at,
            until,
            failures,
        }
    }

    /// KV expiration for this lease: its own end plus a minute, at least KV's 60 s minimum.
    pub fn expiration_ttl_s(&self, now: Millis) -> u64 {
        self.until.saturating_sub(now) / 1000 + 60
    }
}

/// What one isolate knows about regenerations, shared by every request it serves.
#[derive(Default)]
pub struct IsolateState {
    regenerating: RefCell<HashSet<String>>,
    backoff_until: RefCell<HashMap<String, Millis>>,
}

impl IsolateState {
    /// A fresh state (one per isolate; the adapter keeps it in a thread-local).
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Claims the right to regenerate `page_key`, unless a regeneration of it is running in
    /// this isolate or its back-off has not ended. The claim ends when the guard is dropped.
    pub fn try_claim(self: &Rc<Self>, page_key: &str, now: Millis) -> Option<RegenerationGuard> {
        if let Some(until) = self.backoff_until.borrow().get(page_key) {
            if now < *until {
                return None;
            }
        }
        if !self.regenerating.borrow_mut().insert(page_key.to_string()) {
            return None;
        }
        Some(RegenerationGuard {
            state: self.clone(),
            page_key: page_key.to_string(),
        })
    }

    /// Remembers that `page_key` should not be retried before `until`.
    pub fn back_off(&self, page_key: &str, until: Millis, now: Millis) {
        let mut map = self.backoff_until.borrow_mut();
        if map.len() >= MAX_REMEMBERED_BACKOFFS {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_REMEMBERED_BACKOFFS {
                map.clear();
            }
        }
        map.insert(page_key.to_string(), until);
    }

    /// Forgets any back-off of `page_key` (after a success).
    pub fn clear_backoff(&self, page_key: &str) {
        self.backoff_until.borrow_mut().remove(page_key);
    }

    /// Forgets every back-off (after a webhook invalidation: each page is a new version).
    pub fn clear_all_backoffs(&self) {
        self.backoff_until.borrow_mut().clear();
    }

    /// Whether a regeneration of `page_key` is running in this isolate.
    pub fn is_regenerating(&self, page_key: &str) -> bool {
        self.regenerating.borrow().contains(page_key)
    }
}

/// Proof that this task is the isolate's one regeneration of a page; releases it on drop.
pub struct RegenerationGuard {
    state: Rc<IsolateState>,
    page_key: String,
}

impl Drop for RegenerationGuard {
    fn drop(&mut self) {
        self.state.regenerating.borrow_mut().remove(&self.page_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(rendered_at: Millis) -> PageMeta {
        crate::testing::page_meta(rendered_at, 60)
    }

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert_eq!(retry_delay_ms(1), 5_000);
        assert_eq!(retry_delay_ms(2), 10_000);
        assert_eq!(retry_delay_ms(3), 20_000);
        assert_eq!(retry_delay_ms(7), MAX_RETRY_MS);
        assert_eq!(retry_delay_ms(u32::MAX), MAX_RETRY_MS);
    }

    #[test]
    fn a_lease_blocks_only_its_own_version_until_it_ends() {
        let m = meta(1000);
        let lease = Lease::new(&m, 5000, 2);
        assert!(lease.blocks(&m, 4999));
        assert!(!lease.blocks(&m, 5000));
        assert!(!lease.blocks(&meta(2000), 4000), "a newer render is not blocked");
        let mut invalidated = m.clone();
        invalidated.invalidated_at = Some(3000);
        assert!(!lease.blocks(&invalidated, 4000), "an invalidation is a new version");
        assert_eq!(lease.failures_for(&m), 2);
        assert_eq!(lease.failures_for(&invalidated), 0);
        assert_eq!(lease.expiration_ttl_s(5000), 60);
        assert_eq!(lease.expiration_ttl_s(0), 65);
    }

    #[test]
    fn one_claim_per_page_per_isolate_released_on_drop() {
        let state = IsolateState::new();
        let guard = state.try_claim("p/1/a", 0).expect("first claim");
        assert!(state.try_claim("p/1/a", 0).is_none());
        assert!(state.try_claim("p/1/b", 0).is_some(), "other pages are independent");
        assert!(state.is_regenerating("p/1/a"));
        drop(guard);
        assert!(state.try_claim("p/1/a", 0).is_some());
    }

    #[test]
    fn back_off_blocks_claims_until_it_ends() {
        let state = IsolateState::new();
        state.back_off("p/1/a", 10_000, 0);
        assert!(state.try_claim("p/1/a", 9_999).is_none());
        assert!(state.try_claim("p/1/a", 10_000).is_some());
        state.back_off("p/1/a", 20_000, 10_000);
        state.clear_backoff("p/1/a");
        assert!(state.try_claim("p/1/a", 10_001).is_some());
        state.back_off("p/1/a", 30_000, 10_000);
        state.back_off("p/1/b", 30_000, 10_000);
        state.clear_all_backoffs();
        assert!(state.try_claim("p/1/a", 10_002).is_some() && state.try_claim("p/1/b", 10_002).is_some());
    }
}

//! Global single-flight regeneration: at most one regeneration per page version at a time,
//! worldwide, decided in the coordinator (one place, one thread: no race between locations).
//!
//! A claim is on a page *version* ([`claim_version`]): the invalidation that made it stale (so
//! that every location's copy marked by one publish shares one claim, whatever its own render
//! time), or else its render (copies of one KV value stale by time). A new render or a new
//! invalidation is a new version that no old claim blocks. A claim ends when its holder releases it or when its time
//! runs out (the regeneration timeout plus a margin), so a holder that disappears (its isolate
//! evicted, `waitUntil` cut off) never blocks a page for longer. A failed regeneration releases
//! its claim with a retry time: the claim then holds the page back until then (the back-off,
//! shared by every location), and counts the failures for the next delay.

use crate::runtime::clock::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most claims kept; beyond it, ended claims are dropped first, then all (a needless
/// regeneration at worst).
pub const MAX_CLAIMS: usize = 100_000;

/// A page version: `(rendered_at, 0)` for a page stale by time, `(0, invalidated_at)` for an
/// invalidated one.
pub type Version = (Millis, Millis);

/// The version a regeneration of `meta` claims.
pub fn claim_version(meta: &crate::rules::meta::PageMeta) -> Version {
    match meta.invalidated_at {
        Some(at) => (0, at),
        None => (meta.rendered_at, 0),
    }
}

/// The answer to a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claim", rename_all = "lowercase")]
pub enum ClaimAnswer {
    /// The caller regenerates; `failures` earlier attempts at this version failed.
    Granted {
        /// Consecutive failures of this version so far.
        failures: u32,
    },
    /// Someone else is regenerating this version, or it is backing off, until `until` (ms).
    Held {
        /// When the claim ends.
        until: Millis,
    },
}

#[derive(Clone, Debug)]
struct Claim {
    version: Version,
    until: Millis,
    failures: u32,
}

/// The claims of the coordinator, in its memory.
#[derive(Default, Debug)]
pub struct Claims {
    claims: HashMap<String, Claim>,
}

impl Claims {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims `page`'s `version` for `ttl_ms` from `now`, unless a claim on that version holds.
    pub fn claim(&mut self, page: &str, version: Version, now: Millis, ttl_ms: u64) -> ClaimAnswer {
        let failures = match self.claims.get(page) {
            Some(c) if c.version == version && now < c.until => return ClaimAnswer::Held { until: c.until },
            Some(c) if c.version == version => c.failures,
            _ => 0,
        };
        if self.claims.len() >= MAX_CLAIMS && !self.claims.contains_key(page) {
            self.claims.retain(|_, c| c.until > now);
            if self.claims.len() >= MAX_CLAIMS {
                self.claims.clear();
            }
        }
        self.claims.insert(
            page.to_string(),
            Claim {
                version,
                until: now + ttl_ms,
                failures,
            },
        );
        ClaimAnswer::Granted { failures }
    }

    /// Ends the claim on `page`'s `version`: done (`retry_at` `None`), or failed, holding the
    /// version back until `retry_at`. A claim on another version is left alone.
    pub fn release(&mut self, page: &str, version: Version, retry_at: Option<Millis>) {
        let Some(claim) = self.claims.get_mut(page) else {
            return;
        };
        if claim.version != version {
            return;
        }
        match retry_at {
            None => {
                self.claims.remove(page);
            }
            Some(at) => {
                claim.until = at;
                claim.failures += 1;
            }
        }
    }

    /// Claims kept (ended ones included, until they are replaced or dropped).
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// Whether no claim is kept.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_version_until_released() {
        let mut c = Claims::new();
        assert_eq!(c.claim("p", (1, 0), 100, 1_000), ClaimAnswer::Granted { failures: 0 });
        assert_eq!(c.claim("p", (1, 0), 200, 1_000), ClaimAnswer::Held { until: 1_100 });
        assert_eq!(c.claim("q", (1, 0), 200, 1_000), ClaimAnswer::Granted { failures: 0 }, "pages are independent");
        c.release("p", (1, 0), None);
        assert_eq!(c.claim("p", (1, 0), 300, 1_000), ClaimAnswer::Granted { failures: 0 });
    }

    #[test]
    fn a_lost_holder_s_claim_expires() {
        let mut c = Claims::new();
        c.claim("p", (1, 0), 0, 25_000);
        assert!(matches!(c.claim("p", (1, 0), 24_999, 25_000), ClaimAnswer::Held { .. }));
        assert_eq!(c.claim("p", (1, 0), 25_000, 25_000), ClaimAnswer::Granted { failures: 0 });
    }

    #[test]
    fn a_new_version_is_not_blocked_by_an_old_claim() {
        let mut c = Claims::new();
        c.claim("p", (1, 0), 0, 25_000);
        assert_eq!(c.claim("p", (1, 5), 10, 25_000), ClaimAnswer::Granted { failures: 0 }, "invalidated since");
        c.release("p", (1, 0), None);
        assert!(matches!(c.claim("p", (1, 5), 20, 25_000), ClaimAnswer::Held { .. }), "an old holder cannot release the new claim");
    }

    #[test]
    fn a_failure_backs_off_every_location_and_counts() {
        let mut c = Claims::new();
        c.claim("p", (1, 0), 0, 25_000);
        c.release("p", (1, 0), Some(5_000));
        assert_eq!(c.claim("p", (1, 0), 4_999, 25_000), ClaimAnswer::Held { until: 5_000 });
        assert_eq!(c.claim("p", (1, 0), 5_000, 25_000), ClaimAnswer::Granted { failures: 1 });
        c.release("p", (1, 0), Some(15_000));
        assert_eq!(c.claim("p", (1, 0), 15_000, 25_000), ClaimAnswer::Granted { failures: 2 });
    }

    #[test]
    fn copies_marked_by_one_invalidation_share_a_version() {
        let mut here = crate::testing::page_meta(1_000, 60);
        let mut there = crate::testing::page_meta(2_000, 60);
        assert_ne!(claim_version(&here), claim_version(&there), "two renders stale by time");
        here.invalidated_at = Some(5_000);
        there.invalidated_at = Some(5_000);
        assert_eq!(claim_version(&here), claim_version(&there));
        there.invalidated_at = Some(6_000);
        assert_ne!(claim_version(&here), claim_version(&there), "a later publish is a new version");
    }

    #[test]
    fn answers_serialize_for_the_wire() {
        let granted = serde_json::to_string(&ClaimAnswer::Granted { failures: 2 }).unwrap();
        assert_eq!(granted, r#"{"claim":"granted","failures":2}"#);
        let held: ClaimAnswer = serde_json::from_str(r#"{"claim":"held","until":9}"#).unwrap();
        assert_eq!(held, ClaimAnswer::Held { until: 9 });
    }
}

//! The engine's side of the coordinator: recording each invalidation before the webhook
//! answers, keeping the isolate's copy of the log fresh enough for the bound
//! ([`crate::coordination::cache`]), checking HITs against it, and global single-flight claims.
//! Without a coordinator, none of this runs and the engine works on KV alone (said once).

use super::Engine;
use crate::coordination::cache::{LogState, COORDINATOR_TIMEOUT_MS, HARD_BOUND_MS};
use crate::coordination::claims::{claim_version, ClaimAnswer};
use crate::coordination::coordinator::CoordinatorError;
use crate::coordination::log::NewEntry;
use crate::coordination::matcher::{self, PageFacts};
use crate::engine::jobs::{recheck_delay_s, KV_PROPAGATION_MS};
use crate::rules::config::TrailingSlash;
use crate::rules::invalidation::{Invalidation, InvalidationMode};
use crate::rules::key::{self, CacheKey};
use crate::rules::meta::PageMeta;
use crate::runtime::clock::Millis;
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::store::KvStore;

/// KV's propagation delay to other locations, in seconds (usually; not guaranteed).
pub const KV_PROPAGATION_S: u32 = (KV_PROPAGATION_MS / 1000) as u32;

/// Most looks at a refresh another request started, [`crate::runtime::clock::Clock::pause`]
/// apart (10 ms on Workers), before this request refreshes by itself.
const MAX_REFRESH_POLLS: u32 = 120;

/// How a regeneration was claimed.
pub(crate) enum GlobalClaim {
    /// The coordinator granted it; `failures` earlier attempts of this version failed.
    Granted(u32),
    /// Someone else regenerates this version (or it backs off).
    Held,
    /// No coordinator, or it failed: fall back to the KV lease.
    Unavailable,
}

/// The page's path and query without its host: how log entries name pages.
pub(crate) fn page_path(key: &CacheKey) -> String {
    if key.query.is_empty() {
        key.path.clone()
    } else {
        format!("{}?{}", key.path, key.query)
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Worst case for an invalidation to reach every location without a coordinator (seconds):
    /// the re-check pass (derived from the timeouts) plus KV's propagation of its marks.
    pub fn kv_only_window_s(&self) -> u32 {
        recheck_delay_s(&self.config) + KV_PROPAGATION_S
    }

    /// One sentence on how invalidations reach other locations, for the log and the admin page.
    pub fn coordination_summary(&self) -> String {
        match &self.coordinator {
            Some(_) => format!(
                "coordinator bound: an invalidation is live in every location within {:.1} s of the webhook's 200",
                HARD_BOUND_MS as f64 / 1000.0
            ),
            None => format!(
                "no coordinator bound (Durable Object binding COORDINATOR): KV only, invalidations reach other locations within about {KV_PROPAGATION_S} s, at worst {} s; regeneration leases are best-effort",
                self.kv_only_window_s()
            ),
        }
    }

    /// Says once per isolate that the worker runs on KV alone.
    pub(crate) fn announce_coordination(&self) {
        if self.coordinator.is_none() && !self.isolate.announced.replace(true) {
            self.log_event(Level::Warn, "coordination", "", &self.coordination_summary());
        }
    }

    /// Brings the isolate's copy of the log up to the bound before a page is checked against it:
    /// nothing while it is young, a background refresh when it ages, a refresh before answering
    /// when it is too old (or a wait for the one another request started: a request cannot await
    /// another request's I/O on Workers, so it looks at it between short pauses).
    pub(crate) async fn sync_log(&self) {
        if self.log_usable_now() {
            return;
        }
        let now = self.clock.now_ms();
        let begun = self.isolate.log.borrow_mut().begin_refresh(now);
        match begun {
            Some(since) => self.refresh_log(now, since).await,
            None => self.wait_for_refresh().await,
        }
    }

    /// The half of [`Engine::sync_log`] that needs no await: whether a page may be checked
    /// against the log copy now (starting a background refresh when the copy ages), or only
    /// after `sync_log` (the copy is too old: [`LogState::HardStale`]).
    pub(crate) fn log_usable_now(&self) -> bool {
        if self.coordinator.is_none() {
            return true;
        }
        let now = self.clock.now_ms();
        let state = self.isolate.log.borrow().state(now);
        match state {
            LogState::Fresh | LogState::Unavailable => true,
            LogState::SoftStale => {
                let begun = self.isolate.log.borrow_mut().begin_refresh(now);
                if let Some(since) = begun {
                    let this = self.clone();
                    self.background.spawn(Box::pin(async move { this.refresh_log(now, since).await }));
                }
                true
            }
            LogState::HardStale => false,
        }
    }

    async fn refresh_log(&self, started: Millis, since: u64) {
        let Some(coordinator) = &self.coordinator else {
            return;
        };
        let result = coordinator.log_since(since).await;
        if let Err(e) = &result {
            self.log_event(Level::Warn, "coordinator_log_failed", "", &format!("reading the invalidation log failed: {e}; relying on KV marks for now"));
        }
        let purges_due = result.as_ref().is_ok_and(|slice| slice.purge.is_some_and(|p| p.due));
        self.isolate.log.borrow_mut().finish_refresh(started, result, self.clock.now_ms());
        if purges_due {
            self.help_purge();
        }
    }

    async fn wait_for_refresh(&self) {
        let deadline = self.clock.now_ms() + COORDINATOR_TIMEOUT_MS;
        for _ in 0..MAX_REFRESH_POLLS {
            self.clock.pause().await;
            let now = self.clock.now_ms();
            if self.isolate.log.borrow().state(now) != LogState::HardStale || now >= deadline {
                break;
            }
        }
        // The other refresh hung: refresh here (the copy's own rules allow it by now).
        let now = self.clock.now_ms();
        if self.isolate.log.borrow().state(now) == LogState::HardStale {
            let begun = self.isolate.log.borrow_mut().begin_refresh(now);
            if let Some(since) = begun {
                self.refresh_log(now, since).await;
            }
        }
    }

    /// Whether the log says a page that KV has as fresh was invalidated since it was rendered:
    /// the mode, and the time the KV mark will carry.
    pub(crate) fn log_verdict(&self, key: &CacheKey, meta: &PageMeta) -> Option<(InvalidationMode, Millis)> {
        self.coordinator.as_ref()?;
        let path = page_path(key);
        let facts = PageFacts {
            path: &path,
            tag_hashes: meta.tag_hashes.as_deref(),
            rendered_at: meta.rendered_at,
            invalidated_at: meta.invalidated_at,
            expired: meta.expired,
        };
        let log = self.isolate.log.borrow();
        matcher::verdict(log.entries(), &facts)
    }

    /// Records `request` in the coordinator's log (at `at`), with its Workers Cache purge
    /// targets (`purge`, empty when the mode is off), before the webhook answers. `Ok(None)`
    /// without a coordinator.
    pub(crate) async fn record_invalidation(&self, hosts: &[String], request: &Invalidation, at: Millis, purge: Vec<crate::tier::purge::PurgeTarget>) -> Result<Option<u64>, CoordinatorError> {
        let Some(coordinator) = &self.coordinator else {
            return Ok(None);
        };
        let host = hosts.first().map(String::as_str).unwrap_or("localhost");
        let entry = NewEntry {
            at,
            tags: request.tags.iter().map(|t| matcher::tag_hash(t)).collect(),
            paths: request
                .paths
                .iter()
                .filter_map(|p| key::normalise(&format!("https://{host}{p}"), &self.config).ok())
                .map(|k| page_path(&k))
                .collect(),
            prefixes: request.prefixes.iter().map(|p| key::normalise_path(p, TrailingSlash::Keep)).collect(),
            mode: request.mode,
        };
        // This isolate's own copy learns it on its next refresh; the KV marks make this location
        // live at once anyway.
        coordinator.record(entry, purge).await.map(Some)
    }

    /// Claims the regeneration of `meta`'s version of `key` worldwide.
    pub(crate) async fn claim_globally(&self, key: &CacheKey, meta: &PageMeta, ttl_ms: u64) -> GlobalClaim {
        let Some(coordinator) = &self.coordinator else {
            return GlobalClaim::Unavailable;
        };
        match coordinator.claim(&key.page_id(), claim_version(meta), ttl_ms).await {
            Ok(ClaimAnswer::Granted { failures }) => GlobalClaim::Granted(failures),
            Ok(ClaimAnswer::Held { .. }) => GlobalClaim::Held,
            Err(e) => {
                self.log_event(Level::Warn, "claim_failed", &key.page_id(), &format!("claiming the regeneration failed: {e}; using the KV lease"));
                GlobalClaim::Unavailable
            }
        }
    }

    /// Ends a claim the coordinator granted: done, or failed and backing off until `retry_at`.
    pub(crate) async fn release_globally(&self, key: &CacheKey, meta: &PageMeta, retry_at: Option<Millis>) {
        let Some(coordinator) = &self.coordinator else {
            return;
        };
        if let Err(e) = coordinator.release(&key.page_id(), claim_version(meta), retry_at).await {
            // The claim runs out by itself.
            self.log_event(Level::Warn, "claim_release_failed", &key.page_id(), &e.to_string());
        }
    }
}

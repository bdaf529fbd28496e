//! The Workers Cache mode (`WORKERS_CACHE = "on"`) in the engine: the tier's fields on every
//! answer, and a purge of the tier for every invalidation (the rules are in [`crate::tier`]):
//! through the coordinator's purge planner when one is bound
//! ([`crate::coordination::purges`]), else through this isolate's own.

use super::Engine;
use crate::http::{Headers, Request, Response};
use crate::rules::invalidation::Invalidation;
use crate::rules::meta::StoredPage;
use crate::rules::state::CacheState;
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::store::KvStore;
use crate::tier::headers::{apply_tier_headers, tier_verdict, NoStoreReason, PurgeOutlook, TierAnswer, TierSettings, TierVerdict, TIER_CACHE_CONTROL};
use crate::tier::purge::{targets_of, PurgeTarget};
use crate::tier::tags::{answer_cache_tags, key_path};
use std::rc::Rc;

/// The e2e-only route listing the purges recorded by the `ctx.cache` test double.
pub const TIER_TEST_ROUTE: &str = "/__isr/test/tier-purges";

/// How long after an invalidation its purges may still be sent by the invocation that took it
/// (`waitUntil` allows 30 s).
const DRAIN_WINDOW_MS: u64 = 25_000;

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// What purges are known to promise here: the coordinator's purge planner's outlook, as
    /// this isolate's copy of the log carries it, while that copy is within the coordinator's
    /// bound. [`PurgeOutlook::Unknown`] (copies kept short) without a coordinator (this
    /// isolate's own planner knows only its own webhooks, and other locations learn of an
    /// invalidation only with KV's propagation), without `ctx.cache`, while the coordinator
    /// does not answer, and while its purges fail.
    fn tier_outlook(&self) -> PurgeOutlook {
        if self.coordinator.is_none() || !self.purger.as_ref().is_some_and(|p| p.available()) {
            return PurgeOutlook::Unknown;
        }
        match self.isolate.log.borrow().purge_status(self.clock.now_ms()) {
            Some(status) => status.outlook(),
            None => PurgeOutlook::Unknown,
        }
    }

    /// Sets the tier's fields on the answer built from a stored page (mode on).
    pub(crate) fn tier_headers_for_stored(&self, req: &Request, page: &StoredPage, state: &CacheState, headers: &mut Headers) {
        // Workers Cache keys its copies by path and query, not host (Cloudflare's "Cache keys"):
        // a worker that answers any host may have one host's page served for another's request.
        if self.config.cache_hosts.is_empty() && !self.isolate.tier_said_any_host.replace(true) {
            self.log_event(Level::Warn, "workers_cache_any_host", "", "WORKERS_CACHE is on and CACHE_HOSTS is unset: Workers Cache keys its copies by path and query, not host, so a page of one host can be served for another's request; set CACHE_HOSTS to this site's hosts (README, Deploy)");
        }
        let parsed = crate::rules::key::parse_url(&req.url).ok();
        let key = parsed.as_ref().and_then(|u| crate::rules::key::normalise_parsed(u, &self.config).ok());
        let (Some(parsed), Some(key)) = (parsed, key) else {
            apply_tier_headers(headers, &TierVerdict::NoStore(NoStoreReason::NotCanonical));
            return;
        };
        let cache_tag = page.meta.tier_tags.as_deref().map(|mapped| answer_cache_tags(&key_path(&key), mapped));
        let meta = &page.meta;
        let answer = TierAnswer {
            state,
            fresh_until: meta.rendered_at.saturating_add(u64::from(meta.revalidate_s) * 1000),
            now: self.clock.now_ms(),
            cache_tag: cache_tag.as_deref(),
            canonical: parsed.path() == key.path,
        };
        let settings = TierSettings {
            stale_while_revalidate_s: self.config.workers_cache_swr_s,
            stale_if_error_s: self.config.stale_if_error_s,
        };
        apply_tier_headers(headers, &tier_verdict(&answer, &settings, self.tier_outlook()));
    }

    /// Any answer that did not get the tier's fields (MISS, BYPASS, errors, the webhook, the
    /// admin page) is not for the tier to keep (mode on).
    pub(crate) fn tier_no_store_unless_kept(&self, resp: &mut Response) {
        if !resp.headers.contains(TIER_CACHE_CONTROL) {
            apply_tier_headers(&mut resp.headers, &TierVerdict::NoStore(NoStoreReason::NotAHit));
        }
    }

    /// The tier's purge targets for `invalidation` (its tags, its paths as the page's path tags,
    /// its prefixes): `None` when the mode is off or `ctx.cache` is absent (said once), so that
    /// nothing is planned that nobody could send.
    pub(crate) fn tier_targets(&self, hosts: &[String], invalidation: &Invalidation) -> Option<Vec<PurgeTarget>> {
        if !self.config.workers_cache {
            return None;
        }
        let purger = self.purger.as_ref()?;
        if !purger.available() {
            if !self.isolate.tier_said_unavailable.replace(true) {
                self.log_event(Level::Warn, "workers_cache_unavailable", "", "WORKERS_CACHE is on but ctx.cache is absent (wrangler dev, or an older compatibility date): nothing is purged, and copies are kept short");
            }
            return None;
        }
        let host = hosts.first().cloned().unwrap_or_else(|| "localhost".into());
        let paths: Vec<String> = invalidation
            .paths
            .iter()
            .filter_map(|p| crate::rules::key::normalise(&format!("https://{host}{p}"), &self.config).ok())
            .map(|k| key_path(&k))
            .collect();
        let prefixes: Vec<String> = invalidation.prefixes.iter().map(|p| crate::rules::key::normalise_path(p, crate::rules::config::TrailingSlash::Keep)).collect();
        Some(targets_of(
            invalidation.tags.iter().map(String::as_str),
            paths.iter().map(String::as_str),
            prefixes.iter().map(String::as_str),
        ))
    }

    /// Sends the purges of an invalidation in the background, within Workers Cache's limits
    /// (2 s after it, batched, retried), for as long as this invocation may run:
    /// - `recorded` (its log position): the coordinator's planner has the targets; this
    ///   invocation takes and sends due requests until its own are purged, and whatever it
    ///   cannot finish is sent later by any isolate whose log refresh hears it is due;
    /// - `None` (no coordinator, or it could not record them): this isolate's own planner, best
    ///   effort (its rate limit counts this isolate's calls only).
    pub(crate) fn purge_tier(&self, targets: Vec<PurgeTarget>, at: u64, recorded: Option<u64>) {
        let Some(purger) = self.purger.clone() else {
            return;
        };
        let clock = self.clock.clone();
        let logger = self.logger.clone();
        let deadline = clock.now_ms() + DRAIN_WINDOW_MS;
        let coordinated = recorded.and(self.coordinator.clone());
        if coordinated.is_none() {
            self.isolate.tier_planner.borrow_mut().add(targets, at);
        }
        let isolate = self.isolate.clone();
        self.background.spawn(Box::pin(async move {
            let (report, via) = match coordinated {
                Some(coordinator) => {
                    // Nothing is due before the settle time (counted by the coordinator from
                    // when it stored the entry, which was before now): one request saved.
                    clock.sleep(crate::tier::purge::SETTLE_MS).await;
                    (crate::coordination::purges::drain_through(&*coordinator, &*purger, &*clock, recorded, deadline).await, "the coordinator")
                }
                None => (crate::tier::send::drain(&isolate.tier_planner, &*purger, &*clock, deadline).await, "this isolate"),
            };
            let level = if report.left > 0 || report.failed > 0 { Level::Warn } else { Level::Info };
            logger.log(
                level,
                &format!("Workers Cache purge (planned by {via}): {} request(s) sent, {} failed, {} target(s) still pending", report.sent, report.failed, report.left),
            );
        }));
    }

    /// After a log refresh that heard the coordinator has purge requests due: takes and sends
    /// them once, in the background (so that a purge outlives the invocation that recorded it:
    /// the webhook's `waitUntil` may have ended, or its isolate gone, before a token came).
    pub(crate) fn help_purge(&self) {
        if !self.config.workers_cache {
            return;
        }
        let (Some(coordinator), Some(purger)) = (self.coordinator.clone(), self.purger.clone()) else {
            return;
        };
        let clock = self.clock.clone();
        let logger = self.logger.clone();
        self.background.spawn(Box::pin(async move {
            let deadline = clock.now_ms() + DRAIN_WINDOW_MS;
            let report = crate::coordination::purges::drain_through(&*coordinator, &*purger, &*clock, None, deadline).await;
            if report.sent > 0 || report.failed > 0 {
                let level = if report.failed > 0 { Level::Warn } else { Level::Info };
                logger.log(level, &format!("Workers Cache purge (due, sent by a log refresh): {} request(s) sent, {} failed", report.sent, report.failed));
            }
        }));
    }

    /// Whether `path` is the e2e-only route of the test double (and the double is on).
    pub(crate) fn is_tier_test_route(&self, path: &str) -> bool {
        self.config.workers_cache_test_double && path == TIER_TEST_ROUTE
    }

    /// The e2e-only route (`WORKERS_CACHE_TEST_DOUBLE = "record"`, see
    /// [`Engine::is_tier_test_route`]): the purges the test double recorded, as JSON.
    pub(crate) async fn handle_tier_test_route(&self) -> Response {
        match crate::tier::double::recorded(&*self.store).await {
            Ok(records) => Response::json(200, &serde_json::json!({ "test_double": "ctx.cache recorder (the local runtime has no ctx.cache)", "purges": records })),
            Err(e) => Response::json_error(500, &format!("reading the recorded purges failed: {e}")),
        }
    }
}

/// What an engine purges the tier with.
pub type SharedPurger = Rc<dyn crate::tier::send::CachePurger>;

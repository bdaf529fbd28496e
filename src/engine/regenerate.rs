//! STALE: regenerate a page in the background while visitors keep getting the stored copy.

use super::coordinate::GlobalClaim;
use super::Engine;
use crate::rules::key::CacheKey;
use crate::store::layout;
use crate::coordination::lease::{retry_delay_ms, Lease};
use crate::runtime::log::Level;
use crate::rules::meta::StoredPage;
use crate::runtime::origin::Origin;
use crate::rules::freshness::is_origin_failure;
use crate::rules::policy;
use crate::rules::state::BypassReason;
use crate::store::{KvStore, PutOptions, StoreError};
use crate::http::Body;
use super::write::{retry_backoff_ms, WRITE_RETRIES};

/// Extra lease time beyond the regeneration timeout, for the write that follows the render.
pub const LEASE_MARGIN_MS: u64 = 5_000;

/// How a regeneration ended.
enum Regenerated {
    /// A new page (or a refreshed one, after a 304) was written.
    Updated,
    /// The origin no longer allows caching the page, or answered that it is gone (401, 403,
    /// 451, an unstored redirect, another 4xx): it was removed, and the next visitor gets the
    /// origin's answer.
    Removed(BypassReason),
    /// The origin failed (no answer, a 5xx or 429, an answer too large to store); the stored
    /// page stays (stale-if-error, up to `STALE_IF_ERROR_S`).
    Failed(String),
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Hands a regeneration of `page` to background work, unless this isolate is already
    /// regenerating it or backing off after a failure.
    pub(crate) fn start_regeneration(&self, key: &CacheKey, page_key: &str, page: &StoredPage) {
        let Some(guard) = self.isolate.regenerations.try_claim(page_key, self.clock.now_ms()) else {
            return;
        };
        let (this, key, page_key, page) = (self.clone(), key.clone(), page_key.to_string(), page.clone());
        self.background.spawn(Box::pin(async move {
            let _claim = guard;
            this.regenerate(&key, &page_key, page).await;
        }));
    }

    async fn regenerate(&self, key: &CacheKey, page_key: &str, page: StoredPage) {
        let lease_key = layout::lease_key(&self.config.cache_version, &key.page_id());
        let ttl = self.config.regenerate_timeout_ms + LEASE_MARGIN_MS;
        // The coordinator's claim is global single-flight (and carries the back-off); without
        // it (unbound or failing), the best-effort KV lease.
        let (failures, global) = match self.claim_globally(key, &page.meta, ttl).await {
            GlobalClaim::Held => return,
            GlobalClaim::Granted(failures) => (failures, true),
            GlobalClaim::Unavailable => match self.claim_kv_lease(&lease_key, &page, ttl).await {
                Some(failures) => (failures, false),
                None => return,
            },
        };
        let now = self.clock.now_ms();
        match self.regenerate_once(key, page_key, &page, now).await {
            Regenerated::Updated => {
                self.isolate.regenerations.clear_backoff(page_key);
                self.isolate.failing_renders.clear(page_key);
                if global {
                    self.release_globally(key, &page.meta, None).await;
                }
            }
            Regenerated::Removed(reason) => {
                match reason {
                    BypassReason::Status(status) => self.log_event(
                        Level::Info,
                        "page_removed",
                        page_key,
                        &format!("origin answered {status}; removed it (visitors get the origin's answer)"),
                    ),
                    reason => self.log_event(
                        Level::Info,
                        "page_removed",
                        page_key,
                        &format!("origin no longer allows caching it ({}); removed it", reason.as_str()),
                    ),
                }
                if global {
                    self.release_globally(key, &page.meta, None).await;
                }
            }
            Regenerated::Failed(why) => {
                let failures = failures + 1;
                let delay = retry_delay_ms(failures);
                let now = self.clock.now_ms();
                self.isolate.regenerations.back_off(page_key, now + delay, now);
                self.log_event(
                    Level::Warn,
                    "regenerate_failed",
                    page_key,
                    &format!(
                        "{why}; still serving the copy rendered {}s ago; next attempt in {}s (failure {failures})",
                        page.meta.age_s(now),
                        delay / 1000
                    ),
                );
                if global {
                    self.release_globally(key, &page.meta, Some(now + delay)).await;
                } else {
                    let _ = self.store_lease(&lease_key, Lease::new(&page.meta, now + delay, failures), true).await;
                }
            }
        }
    }

    /// The best-effort KV lease: `Some(failures so far)` when this isolate may regenerate.
    async fn claim_kv_lease(&self, lease_key: &str, page: &StoredPage, ttl: u64) -> Option<u32> {
        let now = self.clock.now_ms();
        let lease = match self.store.get(lease_key).await {
            Ok(Some(v)) => serde_json::from_slice::<Lease>(&v.value).ok(),
            Ok(None) => None,
            Err(e) => {
                self.log_event(Level::Warn, "lease_read_failed", lease_key, &e.to_string());
                None
            }
        };
        if lease.as_ref().is_some_and(|l| l.blocks(&page.meta, now)) {
            return None;
        }
        let failures = lease.map_or(0, |l| l.failures_for(&page.meta));
        if let Err(StoreError::RateLimited) = self.store_lease(lease_key, Lease::new(&page.meta, now + ttl, failures), false).await {
            // Another isolate wrote this lease within the last second: it is regenerating.
            return None;
        }
        Some(failures)
    }

    async fn regenerate_once(&self, key: &CacheKey, page_key: &str, page: &StoredPage, started: u64) -> Regenerated {
        let (resp, hints) = match self.produce(key, "regenerate", Some(&page.meta), self.config.regenerate_timeout_ms).await {
            Ok(p) => (p.resp, p.hints),
            Err(e) => return Regenerated::Failed(e.to_string()),
        };
        let sent_validators = page.meta.origin_etag.is_some() || page.meta.last_modified.is_some();
        if resp.status == 304 && sent_validators {
            return self.refresh_unchanged(page_key, page, &resp.headers, started).await;
        }
        if is_origin_failure(resp.status) {
            // Checked before anything else about the answer: a 500 with a `Set-Cookie` is
            // still a failure, not a reason to drop the page.
            return Regenerated::Failed(format!("origin answered {}", resp.status));
        }
        match self.prepare_page(&resp, started, &hints) {
            Ok(prepared) => {
                self.write_page(page_key, prepared, Some(&page.meta)).await;
                Regenerated::Updated
            }
            // A 304 to a request without validators answers nothing.
            Err(BypassReason::Status(304)) => Regenerated::Failed("origin answered 304 to an unconditional request".to_string()),
            Err(reason @ (BypassReason::TooLarge | BypassReason::HeadersTooLarge)) => {
                Regenerated::Failed(format!("new render cannot be stored: {}", reason.as_str()))
            }
            Err(reason) => {
                // With its tag index entries; a failure is logged there.
                self.remove_page(page_key).await;
                Regenerated::Removed(reason)
            }
        }
    }

    /// The origin answered 304: the stored body is still right. Rewrite it with new freshness
    /// (KV cannot update metadata alone), without the origin re-rendering or re-sending it.
    async fn refresh_unchanged(&self, page_key: &str, page: &StoredPage, headers: &crate::http::Headers, started: u64) -> Regenerated {
        let mut meta = page.meta.clone();
        meta.rendered_at = started;
        meta.invalidated_at = None;
        meta.expired = false;
        let says_something = headers.contains("cache-control") || headers.contains("cdn-cache-control") || headers.contains("cloudflare-cdn-cache-control");
        if says_something {
            match policy::revalidate_seconds(meta.status, headers, &self.config) {
                Ok(s) => meta.revalidate_s = s,
                Err(reason) => return Regenerated::Failed(format!("304 without a usable revalidate time ({})", reason.as_str())),
            }
        }
        // The body to keep is the stored one, re-read here: the visitor's copy may be a stream
        // already on its way to the visitor (`KvStore::get_to_serve`). Re-read again before a
        // retry after 429 (usually a mark just written), so that the mark is carried over.
        let mut attempt = 0;
        loop {
            let body = match self.carry_invalidation(page_key, &mut meta).await {
                Some(current) if current.meta.etag == page.meta.etag => current.body,
                Some(_) => {
                    // Another location stored a different page since this one was read: it is newer
                    // than what the origin just confirmed, so it stays.
                    self.log_event(Level::Info, "regenerate_superseded", page_key, "the page changed while regenerating; keeping the newer page");
                    return Regenerated::Updated;
                }
                None => return Regenerated::Failed("the stored page could not be re-read to refresh it".to_string()),
            };
            let metadata = match meta.encode() {
                Ok(m) => m,
                Err(reason) => return Regenerated::Failed(reason.as_str().to_string()),
            };
            let opts = PutOptions {
                metadata: Some(metadata),
                expiration_ttl: meta.expiration_ttl_s(self.clock.now_ms()),
            };
            match self.store.put(page_key, body, opts).await {
                Err(StoreError::RateLimited) if attempt < WRITE_RETRIES => {
                    attempt += 1;
                    self.clock.sleep(retry_backoff_ms(attempt)).await;
                }
                Ok(()) => {
                    self.log_event(Level::Info, "page_refreshed", page_key, "origin: not modified");
                    return Regenerated::Updated;
                }
                Err(e) => return Regenerated::Failed(format!("storing refreshed page failed: {e}")),
            }
        }
    }

    async fn store_lease(&self, lease_key: &str, lease: Lease, retry: bool) -> Result<(), StoreError> {
        let opts = PutOptions {
            metadata: None,
            expiration_ttl: Some(lease.expiration_ttl_s(self.clock.now_ms())),
        };
        let value = Body::from(serde_json::to_vec(&lease).unwrap_or_default());
        let result = if retry {
            self.put_with_retry(lease_key, value, opts).await
        } else {
            self.store.put(lease_key, value, opts).await
        };
        if let Err(e) = &result {
            if *e != StoreError::RateLimited {
                self.log_event(Level::Warn, "lease_write_failed", lease_key, &e.to_string());
            }
        }
        result
    }
}

//! Turning an origin response into a stored page, and writing it within KV's limits.

use super::Engine;
use crate::runtime::clock::Millis;
use crate::rules::conditional::etag_for_body;
use crate::http::Response;
use crate::rules::key::hex;
use crate::runtime::log::Level;
use crate::rules::meta::{is_missing_status, usable_validator, PageMeta, StoredPage, META_VERSION};
use crate::runtime::origin::Origin;
use crate::rules::policy::{self, ResponseDecision};
use crate::rules::state::BypassReason;
use crate::store::{KvStore, PutOptions, StoreError};
use super::index::{IndexStep, INDEX_INCOMPLETE};
use crate::http::Body;
use sha2::{Digest, Sha256};

/// Retries of a write that KV rejected with 429 (one write per second per key).
pub const WRITE_RETRIES: u32 = 3;

/// Wait before retry `attempt` (1-based) of a write KV rejected with 429: 1 s, 2 s, 4 s.
pub fn retry_backoff_ms(attempt: u32) -> u64 {
    1000 << (attempt.max(1) - 1)
}

/// The longest a write can be delayed by 429 back-off: 1 + 2 + 4 = 7 s.
pub const WRITE_RETRY_BACKOFF_MS: u64 = 7_000;

/// A page ready to be written: its stored form (metadata checked against KV's limit) and tags.
#[derive(Clone, Debug)]
pub struct PreparedPage {
    /// The page as it will be read back.
    pub page: StoredPage,
    /// The page's tags.
    pub tags: Vec<String>,
}

impl PreparedPage {
    /// The page with its body, and the ETag computed from it when the origin gave none.
    pub fn with_body(mut self, body: Body) -> PreparedPage {
        if self.page.meta.origin_etag.is_none() {
            self.page.meta.etag = etag_for_body(&body);
        }
        self.page.body = body;
        self
    }
}

/// Digest of a tag set (order-independent), stored in metadata to detect tag changes cheaply.
pub fn tags_digest(tags: &[String]) -> Option<String> {
    if tags.is_empty() {
        return None;
    }
    let mut sorted: Vec<&str> = tags.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    for t in sorted {
        hasher.update(t.as_bytes());
        hasher.update([0]);
    }
    Some(hex(&hasher.finalize()[..8]))
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Decides whether `resp` may be stored and, if so, builds the stored page rendered at `started`.
    /// The route's `hints` fill in what the response's headers leave open: the revalidate time
    /// when there is no `Cache-Control` (404/410 keep `NOT_FOUND_REVALIDATE`), and more tags.
    pub(crate) fn prepare_page(&self, resp: &Response, started: Millis, hints: &super::Hints) -> Result<PreparedPage, BypassReason> {
        Ok(self.prepare_head(resp, resp.body.len(), started, hints)?.with_body(resp.body.clone()))
    }

    /// [`Engine::prepare_page`] from the response's head alone, for a body still arriving
    /// that is `body_len` bytes long as far as is known (its `Content-Length`, else 0): every
    /// rule but the body's size (checked again once it has arrived) and, when the origin gave no
    /// ETag, the ETag (computed from the body by [`PreparedPage::with_body`]). The metadata's
    /// size is checked with a stand-in ETag of the computed one's length.
    pub(crate) fn prepare_head(&self, resp: &Response, body_len: usize, started: Millis, hints: &super::Hints) -> Result<PreparedPage, BypassReason> {
        let (mut revalidate_s, mut tags) = match policy::classify_response(resp.status, &resp.headers, body_len, &self.config) {
            ResponseDecision::Store { revalidate_s, tags } => (revalidate_s, tags),
            ResponseDecision::DoNotStore(reason) => return Err(reason),
        };
        if let Some(hinted) = hints.revalidate_s {
            if resp.status < 400 && !policy::has_freshness_headers(&resp.headers) {
                revalidate_s = hinted;
            }
        }
        for tag in &hints.tags {
            if !policy::is_valid_tag(tag) {
                self.log_event(Level::Warn, "tag_ignored", tag, "not a valid tag (route tag)");
            } else if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        if is_missing_status(resp.status) {
            // A missing page is in no tag: a flood of distinct missing paths must not grow the
            // index, and it expires by itself ([`PageMeta::expiration_ttl_s`]). A page published
            // later under its path replaces it at its revalidate time, or at once with a path
            // invalidation.
            tags.clear();
        }
        let origin_etag = usable_validator(resp.headers.get("etag"));
        let last_modified = usable_validator(resp.headers.get("last-modified"));
        let mut meta = PageMeta {
            version: META_VERSION,
            rendered_at: started,
            revalidate_s,
            status: resp.status,
            etag: origin_etag.clone().unwrap_or_else(|| etag_for_body(b"")),
            origin_etag,
            last_modified,
            invalidated_at: None,
            expired: false,
            stale_if_error_s: crate::rules::freshness::stale_if_error_seconds(&resp.headers),
            tags_digest: tags_digest(&tags),
            tier_tags: if self.config.workers_cache { crate::tier::tags::mapped_tags(&tags) } else { None },
            tag_hashes: Some(crate::coordination::matcher::tag_hashes(&tags)),
            headers: policy::headers_to_store(&resp.headers).into_pairs(),
        };
        // Fails (page not stored) when the headers cannot fit in KV metadata.
        meta.encode()?;
        Ok(PreparedPage {
            page: StoredPage { meta, body: Body::new() },
            tags,
        })
    }

    /// Writes a prepared page. Never fails the caller: errors are logged, and the previously
    /// stored page (if any) stays in place.
    ///
    /// Before each attempt (the first, and each retry after a 429, which usually means a mark
    /// was just written) the stored page is re-read: a mark made after this render started is
    /// carried over, and a page rendered *later* than this one (by another isolate) is kept —
    /// an older render never replaces a newer one. New tag index entries are written before
    /// the page names their digest ([`crate::engine::index`]).
    pub(crate) async fn write_page(&self, page_key: &str, mut prepared: PreparedPage, previous: Option<&PageMeta>) -> bool {
        let page_id = crate::store::layout::page_id_of(&self.config.cache_version, page_key);
        let digest = prepared.page.meta.tags_digest.clone();
        let mut index: Option<IndexStep> = None;
        let mut attempt = 0;
        loop {
            let current = self.carry_invalidation(page_key, &mut prepared.page.meta).await;
            if let Some(newer) = current.as_ref().filter(|c| c.meta.rendered_at > prepared.page.meta.rendered_at) {
                self.log_event(
                    Level::Info,
                    "store_superseded",
                    page_key,
                    &format!("not storing: the stored page was rendered {} ms later", newer.meta.rendered_at - prepared.page.meta.rendered_at),
                );
                return true;
            }
            let step = match (&index, &page_id) {
                (Some(step), _) => step,
                (None, Some(id)) => {
                    let previous = current.as_ref().map(|c| &c.meta).or(previous);
                    index.insert(self.add_to_tag_index(id, &prepared.tags, digest.as_deref(), previous).await)
                }
                (None, None) => index.insert(IndexStep::Unchanged),
            };
            prepared.page.meta.tags_digest = match step {
                IndexStep::Failed => Some(INDEX_INCOMPLETE.to_string()),
                _ => digest.clone(),
            };
            let Ok(metadata) = prepared.page.meta.encode() else {
                return false; // cannot happen: the same metadata fitted before, plus at most two small fields
            };
            let opts = PutOptions {
                metadata: Some(metadata),
                expiration_ttl: prepared.page.meta.expiration_ttl_s(self.clock.now_ms()),
            };
            match self.store.put(page_key, prepared.page.body.clone(), opts).await {
                Err(StoreError::RateLimited) if attempt < WRITE_RETRIES => {
                    attempt += 1;
                    self.clock.sleep(retry_backoff_ms(attempt)).await;
                    continue;
                }
                result => break self.after_page_write(page_key, &prepared, page_id.as_deref(), index.as_ref(), result).await,
            }
        }
    }

    async fn after_page_write(&self, page_key: &str, prepared: &PreparedPage, page_id: Option<&str>, index: Option<&IndexStep>, result: Result<(), StoreError>) -> bool {
        match result {
            Ok(()) => {
                if let (Some(id), Some(IndexStep::Added(old))) = (page_id, index) {
                    self.remove_from_tag_index(id, &prepared.tags, old).await;
                }
                self.log_event(
                    Level::Info,
                    "stored",
                    page_key,
                    &format!(
                        "status {}, {} bytes, revalidate {}s",
                        prepared.page.meta.status,
                        prepared.page.body.len(),
                        prepared.page.meta.revalidate_s
                    ),
                );
                true
            }
            Err(e) => {
                self.log_event(Level::Warn, "store_failed", page_key, &format!("{e}; the previous copy (if any) stays"));
                false
            }
        }
    }

    /// Reads the page as stored now, just before overwriting it. If an invalidation marked it
    /// after the render we are about to write *started*, the new page inherits that mark: it
    /// was rendered from content older than the invalidation, so it must not be served as
    /// fresh. (Closes the race in this location; the re-check pass closes it across locations.)
    /// Returns the stored page, whose metadata also tells the tag index what the page had
    /// before, and whose body a 304 refresh re-stores (the visitor's copy may be a stream).
    pub(crate) async fn carry_invalidation(&self, page_key: &str, meta: &mut PageMeta) -> Option<StoredPage> {
        let current = match self.store.get(page_key).await {
            Ok(Some(v)) => StoredPage {
                meta: PageMeta::decode(v.metadata.as_deref()).ok()?,
                body: v.value,
            },
            Ok(None) => return None,
            Err(e) => {
                self.log_event(Level::Warn, "page_reread_failed", page_key, &format!("re-reading before writing failed: {e}"));
                return None;
            }
        };
        if let Some(at) = current.meta.invalidated_at {
            if at > meta.rendered_at {
                meta.invalidated_at = Some(at);
                meta.expired = current.meta.expired;
            }
        }
        Some(current)
    }

    /// A KV write that waits and retries when KV answers 429 (a key written in the last second).
    pub(crate) async fn put_with_retry(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError> {
        self.retry_rate_limited(|| self.store.put(key, value.clone(), opts.clone())).await
    }

    /// A KV delete, retried like [`Engine::put_with_retry`] (deletes are writes for KV's limit).
    pub(crate) async fn delete_with_retry(&self, key: &str) -> Result<(), StoreError> {
        self.retry_rate_limited(|| self.store.delete(key)).await
    }

    /// Runs a KV write, and again after 1 s, 2 s and 4 s while KV answers 429 (for writes that
    /// do not depend on what is stored: index entries, leases; a page write re-reads instead).
    async fn retry_rate_limited<F, Fut>(&self, mut write: F) -> Result<(), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match write().await {
                Err(StoreError::RateLimited) if attempt < WRITE_RETRIES => {
                    attempt += 1;
                    self.clock.sleep(retry_backoff_ms(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_digest_ignores_order_and_distinguishes_sets() {
        let a = tags_digest(&["x".into(), "y".into()]);
        assert_eq!(a, tags_digest(&["y".into(), "x".into()]));
        assert_ne!(a, tags_digest(&["x".into()]));
        assert_ne!(tags_digest(&["ab".into()]), tags_digest(&["a".into(), "b".into()]));
        assert_eq!(tags_digest(&[]), None);
    }

    #[test]
    fn the_backoff_adds_up_to_its_stated_total() {
        let total: u64 = (1..=WRITE_RETRIES).map(retry_backoff_ms).sum();
        assert_eq!(total, WRITE_RETRY_BACKOFF_MS);
    }
}

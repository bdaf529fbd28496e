//! Turning an origin response into a stored page, and writing it within KV's limits.

use super::Engine;
use crate::runtime::clock::Millis;
use crate::rules::conditional::etag_for_body;
use crate::http::Response;
use crate::rules::key::hex;
use crate::runtime::log::Level;
use crate::rules::meta::{usable_validator, PageMeta, StoredPage, META_VERSION};
use crate::runtime::origin::Origin;
use crate::rules::policy::{self, ResponseDecision};
use crate::rules::state::BypassReason;
use crate::store::{KvStore, PutOptions, StoreError};
use crate::http::Body;
use sha2::{Digest, Sha256};

/// Retries of a write that KV rejected with 429 (one write per second per key).
pub const WRITE_RETRIES: u32 = 3;

/// A page ready to be written: its stored form (metadata checked against KV's limit) and tags.
#[derive(Clone, Debug)]
pub struct PreparedPage {
    /// The page as it will be read back.
    pub page: StoredPage,
    /// The page's tags.
    pub tags: Vec<String>,
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
        let (mut revalidate_s, mut tags) = match policy::classify_response(resp.status, &resp.headers, resp.body.len(), &self.config) {
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
                self.log(Level::Warn, &format!("ignoring route tag {tag:?}: not a valid tag"));
            } else if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let origin_etag = usable_validator(resp.headers.get("etag"));
        let last_modified = usable_validator(resp.headers.get("last-modified"));
        let mut meta = PageMeta {
            version: META_VERSION,
            rendered_at: started,
            revalidate_s,
            status: resp.status,
            etag: origin_etag.clone().unwrap_or_else(|| etag_for_body(&resp.body)),
            origin_etag,
            last_modified,
            invalidated_at: None,
            expired: false,
            stale_if_error_s: crate::rules::freshness::stale_if_error_seconds(&resp.headers),
            tags_digest: tags_digest(&tags),
            tier_tags: if self.config.workers_cache { crate::tier::tags::mapped_tags(&tags) } else { None },
            headers: policy::headers_to_store(&resp.headers).into_pairs(),
        };
        // Fails (page not stored) when the headers cannot fit in KV metadata.
        meta.encode()?;
        Ok(PreparedPage {
            page: StoredPage {
                meta,
                body: resp.body.clone(),
            },
            tags,
        })
    }

    /// Writes a prepared page. Never fails the caller: errors are logged, and the previously
    /// stored page (if any) stays in place.
    pub(crate) async fn write_page(&self, page_key: &str, mut prepared: PreparedPage, previous: Option<&PageMeta>) -> bool {
        let current = self.carry_invalidation(page_key, &mut prepared.page.meta).await;
        let previous = current.as_ref().map(|c| &c.meta).or(previous);
        let Ok(metadata) = prepared.page.meta.encode() else {
            return false; // cannot happen: the same metadata fitted before, plus at most two small fields
        };
        let opts = PutOptions {
            metadata: Some(metadata),
            expiration_ttl: None,
        };
        match self.put_with_retry(page_key, prepared.page.body.clone(), opts).await {
            Ok(()) => {
                if let Some(page_id) = crate::store::layout::page_id_of(&self.config.cache_version, page_key) {
                    let digest = prepared.page.meta.tags_digest.as_deref();
                    self.update_tag_index(&page_id, &prepared.tags, digest, previous).await;
                }
                self.log(
                    Level::Info,
                    &format!(
                        "stored {page_key} (status {}, {} bytes, revalidate {}s)",
                        prepared.page.meta.status,
                        prepared.page.body.len(),
                        prepared.page.meta.revalidate_s
                    ),
                );
                true
            }
            Err(e) => {
                self.log(Level::Warn, &format!("storing {page_key} failed: {e}; the previous copy (if any) stays"));
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
                self.log(Level::Warn, &format!("re-reading {page_key} before writing failed: {e}"));
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

    /// Runs a KV write, and again after 1 s, 2 s and 4 s while KV answers 429.
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
                    self.clock.sleep(1000 << (attempt - 1)).await;
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
}

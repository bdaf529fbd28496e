//! Keeping the tag-to-pages index in step with stored pages.
//!
//! Order of a page write whose tags changed: (1) a member key for each added tag, and the
//! page's tag list as the union of old and new tags; (2) the page itself, whose metadata names
//! the digest of its tags only when step 1 succeeded (otherwise [`INDEX_INCOMPLETE`], so the
//! next write does step 1 again); (3) members of removed tags deleted, the list set to the new
//! tags. A failure or a `waitUntil` cut-off at any point leaves the index with more members
//! than needed (a page invalidated once too often), never fewer: a page is never left out of
//! a tag it carries.
//!
//! Cost (KV operations) when a page is written:
//! - tags unchanged (same digest in the previous metadata): **0** — the common regeneration;
//! - first store of a page with tags: 1 read of its tag list + 1 write per tag + 1 write of the list;
//! - tags changed: 1 read + 1 write per added tag + 1 delete per removed tag + 1 or 2 writes of the list.
//!
//! 404/410 pages carry no tags ([`crate::engine::write`]): a flood of missing paths adds nothing
//! here. A page removed because the origin no longer allows caching it takes its members with
//! it ([`Engine::remove_page`]).

use super::Engine;
use crate::http::Body;
use crate::store::layout;
use crate::runtime::log::Level;
use crate::rules::meta::PageMeta;
use crate::runtime::origin::Origin;
use crate::store::{KvStore, PutOptions, StoreError};

/// The tag digest written in a page's metadata when its index entries could not all be written:
/// it matches no real digest, so the next write of the page writes them again.
pub const INDEX_INCOMPLETE: &str = "-";

/// What step 1 of an index update found and did.
pub(crate) enum IndexStep {
    /// Nothing to do: the previous page had the same tags, indexed.
    Unchanged,
    /// Members of every tag are written; these were the page's tags before.
    Added(Vec<String>),
    /// Some member could not be written.
    Failed,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Step 1, before the page is written: members for every tag of `tags` not yet indexed.
    /// `previous` is the metadata the page had before (if it was read), used to skip all work
    /// when the tag set did not change.
    pub(crate) async fn add_to_tag_index(&self, page_id: &str, tags: &[String], new_digest: Option<&str>, previous: Option<&PageMeta>) -> IndexStep {
        if let Some(prev) = previous {
            if prev.tags_digest.as_deref() == new_digest {
                return IndexStep::Unchanged;
            }
        }
        match self.write_members(page_id, tags, previous).await {
            Ok(old) => IndexStep::Added(old),
            Err(e) => {
                self.log_event(Level::Warn, "tag_index_write_failed", page_id, &format!("{e}; the next write of the page tries again"));
                IndexStep::Failed
            }
        }
    }

    async fn write_members(&self, page_id: &str, tags: &[String], previous: Option<&PageMeta>) -> Result<Vec<String>, StoreError> {
        let version = &self.config.cache_version;
        let list_key = layout::page_tags_key(version, page_id);
        // Only read the old list when there can be one: a previous page with tags, or no
        // previous page read at all (a MISS may follow a page this location cannot see yet).
        let old: Vec<String> = if previous.is_none_or(|p| p.tags_digest.is_some()) {
            match self.store.get(&list_key).await? {
                Some(v) => serde_json::from_slice(&v.value).unwrap_or_default(),
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let added: Vec<&String> = tags.iter().filter(|t| !old.contains(t)).collect();
        for tag in &added {
            let member = layout::tag_member_key(version, tag, page_id);
            self.put_with_retry(&member, Body::new(), PutOptions::default()).await?;
        }
        if !added.is_empty() {
            // Every member that exists is listed, so that a later change can remove it.
            let union: Vec<&String> = old.iter().chain(added.iter().copied()).collect();
            let json = serde_json::to_vec(&union).unwrap_or_default();
            self.put_with_retry(&list_key, Body::from(json), PutOptions::default()).await?;
        }
        Ok(old)
    }

    /// Step 3, after the page was written: members of tags the page no longer has are removed.
    pub(crate) async fn remove_from_tag_index(&self, page_id: &str, tags: &[String], old: &[String]) {
        if let Err(e) = self.delete_members(page_id, tags, old).await {
            self.log_event(Level::Warn, "tag_index_cleanup_failed", page_id, &format!("removing old tag index entries failed: {e} (the page may be invalidated by a tag it lost)"));
        }
    }

    async fn delete_members(&self, page_id: &str, tags: &[String], old: &[String]) -> Result<(), StoreError> {
        let version = &self.config.cache_version;
        let removed: Vec<&String> = old.iter().filter(|t| !tags.contains(t)).collect();
        if removed.is_empty() {
            return Ok(());
        }
        for tag in &removed {
            self.delete_with_retry(&layout::tag_member_key(version, tag, page_id)).await?;
        }
        let list_key = layout::page_tags_key(version, page_id);
        if tags.is_empty() {
            self.delete_with_retry(&list_key).await
        } else {
            let json = serde_json::to_vec(tags).unwrap_or_default();
            self.put_with_retry(&list_key, Body::from(json), PutOptions::default()).await
        }
    }

    /// Removes a stored page and then its tag index entries (the origin no longer allows
    /// caching it, or says it is gone). Returns whether the page was removed. Errors are
    /// logged; an index entry left behind only makes a tag invalidation find a missing page.
    pub(crate) async fn remove_page(&self, page_key: &str) -> bool {
        if let Err(e) = self.delete_with_retry(page_key).await {
            self.log_event(Level::Warn, "page_remove_failed", page_key, &e.to_string());
            return false;
        }
        let Some(page_id) = layout::page_id_of(&self.config.cache_version, page_key) else {
            return true;
        };
        let old = match self.store.get(&layout::page_tags_key(&self.config.cache_version, &page_id)).await {
            Ok(Some(v)) => serde_json::from_slice::<Vec<String>>(&v.value).unwrap_or_default(),
            Ok(None) => return true,
            Err(e) => {
                self.log_event(Level::Warn, "page_tags_read_failed", page_key, &format!("reading the tags of the removed page failed: {e}"));
                return true;
            }
        };
        self.remove_from_tag_index(&page_id, &[], &old).await;
        true
    }
}

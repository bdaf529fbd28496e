//! Keeping the tag-to-pages index in step with stored pages.
//!
//! Cost (KV operations) when a page is written:
//! - tags unchanged (same digest in the previous metadata): **0** — the common regeneration;
//! - first store of a page with tags: 1 read of its tag list + 1 write per tag + 1 write of the list;
//! - tags changed: 1 read + 1 write per added tag + 1 delete per removed tag + 1 write of the list.

use super::Engine;
use crate::http::Body;
use crate::store::layout;
use crate::runtime::log::Level;
use crate::rules::meta::PageMeta;
use crate::runtime::origin::Origin;
use crate::store::{KvStore, PutOptions, StoreError};

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Brings the index in line with `tags` for `page_id`, after its page was written.
    /// `previous` is the metadata the page had before (if it was read), used to skip all work
    /// when the tag set did not change.
    pub(crate) async fn update_tag_index(&self, page_id: &str, tags: &[String], new_digest: Option<&str>, previous: Option<&PageMeta>) {
        if let Some(prev) = previous {
            if prev.tags_digest.as_deref() == new_digest {
                return;
            }
        }
        if let Err(e) = self.rewrite_tag_index(page_id, tags, previous).await {
            self.log(Level::Warn, &format!("updating the tag index of {page_id} failed: {e}"));
        }
    }

    async fn rewrite_tag_index(&self, page_id: &str, tags: &[String], previous: Option<&PageMeta>) -> Result<(), StoreError> {
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
        for tag in tags.iter().filter(|t| !old.contains(t)) {
            let member = layout::tag_member_key(version, tag, page_id);
            self.put_with_retry(&member, Body::new(), PutOptions::default()).await?;
        }
        for tag in old.iter().filter(|t| !tags.contains(t)) {
            self.delete_with_retry(&layout::tag_member_key(version, tag, page_id)).await?;
        }
        if tags.is_empty() {
            if !old.is_empty() {
                self.delete_with_retry(&list_key).await?;
            }
        } else if old.len() != tags.len() || tags.iter().any(|t| !old.contains(t)) {
            let json = serde_json::to_vec(tags).unwrap_or_default();
            self.put_with_retry(&list_key, Body::from(json), PutOptions::default()).await?;
        }
        Ok(())
    }
}

//! Names of everything edge-isr keeps in KV. One place, so the layout can be read at a glance.
//!
//! | key | value | metadata |
//! |---|---|---|
//! | `p/{version}/{page id}` | page body | [`crate::meta::PageMeta`] |
//! | `l/{version}/{page id}` | regeneration lease / back-off ([`crate::lease::Lease`] JSON) | — |
//!
//! `{version}` is `CACHE_VERSION`, so changing it starts from an empty cache. `{page id}` is
//! `host/path?query` ([`crate::key::CacheKey::page_id`]), readable so that `list` by prefix
//! finds every page under a path.

/// KV key of a page body and its metadata.
pub fn page_key(version: &str, page_id: &str) -> String {
    format!("p/{version}/{page_id}")
}

/// Prefix of every page key of a cache version (for listing pages under a path).
pub fn page_prefix(version: &str, id_prefix: &str) -> String {
    format!("p/{version}/{id_prefix}")
}

/// The page id inside a page key.
pub fn page_id_of(version: &str, page_key: &str) -> Option<String> {
    page_key.strip_prefix(&format!("p/{version}/")).map(String::from)
}

/// KV key of a page's regeneration lease.
pub fn lease_key(version: &str, page_id: &str) -> String {
    format!("l/{version}/{page_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::MAX_PAGE_ID_BYTES;
    use crate::store::limits::MAX_KEY_BYTES;

    #[test]
    fn every_key_fits_kv_with_the_longest_version_and_id() {
        let version = "v".repeat(32);
        let id = "i".repeat(MAX_PAGE_ID_BYTES);
        assert!(page_key(&version, &id).len() <= MAX_KEY_BYTES);
        assert!(lease_key(&version, &id).len() <= MAX_KEY_BYTES);
        assert_eq!(page_id_of(&version, &page_key(&version, &id)).as_deref(), Some(id.as_str()));
    }
}

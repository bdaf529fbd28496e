//! Names of everything edge-isr keeps in KV. One place, so the layout can be read at a glance.
//!
//! | key | value | metadata |
//! |---|---|---|
//! | `p/{version}/{page id}` | page body | [`crate::rules::meta::PageMeta`] |
//! | `l/{version}/{page id}` | regeneration lease / back-off ([`crate::coordination::lease::Lease`] JSON) | — |
//! | `t/{version}/{tag}/{page id}` | empty: "page carries tag" (the tag index) | — |
//! | `g/{version}/{page id}` | the page's tags, JSON array (to remove members when tags change) | — |
//! | `s/{version}/{route pattern}` | a route's static parameters read from the CMS, with when | — |
//! | `v/{version}` | empty: "this cache version is in use" | when a cron run last saw it ([`crate::engine::cleanup`]) |
//!
//! The tag index is one key per (tag, page) pair, read back with `list({prefix})`: no shared
//! value is ever read-modified-written, so concurrent writers cannot lose members and no key is
//! written more than once per change (KV allows one write per second per key). `{tag}` is
//! escaped (`%` and `/`) so that no tag's prefix can match another tag's members, and shortened
//! with a hash suffix past [`MAX_TAG_COMPONENT_BYTES`].
//!
//! `{version}` is `CACHE_VERSION`, so changing it starts from an empty cache. `{page id}` is
//! `host/path?query` ([`crate::rules::key::CacheKey::page_id`]), readable so that `list` by prefix
//! finds every page under a path.

use crate::rules::key::shorten;

/// Longest tag inside a KV key; longer tags keep their start and get a hash suffix.
/// With a 32-byte version and a 400-byte page id, member keys stay within KV's 512 bytes.
pub const MAX_TAG_COMPONENT_BYTES: usize = 72;

/// A tag as it appears inside a key: `%` and `/` escaped, shortened if long.
pub fn tag_component(tag: &str) -> String {
    shorten(tag.replace('%', "%25").replace('/', "%2F"), MAX_TAG_COMPONENT_BYTES)
}

/// Prefix of every member key of `tag`.
pub fn tag_prefix(version: &str, tag: &str) -> String {
    format!("t/{version}/{}/", tag_component(tag))
}

/// KV key saying "page `page_id` carries `tag`".
pub fn tag_member_key(version: &str, tag: &str, page_id: &str) -> String {
    format!("{}{page_id}", tag_prefix(version, tag))
}

/// KV key of the list of a page's tags.
pub fn page_tags_key(version: &str, page_id: &str) -> String {
    format!("g/{version}/{page_id}")
}

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

/// KV key of a route's cached static-parameter listing.
pub fn listing_key(version: &str, pattern: &str) -> String {
    shorten(format!("s/{version}/{pattern}"), 400)
}

/// Prefix of the keys recording cache versions in use.
pub const VERSION_PREFIX: &str = "v/";

/// KV key recording that cache version `version` is in use.
pub fn version_key(version: &str) -> String {
    format!("{VERSION_PREFIX}{version}")
}

/// Prefixes covering every key of cache version `version` (pages, leases, tag index, tag
/// lists, listings), for deleting a retired version.
pub fn version_prefixes(version: &str) -> Vec<String> {
    ["p", "l", "t", "g", "s"].iter().map(|kind| format!("{kind}/{version}/")).collect()
}

/// KV key of a page's regeneration lease.
pub fn lease_key(version: &str, page_id: &str) -> String {
    format!("l/{version}/{page_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::key::MAX_PAGE_ID_BYTES;
    use crate::store::limits::MAX_KEY_BYTES;

    #[test]
    fn every_key_fits_kv_with_the_longest_version_and_id() {
        let version = "v".repeat(32);
        let id = "i".repeat(MAX_PAGE_ID_BYTES);
        assert!(page_key(&version, &id).len() <= MAX_KEY_BYTES);
        assert!(lease_key(&version, &id).len() <= MAX_KEY_BYTES);
        assert!(page_tags_key(&version, &id).len() <= MAX_KEY_BYTES);
        let longest_tag = "/".repeat(crate::rules::policy::MAX_TAG_CHARS);
        assert!(tag_member_key(&version, &longest_tag, &id).len() <= MAX_KEY_BYTES);
        let multibyte_tag = "é".repeat(crate::rules::policy::MAX_TAG_CHARS);
        assert!(tag_member_key(&version, &multibyte_tag, &id).len() <= MAX_KEY_BYTES);
        assert_eq!(page_id_of(&version, &page_key(&version, &id)).as_deref(), Some(id.as_str()));
    }

    #[test]
    fn a_versions_prefixes_cover_every_key_of_it_and_none_of_another() {
        let (id, tag) = ("h/p", "t");
        let keys = [page_key("1", id), lease_key("1", id), tag_member_key("1", tag, id), page_tags_key("1", id), listing_key("1", "/blog/:slug")];
        for key in &keys {
            assert_eq!(version_prefixes("1").iter().filter(|p| key.starts_with(p.as_str())).count(), 1, "{key}");
            assert!(version_prefixes("11").iter().all(|p| !key.starts_with(p.as_str())), "{key}");
        }
        assert!(!version_key("1").starts_with("p/"));
    }

    #[test]
    fn no_tag_prefix_matches_another_tags_members() {
        let a = tag_prefix("1", "a");
        assert!(!tag_member_key("1", "a/b", "x/p").starts_with(&a));
        assert!(!tag_member_key("1", "a%2Fb", "x/p").starts_with(&tag_prefix("1", "a/b")));
        assert!(tag_member_key("1", "a", "x/p").starts_with(&a));
        let long_a = "t".repeat(300);
        let long_b = format!("{}u", "t".repeat(299));
        assert_ne!(tag_prefix("1", &long_a), tag_prefix("1", &long_b));
    }
}

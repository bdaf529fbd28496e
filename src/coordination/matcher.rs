//! Whether a logged invalidation applies to a stored page, decided on a HIT from the page's
//! metadata alone (no extra read).
//!
//! An entry applies when it names the page (one of its tags, its path on any host, or a prefix
//! of it), took effect after the page's render started, and the page does not already carry
//! that mark (or a later one). A page's tags are known from short hashes in its metadata
//! ([`crate::rules::meta::PageMeta::tag_hashes`]); a page whose hashes did not fit (or that was
//! stored before they existed) matches every tag entry: a needless regeneration at worst,
//! never a missed invalidation.

use crate::coordination::log::LogEntry;
use crate::rules::invalidation::InvalidationMode;
use crate::runtime::clock::Millis;
use sha2::{Digest, Sha256};

/// Characters of one tag hash (4 bytes of SHA-256 in hex): a collision costs one needless
/// regeneration, so 32 bits are plenty.
pub const TAG_HASH_CHARS: usize = 8;

/// The short hash of a tag, as stored in page metadata and log entries.
pub fn tag_hash(tag: &str) -> String {
    crate::rules::key::hex(&Sha256::digest(tag.as_bytes())[..TAG_HASH_CHARS / 2])
}

/// The tag hashes of a page, concatenated (sorted, without duplicates): 8 characters per tag.
pub fn tag_hashes(tags: &[String]) -> String {
    let mut hashes: Vec<String> = tags.iter().map(|t| tag_hash(t)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes.concat()
}

/// What the matcher needs to know about a stored page.
#[derive(Clone, Copy, Debug)]
pub struct PageFacts<'a> {
    /// The page's path and query (`/a?b=1`), without its host.
    pub path: &'a str,
    /// Its concatenated tag hashes; `None`: unknown (match every tag entry).
    pub tag_hashes: Option<&'a str>,
    /// When its render started (ms).
    pub rendered_at: Millis,
    /// When an invalidation marked it (ms), if one did.
    pub invalidated_at: Option<Millis>,
    /// Whether that mark was an `expire`.
    pub expired: bool,
}

impl PageFacts<'_> {
    fn has_tag_hash(&self, hash: &str) -> bool {
        match self.tag_hashes {
            None => true,
            Some(all) => all.as_bytes().chunks(TAG_HASH_CHARS).any(|h| h == hash.as_bytes()),
        }
    }

    fn already_marked(&self, entry: &LogEntry) -> bool {
        self.invalidated_at.is_some_and(|t| t >= entry.at) && (self.expired || entry.mode == InvalidationMode::Stale)
    }
}

/// Whether `entry` applies to `page`.
pub fn applies(entry: &LogEntry, page: &PageFacts) -> bool {
    if entry.at <= page.rendered_at || page.already_marked(entry) {
        return false;
    }
    entry.paths.iter().any(|p| p == page.path)
        || entry.prefixes.iter().any(|p| page.path.starts_with(p.as_str()))
        || entry.tags.iter().any(|h| page.has_tag_hash(h))
}

/// The strongest mode among the entries that apply to `page` (`expire` over `stale`), with the
/// latest time among them (the page version an invalidation mark would have made), if any apply.
pub fn verdict<'e>(entries: impl IntoIterator<Item = &'e LogEntry>, page: &PageFacts) -> Option<(InvalidationMode, Millis)> {
    let mut found: Option<(InvalidationMode, Millis)> = None;
    for entry in entries.into_iter().filter(|e| applies(e, page)) {
        let (mode, at) = found.unwrap_or((InvalidationMode::Stale, 0));
        let mode = if entry.mode == InvalidationMode::Expire { InvalidationMode::Expire } else { mode };
        found = Some((mode, at.max(entry.at)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Millis) -> LogEntry {
        LogEntry {
            seq: 1,
            at,
            tags: vec![],
            paths: vec![],
            prefixes: vec![],
            mode: InvalidationMode::Stale,
        }
    }

    fn page<'a>(path: &'a str, hashes: Option<&'a str>) -> PageFacts<'a> {
        PageFacts {
            path,
            tag_hashes: hashes,
            rendered_at: 1_000,
            invalidated_at: None,
            expired: false,
        }
    }

    #[test]
    fn tag_hashes_are_short_sorted_and_unique() {
        assert_eq!(tag_hash("posts").len(), TAG_HASH_CHARS);
        assert_ne!(tag_hash("posts"), tag_hash("post"));
        let both = tag_hashes(&["b".into(), "a".into(), "a".into()]);
        assert_eq!(both.len(), 2 * TAG_HASH_CHARS);
        assert_eq!(both, tag_hashes(&["a".into(), "b".into()]));
        assert_eq!(tag_hashes(&[]), "");
    }

    #[test]
    fn a_tag_entry_applies_to_pages_with_that_tag_or_unknown_tags() {
        let hashes = tag_hashes(&["posts".into(), "post-1".into()]);
        let mut e = entry(2_000);
        e.tags = vec![tag_hash("post-1")];
        assert!(applies(&e, &page("/a", Some(&hashes))));
        assert!(!applies(&e, &page("/a", Some(&tag_hashes(&["post-2".into()])))));
        assert!(!applies(&e, &page("/a", Some(""))), "a page without tags");
        assert!(applies(&e, &page("/a", None)), "unknown tags: conservative");
    }

    #[test]
    fn path_entries_match_exactly_and_prefixes_by_start() {
        let mut e = entry(2_000);
        e.paths = vec!["/a?x=1".into()];
        assert!(applies(&e, &page("/a?x=1", Some(""))));
        assert!(!applies(&e, &page("/a", Some(""))));
        assert!(!applies(&e, &page("/a?x=10", Some(""))));
        let mut e = entry(2_000);
        e.prefixes = vec!["/blog/".into()];
        assert!(applies(&e, &page("/blog/x", Some(""))));
        assert!(!applies(&e, &page("/blog", Some(""))));
        assert!(!applies(&e, &page("/about", None)), "unknown tags do not widen path entries");
    }

    #[test]
    fn only_pages_rendered_before_the_entry_and_not_yet_marked_are_affected() {
        let mut e = entry(1_000);
        e.paths = vec!["/a".into()];
        assert!(!applies(&e, &page("/a", Some(""))), "rendered when the entry took effect: newer content");
        e.at = 1_001;
        assert!(applies(&e, &page("/a", Some(""))));
        let mut marked = page("/a", Some(""));
        marked.invalidated_at = Some(1_001);
        assert!(!applies(&e, &marked), "already carries the mark");
        e.mode = InvalidationMode::Expire;
        assert!(applies(&e, &marked), "a stale mark does not satisfy an expire");
        marked.expired = true;
        assert!(!applies(&e, &marked));
        marked.invalidated_at = Some(1_000);
        assert!(applies(&e, &marked), "an older mark does not cover a newer entry");
    }

    #[test]
    fn the_verdict_is_the_strongest_mode() {
        let mut stale = entry(2_000);
        stale.paths = vec!["/a".into()];
        let mut expire = stale.clone();
        expire.mode = InvalidationMode::Expire;
        let p = page("/a", Some(""));
        assert_eq!(verdict([&stale], &p), Some((InvalidationMode::Stale, 2_000)));
        let mut later = stale.clone();
        later.at = 3_000;
        assert_eq!(verdict([&expire, &later], &p), Some((InvalidationMode::Expire, 3_000)));
        assert_eq!(verdict([&entry(2_000)], &p), None);
    }
}

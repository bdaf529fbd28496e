//! edge-isr's tags and paths as Workers Cache `Cache-Tag` values, computed the same way when a
//! page is answered and when it is purged.
//!
//! Workers Cache tags are printable ASCII, case-insensitive, at most 1024 characters, at most
//! 1000 per response. edge-isr's tags are any text without control characters (up to 256
//! characters) and are case-sensitive. So a tag is sent as it is only when Workers Cache would
//! read it exactly as edge-isr does: printable ASCII without spaces or commas (the header's
//! separator), no upper-case letter (otherwise `Posts` and `posts`, two tags for edge-isr, would
//! be one for the tier), and not starting with edge-isr's own prefix [`RESERVED_PREFIX`]. Every
//! other tag is sent hashed (`isr-h-` and 16 hex digits of its SHA-256). The rule looks at one tag
//! at a time, so the purge side needs no list of every tag ever served.
//!
//! Each page also carries a tag for its path (`isr-p-` and 16 hex digits of the SHA-256 of its
//! normalised `path?query`, without the host: an invalidation of a path reaches every host of
//! `CACHE_HOSTS`), so path invalidations purge exactly that page. Prefix invalidations become a
//! `pathPrefixes` purge instead (see [`crate::tier::purge`]).

use crate::rules::key::hex;
use sha2::{Digest, Sha256};

/// Prefix of every tag edge-isr makes itself; a user tag starting with it is sent hashed.
pub const RESERVED_PREFIX: &str = "isr-";

/// Longest tag Workers Cache accepts.
pub const MAX_TIER_TAG_CHARS: usize = 1024;

/// Most tags Workers Cache reads from one response.
pub const MAX_TAGS_PER_RESPONSE: usize = 1000;

/// Longest `Cache-Tag` header edge-isr sends (Cloudflare's documented header limit for cache
/// tags is 16 KB); a page whose tags do not fit is not given to the tier (see
/// [`page_cache_tags`]).
pub const MAX_CACHE_TAG_HEADER_BYTES: usize = 16 * 1024;

/// Whether Workers Cache reads `tag` exactly as edge-isr means it (see the module documentation).
pub fn sent_as_is(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TIER_TAG_CHARS
        && !tag.starts_with(RESERVED_PREFIX)
        && tag.bytes().all(|b| b.is_ascii_graphic() && b != b',' && !b.is_ascii_uppercase())
}

/// The `Cache-Tag` value for an edge-isr tag.
pub fn tier_tag(tag: &str) -> String {
    if sent_as_is(tag) {
        tag.to_string()
    } else {
        format!("{RESERVED_PREFIX}h-{}", short_hash(tag))
    }
}

/// The `Cache-Tag` value naming one page by its normalised `path?query` (any host).
pub fn path_tag(path_and_query: &str) -> String {
    format!("{RESERVED_PREFIX}p-{}", short_hash(path_and_query))
}

fn short_hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..8])
}

/// A page's tags mapped with [`tier_tag`], without duplicates, comma-joined: what is stored in
/// its metadata when the mode is on (the path tag is added when it is answered). `None` when
/// they do not fit one response ([`page_cache_tags`]): such a page is never given to the tier.
pub fn mapped_tags(tags: &[String]) -> Option<String> {
    let header = page_cache_tags("/", tags.iter().map(String::as_str)).ok()?;
    Some(header.split_once(',').map(|(_, rest)| rest.to_string()).unwrap_or_default())
}

/// The `Cache-Tag` header of a page answered at `path_and_query` whose stored tags are `mapped`
/// ([`mapped_tags`]).
pub fn answer_cache_tags(path_and_query: &str, mapped: &str) -> String {
    if mapped.is_empty() {
        path_tag(path_and_query)
    } else {
        format!("{},{mapped}", path_tag(path_and_query))
    }
}

/// A normalised key's `path?query` (what a page's path tag names: every host alike).
pub fn key_path(key: &crate::rules::key::CacheKey) -> String {
    if key.query.is_empty() {
        key.path.clone()
    } else {
        format!("{}?{}", key.path, key.query)
    }
}

/// Why a page cannot be given to the tier with its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagOverflow {
    /// More tags than Workers Cache reads from one response.
    TooMany(usize),
    /// The header would be longer than [`MAX_CACHE_TAG_HEADER_BYTES`].
    TooLong(usize),
}

/// The `Cache-Tag` header of a page: its path tag first, then its tags mapped with
/// [`tier_tag`], without duplicates. A page whose tags do not all fit must not be kept by the
/// tier (a tag left out could never purge it), hence the error.
pub fn page_cache_tags<'a>(path_and_query: &str, tags: impl IntoIterator<Item = &'a str>) -> Result<String, TagOverflow> {
    let mut out: Vec<String> = vec![path_tag(path_and_query)];
    for tag in tags {
        let t = tier_tag(tag);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > MAX_TAGS_PER_RESPONSE {
        return Err(TagOverflow::TooMany(out.len()));
    }
    let header = out.join(",");
    if header.len() > MAX_CACHE_TAG_HEADER_BYTES {
        return Err(TagOverflow::TooLong(header.len()));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conforming_lower_case_tags_are_sent_as_they_are() {
        for tag in ["posts", "post-hello-world", "a:b/c_d.e~f", "x".repeat(256).as_str()] {
            assert_eq!(tier_tag(tag), tag);
        }
    }

    #[test]
    fn tags_the_tier_would_read_differently_are_hashed() {
        for tag in ["Posts", "POSTS", "with space", "a,b", "café", "tab\there", "isr-p-0011", "", &"y".repeat(1025)] {
            let t = tier_tag(tag);
            assert!(t.starts_with("isr-h-") && t.len() == 6 + 16, "{tag:?} -> {t}");
        }
    }

    #[test]
    fn tags_that_differ_only_by_case_never_meet_in_the_tier() {
        // The tier compares case-insensitively: compare what it would see.
        let seen: Vec<String> = ["posts", "Posts", "POSTS", "pOsts"].iter().map(|t| tier_tag(t).to_ascii_lowercase()).collect();
        for (i, a) in seen.iter().enumerate() {
            for b in &seen[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // And the same tag always maps the same way (purge side = answer side).
        assert_eq!(tier_tag("Posts"), tier_tag("Posts"));
    }

    #[test]
    fn every_tier_tag_conforms_to_cloudflare_rules() {
        for tag in ["posts", "Posts", "é", "a b", "isr-x"] {
            let t = tier_tag(tag);
            assert!(t.len() <= MAX_TIER_TAG_CHARS && t.bytes().all(|b| b.is_ascii_graphic() && b != b','), "{t}");
        }
        let p = path_tag("/café/?q=1");
        assert!(p.starts_with("isr-p-") && p.bytes().all(|b| b.is_ascii_graphic()));
        assert_ne!(path_tag("/a"), path_tag("/a?x=1"));
    }

    #[test]
    fn a_page_carries_its_path_tag_and_its_tags_once() {
        let h = page_cache_tags("/blog/x", ["posts", "post-x", "posts", "Posts"]).unwrap();
        let parts: Vec<&str> = h.split(',').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], path_tag("/blog/x"));
        assert_eq!(&parts[1..3], ["posts", "post-x"]);
        assert_eq!(parts[3], tier_tag("Posts"));
    }

    #[test]
    fn stored_tags_and_the_path_tag_make_the_answer_header() {
        let tags = vec!["posts".to_string(), "Posts".to_string(), "posts".to_string()];
        let mapped = mapped_tags(&tags).unwrap();
        assert_eq!(mapped, format!("posts,{}", tier_tag("Posts")));
        assert_eq!(answer_cache_tags("/a", &mapped), page_cache_tags("/a", tags.iter().map(String::as_str)).unwrap());
        assert_eq!(mapped_tags(&[]), Some(String::new()));
        assert_eq!(answer_cache_tags("/a", ""), path_tag("/a"));
        let many: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        assert_eq!(mapped_tags(&many), None);
    }

    #[test]
    fn too_many_or_too_long_tags_are_an_error_not_a_truncation() {
        let many: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        assert_eq!(page_cache_tags("/", many.iter().map(String::as_str)), Err(TagOverflow::TooMany(1001)));
        let long: Vec<String> = (0..20).map(|i| format!("{i}{}", "z".repeat(1000))).collect();
        assert!(matches!(page_cache_tags("/", long.iter().map(String::as_str)), Err(TagOverflow::TooLong(_))));
        let fits: Vec<String> = (0..999).map(|i| format!("t{i}")).collect();
        assert!(page_cache_tags("/", fits.iter().map(String::as_str)).is_ok());
    }
}

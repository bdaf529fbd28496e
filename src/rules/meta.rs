//! What is stored beside each page body in KV metadata (at most 1024 bytes).
//!
//! The body is the KV value untouched (so it can be streamed to visitors); everything needed to
//! answer a request — status, headers, validators, freshness — is in the metadata, so a HIT is
//! exactly one KV read. Field names are one or two letters to leave room for headers.

use crate::runtime::clock::Millis;
use crate::http::{Body, Headers};
use crate::rules::policy::DROPPABLE_HEADERS;
use crate::rules::state::BypassReason;
use crate::store::limits::MAX_METADATA_BYTES;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the metadata layout. Readers accept this version and every older one they know;
/// a page with an unknown version is treated as absent (and re-rendered), never misread.
pub const META_VERSION: u32 = 1;

/// Longest origin validator (`ETag`/`Last-Modified`) kept; longer ones are not used.
pub const MAX_VALIDATOR_BYTES: usize = 128;

/// A stored page's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    /// Layout version ([`META_VERSION`]).
    #[serde(rename = "v")]
    pub version: u32,
    /// When the origin render that produced this body *started* (ms). Used for `Age`,
    /// freshness, and to tell renders from before an invalidation from renders after it.
    #[serde(rename = "t")]
    pub rendered_at: Millis,
    /// Seconds after `rendered_at` when the page becomes stale.
    #[serde(rename = "r")]
    pub revalidate_s: u32,
    /// HTTP status to answer with.
    #[serde(rename = "s")]
    pub status: u16,
    /// Entity tag given to visitors (the origin's when it sent a usable one).
    #[serde(rename = "e")]
    pub etag: String,
    /// The origin's own `ETag`, sent back as `If-None-Match` when regenerating.
    #[serde(rename = "oe", default, skip_serializing_if = "Option::is_none")]
    pub origin_etag: Option<String>,
    /// The origin's `Last-Modified`, sent back as `If-Modified-Since` when regenerating.
    #[serde(rename = "lm", default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// When an on-demand invalidation marked this page stale (ms), if it did.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub invalidated_at: Option<Millis>,
    /// Whether that invalidation asked for a synchronous re-render (`mode: expire`).
    #[serde(rename = "x", default, skip_serializing_if = "is_false")]
    pub expired: bool,
    /// The origin's `stale-if-error` for this page (seconds), if it gave one.
    #[serde(rename = "se", default, skip_serializing_if = "Option::is_none")]
    pub stale_if_error_s: Option<u32>,
    /// Digest of the page's tag set, to tell when a regeneration changed the tags.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub tags_digest: Option<String>,
    /// The page's tags as Workers Cache tags, comma-joined
    /// ([`crate::tier::tags::mapped_tags`]), when `WORKERS_CACHE` is on. `None`: unknown (mode
    /// off when stored, or too many to fit): the tier is then told not to keep the page.
    #[serde(rename = "ct", default, skip_serializing_if = "Option::is_none")]
    pub tier_tags: Option<String>,
    /// Short hashes of the page's tags, concatenated
    /// ([`crate::coordination::matcher::tag_hashes`]), so that a HIT can be checked against the
    /// coordinator's invalidation log without another read. `None`: unknown (stored before this
    /// field existed, or too many tags to fit the metadata): every tag entry applies to it.
    #[serde(rename = "th", default, skip_serializing_if = "Option::is_none")]
    pub tag_hashes: Option<String>,
    /// Response headers to answer with.
    #[serde(rename = "h", default)]
    pub headers: Vec<(String, String)>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How long a stored "missing" page (404/410) is served STALE past its revalidate time before
/// KV drops it by itself.
pub const MISSING_PAGE_STALE_S: u64 = 300;

/// Longest time a stored 404/410 stays in KV, whatever its revalidate time: a flood of distinct
/// missing paths leaves nothing behind after a day.
pub const MAX_MISSING_PAGE_LIFETIME_S: u64 = 86_400;

/// Whether a status means "there is no such page" (stored like a page, but expiring on its own).
pub fn is_missing_status(status: u16) -> bool {
    matches!(status, 404 | 410)
}

/// A page read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPage {
    /// Its metadata.
    pub meta: PageMeta,
    /// Its body.
    pub body: Body,
}

/// Why stored metadata could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaError {
    /// The value has no metadata (not written by edge-isr).
    Missing,
    /// The metadata is not valid JSON of the expected shape.
    Malformed(String),
    /// Written by a newer (or unknown) layout.
    UnknownVersion(u32),
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Missing => write!(f, "stored page has no metadata"),
            MetaError::Malformed(e) => write!(f, "stored page metadata is malformed: {e}"),
            MetaError::UnknownVersion(v) => write!(f, "stored page metadata has unknown version {v}"),
        }
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    #[serde(rename = "v")]
    version: u32,
}

impl PageMeta {
    /// Parses stored metadata of this version. Parsed once on the hot path (every HIT); only
    /// when that fails is the version looked at, to tell "written by another version" from
    /// "malformed".
    pub fn decode(raw: Option<&str>) -> Result<PageMeta, MetaError> {
        let raw = raw.ok_or(MetaError::Missing)?;
        match serde_json::from_str::<PageMeta>(raw) {
            Ok(meta) if meta.version == META_VERSION => Ok(meta),
            Ok(meta) => Err(MetaError::UnknownVersion(meta.version)),
            Err(e) => match serde_json::from_str::<VersionOnly>(raw) {
                Ok(v) if v.version != META_VERSION => Err(MetaError::UnknownVersion(v.version)),
                _ => Err(MetaError::Malformed(e.to_string())),
            },
        }
    }

    /// Serializes within KV's 1024-byte metadata limit, dropping informational headers
    /// ([`DROPPABLE_HEADERS`]) if needed. Fails when even that is not enough: such a page is
    /// served but not stored, rather than stored without headers the site relies on (CSP, ...).
    pub fn encode(&mut self) -> Result<String, BypassReason> {
        let mut json = serde_json::to_string(self).map_err(|_| BypassReason::HeadersTooLarge)?;
        for droppable in DROPPABLE_HEADERS {
            if json.len() <= MAX_METADATA_BYTES {
                break;
            }
            self.headers.retain(|(n, _)| n != droppable);
            json = serde_json::to_string(self).map_err(|_| BypassReason::HeadersTooLarge)?;
        }
        if json.len() > MAX_METADATA_BYTES && self.tier_tags.is_some() {
            // Too many tags to list for the tier: stored all the same, never kept by the tier.
            self.tier_tags = None;
            json = serde_json::to_string(self).map_err(|_| BypassReason::HeadersTooLarge)?;
        }
        if json.len() > MAX_METADATA_BYTES && self.tag_hashes.is_some() {
            // Too many tags to list: the page then matches every tag invalidation (conservative).
            self.tag_hashes = None;
            json = serde_json::to_string(self).map_err(|_| BypassReason::HeadersTooLarge)?;
        }
        if json.len() > MAX_METADATA_BYTES {
            return Err(BypassReason::HeadersTooLarge);
        }
        Ok(json)
    }

    /// The stored headers as a [`Headers`] list.
    pub fn headers(&self) -> Headers {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.clone())).collect()
    }

    /// The `expirationTtl` to write this page with at `now`: none for pages, which stay until
    /// replaced or removed; for 404/410 pages the rest of their lifetime (revalidate time plus
    /// [`MISSING_PAGE_STALE_S`], at most [`MAX_MISSING_PAGE_LIFETIME_S`], counted from the
    /// render), at least KV's 60 s. Every rewrite (a mark, a 304 refresh) passes it again, as a
    /// KV write without one would make the page permanent.
    pub fn expiration_ttl_s(&self, now: Millis) -> Option<u64> {
        if !is_missing_status(self.status) {
            return None;
        }
        let lifetime_s = (u64::from(self.revalidate_s) + MISSING_PAGE_STALE_S).min(MAX_MISSING_PAGE_LIFETIME_S);
        let ends = self.rendered_at.saturating_add(lifetime_s * 1000);
        let left_s = ends.saturating_sub(now).div_ceil(1000);
        Some(left_s.max(crate::store::limits::MIN_EXPIRATION_TTL_SECS))
    }

    /// Seconds since the render started (the `Age` header).
    pub fn age_s(&self, now: Millis) -> u64 {
        now.saturating_sub(self.rendered_at) / 1000
    }
}

/// A validator is usable when it is short and printable (it goes back into a header).
pub fn usable_validator(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_BYTES && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PageMeta {
        let mut m = crate::testing::page_meta(1_700_000_000_000, 60);
        m.etag = "\"abc\"".into();
        m.headers = vec![("content-type".into(), "text/html".into())];
        m
    }

    #[test]
    fn round_trips_and_is_compact() {
        let mut m = meta();
        let json = m.encode().unwrap();
        assert!(json.len() < 120, "{json}");
        assert_eq!(PageMeta::decode(Some(&json)).unwrap(), m);
    }

    #[test]
    fn decodes_version_1_as_written_by_the_first_release() {
        // A literal from version 1: keep this test when the layout changes, to prove old pages still read.
        let v1 = r#"{"v":1,"t":1700000000000,"r":60,"s":200,"e":"\"abc\"","h":[["content-type","text/html"]]}"#;
        assert_eq!(PageMeta::decode(Some(v1)).unwrap(), meta());
    }

    #[test]
    fn unknown_versions_and_junk_are_rejected_not_misread() {
        assert_eq!(PageMeta::decode(Some(r#"{"v":2,"z":1}"#)), Err(MetaError::UnknownVersion(2)));
        assert!(matches!(PageMeta::decode(Some("not json")), Err(MetaError::Malformed(_))));
        assert!(matches!(PageMeta::decode(Some(r#"{"v":1}"#)), Err(MetaError::Malformed(_))));
        assert_eq!(PageMeta::decode(None), Err(MetaError::Missing));
    }

    #[test]
    fn oversized_headers_drop_informational_ones_first() {
        let mut m = meta();
        m.headers.push(("server".into(), "s".repeat(700)));
        m.headers.push(("x-powered-by".into(), "p".repeat(300)));
        let json = m.encode().unwrap();
        assert!(json.len() <= MAX_METADATA_BYTES);
        assert!(m.headers.iter().all(|(n, _)| n != "server"));
        assert!(m.headers.iter().any(|(n, _)| n == "x-powered-by"), "dropped only as much as needed");
    }

    #[test]
    fn tier_tags_that_do_not_fit_become_unknown_not_a_refusal() {
        let mut m = meta();
        m.tier_tags = Some("t".repeat(1000));
        let json = m.encode().unwrap();
        assert!(json.len() <= MAX_METADATA_BYTES);
        assert_eq!(m.tier_tags, None, "the page is stored, and never kept by the tier");
        let mut few = meta();
        few.tier_tags = Some("posts,post-a".into());
        let json = few.encode().unwrap();
        assert_eq!(PageMeta::decode(Some(&json)).unwrap().tier_tags.as_deref(), Some("posts,post-a"));
    }

    #[test]
    fn tag_hashes_that_do_not_fit_become_unknown_not_a_refusal() {
        let mut m = meta();
        let tags: Vec<String> = (0..128).map(|i| format!("tag-{i}")).collect();
        m.tag_hashes = Some(crate::coordination::matcher::tag_hashes(&tags));
        let json = m.encode().unwrap();
        assert!(json.len() <= MAX_METADATA_BYTES);
        assert_eq!(m.tag_hashes, None, "overflow: matches every tag entry");
        let mut few = meta();
        few.tag_hashes = Some(crate::coordination::matcher::tag_hashes(&["posts".into()]));
        let json = few.encode().unwrap();
        assert_eq!(PageMeta::decode(Some(&json)).unwrap().tag_hashes.map(|h| h.len()), Some(8));
    }

    #[test]
    fn oversized_essential_headers_refuse_to_store() {
        let mut m = meta();
        m.headers.push(("content-security-policy".into(), "c".repeat(1100)));
        assert_eq!(m.encode(), Err(BypassReason::HeadersTooLarge));
    }

    #[test]
    fn only_missing_pages_expire_and_their_expiry_counts_from_the_render() {
        let mut m = meta();
        assert_eq!(m.expiration_ttl_s(m.rendered_at), None);
        m.status = 404;
        m.revalidate_s = 30;
        assert_eq!(m.expiration_ttl_s(m.rendered_at), Some(330));
        assert_eq!(m.expiration_ttl_s(m.rendered_at + 100_000), Some(230), "a rewrite keeps the end");
        assert_eq!(m.expiration_ttl_s(m.rendered_at + 10_000_000), Some(60), "KV's minimum");
        m.revalidate_s = u32::MAX;
        assert_eq!(m.expiration_ttl_s(m.rendered_at), Some(MAX_MISSING_PAGE_LIFETIME_S));
    }

    #[test]
    fn validators_must_be_short_and_printable() {
        assert_eq!(usable_validator(Some(" \"x\" ")), Some("\"x\"".into()));
        assert_eq!(usable_validator(Some(&"x".repeat(200))), None);
        assert_eq!(usable_validator(Some("a\nb")), None);
        assert_eq!(usable_validator(None), None);
    }
}

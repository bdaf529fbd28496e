//! Stored pages' metadata as last decoded, per isolate.
//!
//! Why: a HIT decodes its page's metadata (JSON, up to KV's 1024 bytes) on every request, and
//! it was, after the URL's parse, the largest share of the engine's own work on a HIT
//! (BENCHMARKS.md, issue 15). A page's metadata stays the same text until the page is written
//! again, so the decoding is kept with the text it came from and reused only for that very
//! text. At most [`MAX_PAGES`] pages are kept, all forgotten at once when full ([`super::memo`]).

use crate::rules::meta::{MetaError, PageMeta};
use super::memo::Memo;

/// How many pages' metadata an isolate keeps decoded (about 2 KiB each at most).
pub(crate) const MAX_PAGES: usize = 512;

/// The metadata decoded lately, by KV key, with the text each was decoded from.
pub(crate) struct DecodedMeta {
    pages: Memo<(String, PageMeta)>,
}

impl Default for DecodedMeta {
    fn default() -> Self {
        DecodedMeta { pages: Memo::new(MAX_PAGES) }
    }
}

impl DecodedMeta {
    /// [`PageMeta::decode`] of `text`, the metadata read for `page_key`: the kept decoding when
    /// the text is the one it came from.
    pub(crate) fn decode(&mut self, page_key: &str, text: Option<&str>) -> Result<PageMeta, MetaError> {
        let Some(text) = text else {
            return PageMeta::decode(None);
        };
        if let Some((seen, meta)) = self.pages.get(page_key) {
            if seen == text {
                return Ok(meta.clone());
            }
        }
        let meta = PageMeta::decode(Some(text))?;
        self.pages.insert(page_key, (text.to_string(), meta.clone()));
        Ok(meta)
    }

    /// How many pages are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: &str) -> String {
        let mut m = crate::testing::page_meta(1_700_000_000_000, 60);
        m.etag = etag.into();
        m.encode().unwrap()
    }

    #[test]
    fn the_kept_decoding_is_used_only_for_the_text_it_came_from() {
        let mut d = DecodedMeta::default();
        let v1 = meta("\"1\"");
        assert_eq!(d.decode("p", Some(&v1)).unwrap().etag, "\"1\"");
        assert_eq!(d.decode("p", Some(&v1)).unwrap(), PageMeta::decode(Some(&v1)).unwrap());
        // The page was written again: its new text is decoded.
        let v2 = meta("\"2\"");
        assert_eq!(d.decode("p", Some(&v2)).unwrap().etag, "\"2\"");
        // Another page with the first text: decoded for that key, not mixed up.
        assert_eq!(d.decode("q", Some(&v1)).unwrap().etag, "\"1\"");
        // Errors are never kept.
        assert!(d.decode("p", Some("{not json")).is_err());
        assert!(d.decode("p", None).is_err());
        assert_eq!(d.decode("p", Some(&v2)).unwrap().etag, "\"2\"");
    }

    #[test]
    fn at_most_max_pages_are_kept() {
        let mut d = DecodedMeta::default();
        let text = meta("\"x\"");
        for i in 0..MAX_PAGES + 3 {
            d.decode(&format!("p{i}"), Some(&text)).unwrap();
            assert!(d.len() <= MAX_PAGES);
        }
        assert_eq!(d.len(), 3, "forgotten all at once when full");
    }
}

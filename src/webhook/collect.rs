//! Gathers entries from every source of one request (query, body, mappings) into one
//! [`Invalidation`]: validated, de-duplicated in order, and held to [`MAX_ITEMS`].

use super::error::WebhookError;
use super::validate::{check, Kind};
use super::{Invalidation, InvalidationMode, MAX_ITEMS};
use std::collections::HashSet;

/// An [`Invalidation`] under construction.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    request: Invalidation,
    seen: HashSet<(Kind, String)>,
}

impl Collector {
    /// Validates `raw` as a `kind` entry named `field` in errors, and adds it unless already present.
    pub(crate) fn add(&mut self, kind: Kind, field: &str, raw: &str) -> Result<(), WebhookError> {
        let value = check(kind, raw).map_err(|reason| WebhookError::InvalidValue {
            field: field.to_string(),
            value: raw.to_string(),
            reason,
        })?;
        if self.seen.insert((kind, value.clone())) {
            match kind {
                Kind::Tag => self.request.tags.push(value),
                Kind::Path => self.request.paths.push(value),
                Kind::Prefix => self.request.prefixes.push(value),
            }
        }
        Ok(())
    }

    /// Records a requested mode; `Expire` wins over `Stale` (the stronger request is honoured).
    pub(crate) fn mode(&mut self, mode: InvalidationMode) {
        if mode == InvalidationMode::Expire {
            self.request.mode = InvalidationMode::Expire;
        }
    }

    /// The finished request, refused if it is empty (with `hint` saying why) or too large.
    pub(crate) fn finish(self, hint: &str) -> Result<Invalidation, WebhookError> {
        let n = self.request.len();
        if n == 0 {
            return Err(WebhookError::NothingToInvalidate(hint.to_string()));
        }
        if n > MAX_ITEMS {
            return Err(WebhookError::TooManyItems(n));
        }
        Ok(self.request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_order_kept() {
        let mut c = Collector::default();
        for t in ["b", "a", " b ", "a", "c"] {
            c.add(Kind::Tag, "tags", t).unwrap();
        }
        c.add(Kind::Path, "paths", "/a").unwrap();
        c.add(Kind::Prefix, "prefixes", "/a").unwrap();
        let r = c.finish("").unwrap();
        assert_eq!(r.tags, vec!["b", "a", "c"]);
        assert_eq!(r.paths, vec!["/a"]);
        assert_eq!(r.prefixes, vec!["/a"], "a path and a prefix are different entries");
        assert_eq!(r.mode, InvalidationMode::Stale);
    }

    #[test]
    fn expire_wins() {
        let mut c = Collector::default();
        c.mode(InvalidationMode::Expire);
        c.mode(InvalidationMode::Stale);
        c.add(Kind::Tag, "tag", "x").unwrap();
        assert_eq!(c.finish("").unwrap().mode, InvalidationMode::Expire);
    }

    #[test]
    fn limits_count_distinct_entries_across_lists() {
        let mut c = Collector::default();
        for i in 0..MAX_ITEMS / 2 {
            c.add(Kind::Tag, "tags", &format!("t{i}")).unwrap();
            c.add(Kind::Path, "paths", &format!("/p{i}")).unwrap();
            c.add(Kind::Path, "paths", &format!("/p{i}")).unwrap();
        }
        assert_eq!(c.finish("").unwrap().len(), MAX_ITEMS);

        let mut c = Collector::default();
        for i in 0..=MAX_ITEMS {
            c.add(Kind::Prefix, "prefixes", &format!("/p{i}/")).unwrap();
        }
        assert_eq!(c.finish("").unwrap_err(), WebhookError::TooManyItems(MAX_ITEMS + 1));
        assert!(matches!(Collector::default().finish("empty"), Err(WebhookError::NothingToInvalidate(h)) if h == "empty"));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let mut c = Collector::default();
        let err = c.add(Kind::Path, "paths[3]", "blog").unwrap_err();
        assert!(err.message().starts_with("paths[3] \"blog\": a path must start with '/'"), "{err}");
    }
}

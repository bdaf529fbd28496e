//! What one on-demand invalidation asks for (tags, paths, prefixes) and how pages behave
//! after it (stale or expire): the webhook produces it, the engine carries it out.

use serde::{Deserialize, Serialize};

/// How an invalidated page behaves on its next request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvalidationMode {
    /// Served STALE while it regenerates (visitors never wait). Next.js's `revalidateTag`.
    #[default]
    Stale,
    /// Rendered before answering; never shown again (a hard purge).
    Expire,
}

impl InvalidationMode {
    /// Parses `stale` or `expire` (exactly, lower-case).
    pub fn parse(value: &str) -> Option<InvalidationMode> {
        match value {
            "stale" => Some(InvalidationMode::Stale),
            "expire" => Some(InvalidationMode::Expire),
            _ => None,
        }
    }

    /// The mode's name in requests and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidationMode::Stale => "stale",
            InvalidationMode::Expire => "expire",
        }
    }
}

/// What one on-demand invalidation asks for: validated, de-duplicated, in order of appearance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Tags, each valid per [`crate::rules::policy::is_valid_tag`].
    pub tags: Vec<String>,
    /// Exact paths (starting with `/`, optionally with a query): one page each.
    pub paths: Vec<String>,
    /// Path prefixes (starting with `/`, no query): every page whose path starts with one.
    pub prefixes: Vec<String>,
    /// Stale or expire.
    pub mode: InvalidationMode,
}

impl Invalidation {
    /// Number of entries across tags, paths and prefixes.
    pub fn len(&self) -> usize {
        self.tags.len() + self.paths.len() + self.prefixes.len()
    }

    /// Whether there is nothing to invalidate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_only_its_two_names() {
        assert_eq!(InvalidationMode::parse("stale"), Some(InvalidationMode::Stale));
        assert_eq!(InvalidationMode::parse("expire"), Some(InvalidationMode::Expire));
        assert_eq!(InvalidationMode::parse("Expire"), None);
        assert_eq!(InvalidationMode::parse(""), None);
        assert_eq!(InvalidationMode::default(), InvalidationMode::Stale);
        assert_eq!(InvalidationMode::Expire.as_str(), "expire");
    }
    #[test]
    fn an_invalidation_counts_all_three_lists() {
        let r = Invalidation {
            tags: vec!["a".into()],
            paths: vec!["/x".into(), "/y".into()],
            prefixes: vec![],
            mode: InvalidationMode::Stale,
        };
        assert_eq!(r.len(), 3);
        assert!(!r.is_empty());
        assert!(Invalidation::default().is_empty());
    }
}

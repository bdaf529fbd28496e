//! What a tag, a path and a prefix may look like, checked the same way whatever their source
//! (query, body or a mapping template), so the invalidation code only ever sees clean values.

use super::MAX_PATH_CHARS;
use crate::rules::policy::{is_valid_tag, MAX_TAG_CHARS};

/// The three kinds of invalidation entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A cache tag.
    Tag,
    /// An exact path, optionally with a query.
    Path,
    /// A path prefix.
    Prefix,
}

impl Kind {
    /// The singular field name (`tag`, `path`, `prefix`).
    pub(crate) fn singular(self) -> &'static str {
        match self {
            Kind::Tag => "tag",
            Kind::Path => "path",
            Kind::Prefix => "prefix",
        }
    }

    /// The plural field name (`tags`, `paths`, `prefixes`).
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::Tag => "tags",
            Kind::Path => "paths",
            Kind::Prefix => "prefixes",
        }
    }
}

/// Trims `raw` and checks it as a `kind` entry: the clean value, or why it is refused.
pub(crate) fn check(kind: Kind, raw: &str) -> Result<String, String> {
    let value = raw.trim();
    match kind {
        Kind::Tag => tag_problem(value),
        Kind::Path => path_problem(value, true),
        Kind::Prefix => path_problem(value, false),
    }
    .map_or_else(|| Ok(value.to_string()), Err)
}

fn tag_problem(tag: &str) -> Option<String> {
    if is_valid_tag(tag) {
        None
    } else if tag.is_empty() {
        Some("a tag must not be empty".into())
    } else if tag.chars().any(char::is_control) {
        Some("a tag must not contain control characters".into())
    } else {
        Some(format!("a tag is at most {MAX_TAG_CHARS} characters"))
    }
}

fn path_problem(path: &str, query_allowed: bool) -> Option<String> {
    let what = if query_allowed { "a path" } else { "a prefix" };
    if !path.starts_with('/') {
        return Some(format!("{what} must start with '/' (send the path, not the full URL)"));
    }
    if path.chars().count() > MAX_PATH_CHARS {
        return Some(format!("{what} is at most {MAX_PATH_CHARS} characters"));
    }
    if path.chars().any(char::is_control) {
        return Some(format!("{what} must not contain control characters"));
    }
    if path.contains('#') {
        return Some(format!("{what} must not contain '#' (fragments never reach the server)"));
    }
    if !query_allowed && path.contains('?') {
        return Some("a prefix must not contain '?' (prefixes match paths only; send an exact path to name a query)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_policy_rule() {
        assert_eq!(check(Kind::Tag, "  posts "), Ok("posts".into()));
        assert_eq!(check(Kind::Tag, "_N_T_/blog"), Ok("_N_T_/blog".into()));
        assert!(check(Kind::Tag, "").is_err());
        assert!(check(Kind::Tag, "   ").is_err());
        assert!(check(Kind::Tag, "a\u{0}b").unwrap_err().contains("control"));
        assert!(check(Kind::Tag, &"x".repeat(MAX_TAG_CHARS)).is_ok());
        assert!(check(Kind::Tag, &"x".repeat(MAX_TAG_CHARS + 1)).unwrap_err().contains("256"));
    }

    #[test]
    fn paths_start_with_a_slash_and_may_carry_a_query() {
        assert_eq!(check(Kind::Path, "/blog/a?page=2"), Ok("/blog/a?page=2".into()));
        assert_eq!(check(Kind::Path, "/"), Ok("/".into()));
        assert!(check(Kind::Path, "blog").unwrap_err().contains("start with '/'"));
        assert!(check(Kind::Path, "https://example.com/blog").is_err());
        assert!(check(Kind::Path, "/a#top").unwrap_err().contains('#'));
        assert!(check(Kind::Path, "/a\nb").is_err());
        assert!(check(Kind::Path, &format!("/{}", "é".repeat(MAX_PATH_CHARS - 1))).is_ok());
        assert!(check(Kind::Path, &format!("/{}", "é".repeat(MAX_PATH_CHARS))).unwrap_err().contains("1024"));
    }

    #[test]
    fn prefixes_are_paths_without_a_query() {
        assert_eq!(check(Kind::Prefix, "/blog/"), Ok("/blog/".into()));
        assert!(check(Kind::Prefix, "/blog?x").unwrap_err().contains('?'));
        assert!(check(Kind::Prefix, "").is_err());
    }
}

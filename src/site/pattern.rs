//! Route patterns (`/blog/:slug`, `/docs/*rest`) and the templates filled from their
//! parameters (`post-{slug}`, `/api/posts/{slug}`).
//!
//! Patterns are written the way Next.js and Express users write them (`:name` for one segment,
//! `*name` for the rest of the path); matchit's own `{name}` / `{*name}` syntax is accepted too.
//! Matching itself is matchit's radix tree, so a site with hundreds of routes still matches in
//! one walk of the path.

use std::fmt;

/// Values of a matched route's parameters, in pattern order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parameters from `(name, value)` pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    /// The value of `name`, if the route has such a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A malformed route pattern or template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// Translates a pattern to matchit's syntax and lists its parameter names.
///
/// `/blog/:slug` → `/blog/{slug}`, `/docs/*rest` → `/docs/{*rest}`. A catch-all must be the
/// last segment; parameter names are letters, digits and `_`.
pub fn to_matchit(pattern: &str) -> Result<(String, Vec<String>), PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError(format!("route pattern {pattern:?} must start with '/'")));
    }
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    let mut out = String::new();
    let mut names = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        out.push('/');
        let (name, catch_all) = if let Some(n) = seg.strip_prefix(':') {
            (Some(n), false)
        } else if let Some(n) = seg.strip_prefix('*') {
            (Some(n), true)
        } else if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            match inner.strip_prefix('*') {
                Some(n) => (Some(n), true),
                None => (Some(inner), false),
            }
        } else {
            if seg.contains(['{', '}', ':', '*']) {
                return Err(PatternError(format!(
                    "route pattern {pattern:?}: a parameter must be a whole segment (`:name` or `*name`)"
                )));
            }
            out.push_str(seg);
            continue;
        };
        let name = name.unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(PatternError(format!("route pattern {pattern:?}: bad parameter name {name:?}")));
        }
        if names.iter().any(|n| n == name) {
            return Err(PatternError(format!("route pattern {pattern:?}: parameter {name:?} appears twice")));
        }
        if catch_all && i + 1 != segments.len() {
            return Err(PatternError(format!("route pattern {pattern:?}: `*{name}` must be the last segment")));
        }
        out.push_str(&if catch_all { format!("{{*{name}}}") } else { format!("{{{name}}}") });
        names.push(name.to_string());
    }
    Ok((out, names))
}

/// A string with `{param}` holes, filled from a route's parameters: tag templates
/// (`post-{slug}`) and data URLs (`/api/posts/{slug}`).
///
/// Checked once, when the route is registered, against the route's parameter names, so a typo
/// fails at start-up instead of producing a tag no webhook will ever name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
}

/// How a parameter's value is written into a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As it is (tags: the value is checked by the tag rules afterwards).
    None,
    /// Percent-encoded as one URL path segment (`/` inside a catch-all stays a separator).
    UrlPath,
}

impl Template {
    /// Parses `text`, checking that every `{name}` is one of `params`.
    pub fn parse(text: &str, params: &[String]) -> Result<Template, PatternError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| PatternError(format!("template {text:?}: '{{' without '}}'")))?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let name = &rest[open + 1..close];
            if !params.iter().any(|p| p == name) {
                return Err(PatternError(format!(
                    "template {text:?} uses {{{name}}}, but the route's parameters are {params:?}"
                )));
            }
            parts.push(Part::Param(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(PatternError(format!("template {text:?}: '}}' without '{{'")));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The template with every hole filled from `params`.
    pub fn fill(&self, params: &Params, escape: Escape) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(name) => {
                    let value = params.get(name).unwrap_or_default();
                    match escape {
                        Escape::None => out.push_str(value),
                        Escape::UrlPath => out.push_str(&encode_path(value)),
                    }
                }
            }
        }
        out
    }
}

/// Percent-encodes a parameter value for a URL path, keeping `/` (catch-all values hold
/// several segments) and the unreserved characters.
fn encode_path(value: &str) -> String {
    crate::rules::key::percent_encode(value, b"-._~/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn express_style_patterns_become_matchit_patterns() {
        assert_eq!(to_matchit("/blog/:slug").unwrap(), ("/blog/{slug}".into(), names(&["slug"])));
        assert_eq!(to_matchit("/docs/*rest").unwrap(), ("/docs/{*rest}".into(), names(&["rest"])));
        assert_eq!(to_matchit("/a/{id}/b").unwrap(), ("/a/{id}/b".into(), names(&["id"])));
        assert_eq!(to_matchit("/").unwrap(), ("/".into(), vec![]));
        assert_eq!(
            to_matchit("/:year/:month").unwrap(),
            ("/{year}/{month}".into(), names(&["year", "month"]))
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for bad in ["blog/:slug", "/docs/*rest/more", "/a/:", "/a/:x/:x", "/a/pre:x", "/a/:sl-ug"] {
            assert!(to_matchit(bad).is_err(), "{bad} should be refused");
        }
        assert!(to_matchit("/docs/*rest/more").unwrap_err().0.contains("last segment"));
    }

    #[test]
    fn tag_templates_fill_from_parameters() {
        let params = Params::new(vec![("slug".into(), "hello".into())]);
        let t = Template::parse("post-{slug}", &names(&["slug"])).unwrap();
        assert_eq!(t.fill(&params, Escape::None), "post-hello");
        let constant = Template::parse("posts", &names(&["slug"])).unwrap();
        assert_eq!(constant.fill(&params, Escape::None), "posts");
    }

    #[test]
    fn templates_naming_unknown_parameters_fail_at_registration() {
        let err = Template::parse("post-{id}", &names(&["slug"])).unwrap_err();
        assert!(err.0.contains("{id}"), "{err}");
        assert!(Template::parse("post-{slug", &names(&["slug"])).is_err());
        assert!(Template::parse("post-slug}", &names(&["slug"])).is_err());
    }

    #[test]
    fn url_templates_percent_encode_values_but_keep_catch_all_slashes() {
        let t = Template::parse("/api/{rest}", &names(&["rest"])).unwrap();
        let params = Params::new(vec![("rest".into(), "a b/ü?x".into())]);
        assert_eq!(t.fill(&params, Escape::UrlPath), "/api/a%20b/%C3%BC%3Fx");
    }
}

//! Route patterns (`/blog/:slug`, `/docs/*rest`) and the templates filled from their
//! parameters (`post-{slug}`, `/api/posts/{slug}`).
//!
//! Patterns are written the way Next.js and Express users write them (`:name` for one segment,
//! `*name` for the rest of the path); matchit's own `{name}` / `{*name}` syntax is accepted too.
//! Matching itself is matchit's radix tree, so a site with hundreds of routes still matches in
//! one walk of the path.

use std::fmt;

/// Values of a matched route's parameters, in pattern order.
///
/// Two sets are equal when their names and values are (which parameter is the catch-all is
/// a property of the route, not of the values).
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    catch_all: Option<String>,
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for Params {}

impl Params {
    /// Parameters from `(name, value)` pairs, all of them single-segment parameters.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs, catch_all: None }
    }

    /// The same parameters, `name` being a catch-all (`*rest`: its value may hold `/`).
    pub fn with_catch_all(mut self, name: &str) -> Self {
        self.catch_all = Some(name.to_string());
        self
    }

    /// The value of `name`, if the route has such a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether `name` is the catch-all parameter.
    pub fn is_catch_all(&self, name: &str) -> bool {
        self.catch_all.as_deref() == Some(name)
    }

    /// Why these values cannot be this route's (see [`check_value`]), if they cannot.
    pub fn refusal(&self) -> Option<PatternError> {
        self.iter().find_map(|(name, value)| check_value(name, value, self.is_catch_all(name)).err())
    }
}

/// Whether a decoded parameter value stays inside the URL it is filled into.
///
/// A single-segment parameter (`:slug`) never holds `/` and is never `.` or `..`; a catch-all
/// (`*rest`) keeps its `/` but none of its segments may be `.` or `..`. (Percent-encoding cannot
/// make a dot segment harmless: URL parsers treat `%2E%2E` as `..`.) Such values are refused
/// where a route is matched, so such a path is a 404, and again when a data URL is filled.
pub fn check_value(name: &str, value: &str, catch_all: bool) -> Result<(), PatternError> {
    let dot = |s: &str| s == "." || s == "..";
    if catch_all {
        if value.split('/').any(dot) {
            return Err(PatternError(format!("parameter {name:?} = {value:?}: a `.` or `..` segment")));
        }
    } else if value.contains('/') {
        return Err(PatternError(format!("parameter {name:?} = {value:?}: a `/` in a one-segment parameter")));
    } else if dot(value) {
        return Err(PatternError(format!("parameter {name:?} = {value:?}: a `.` or `..` segment")));
    }
    Ok(())
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

    /// The template with every hole filled from `params` as it is (tags: the value is checked
    /// by the tag rules afterwards).
    pub fn fill(&self, params: &Params) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(name) => out.push_str(params.get(name).unwrap_or_default()),
            }
        }
        out
    }

    /// The template as a URL: every value percent-encoded, so it cannot add a path segment, a
    /// query or a fragment. In the path, a single-segment parameter's `/` is encoded and a
    /// catch-all's kept; after `?`, values are form-encoded (`&`, `=`, `#`, `+` included).
    /// Values [`check_value`] refuses (`.`, `..`, a `/` in a one-segment parameter) are an error.
    pub fn fill_url(&self, params: &Params) -> Result<String, PatternError> {
        let mut out = String::new();
        let mut in_query = false;
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    in_query |= t.contains(['?', '#']);
                    out.push_str(t);
                }
                Part::Param(name) => {
                    let value = params.get(name).unwrap_or_default();
                    if in_query {
                        out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
                        continue;
                    }
                    let catch_all = params.is_catch_all(name);
                    check_value(name, value, catch_all)?;
                    let keeps: &[u8] = if catch_all { b"-._~/" } else { b"-._~" };
                    out.push_str(&crate::rules::key::percent_encode(value, keeps));
                }
            }
        }
        Ok(out)
    }
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
        assert_eq!(t.fill(&params), "post-hello");
        let constant = Template::parse("posts", &names(&["slug"])).unwrap();
        assert_eq!(constant.fill(&params), "posts");
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
        let params = Params::new(vec![("rest".into(), "a b/ü?x#y".into())]).with_catch_all("rest");
        assert_eq!(t.fill_url(&params).unwrap(), "/api/a%20b/%C3%BC%3Fx%23y");
        let t = Template::parse("/api/{slug}?q={slug}&x=1", &names(&["slug"])).unwrap();
        let params = Params::new(vec![("slug".into(), "a&b=c d#e".into())]);
        assert_eq!(t.fill_url(&params).unwrap(), "/api/a%26b%3Dc%20d%23e?q=a%26b%3Dc+d%23e&x=1");
    }

    #[test]
    fn values_that_would_leave_their_url_are_refused() {
        let t = Template::parse("/api/{slug}", &names(&["slug"])).unwrap();
        for bad in ["..", ".", "../x", "a/b", "/"] {
            let params = Params::new(vec![("slug".into(), bad.into())]);
            assert!(t.fill_url(&params).is_err(), "{bad}");
            assert!(params.refusal().is_some(), "{bad}");
        }
        let t = Template::parse("/api/{rest}", &names(&["rest"])).unwrap();
        for bad in ["..", "a/../b", "a/./b", "../../x", "a/.."] {
            let params = Params::new(vec![("rest".into(), bad.into())]).with_catch_all("rest");
            assert!(t.fill_url(&params).is_err(), "{bad}");
        }
        for good in ["a/b", "...", "a..b/.c", ".well-known/x"] {
            let params = Params::new(vec![("rest".into(), good.into())]).with_catch_all("rest");
            assert!(t.fill_url(&params).is_ok(), "{good}");
            assert!(params.refusal().is_none(), "{good}");
        }
    }
}

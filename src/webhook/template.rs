//! `{dotted.path}` templates that turn a CMS payload into tags and paths, e.g.
//! `"/blog/{slug.current}"` or `"post-{entry.id}"`.
//!
//! Kept apart from the rules that use them because substitution has its own safety rules: only
//! non-empty strings and numbers are substituted (anything else makes the template produce
//! nothing, never an error), and a value substituted into a path is percent-encoded so that it
//! cannot add a query or a fragment, or smuggle control characters into a cache key.

use serde_json::Value;

/// How substituted values are escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Inserted as they are (tags are opaque strings).
    Verbatim,
    /// Percent-encoded for a URL path (after a literal `?`: form-encoded as a query value).
    Url,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Vec<String>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`: literal text with `{dotted.path}` placeholders (no nesting, no escapes).
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
                Some(i) if rest[i..].starts_with('}') => {
                    return Err(format!("template {text:?} has a '}}' without a matching '{{'"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_string()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find(['{', '}'])
                        .filter(|&j| after[j..].starts_with('}'))
                        .ok_or_else(|| format!("template {text:?} has a '{{' without a matching '}}'"))?;
                    let path = parse_path(&after[..end]).map_err(|e| format!("template {text:?}: {e}"))?;
                    parts.push(Part::Field(path));
                    rest = &after[end + 1..];
                }
            }
        }
        Ok(Template { source: text.to_string(), parts })
    }

    /// The template as written.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has placeholders (otherwise it is a fixed value).
    pub(crate) fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// Whether the template begins with a placeholder rather than literal text.
    pub(crate) fn starts_with_field(&self) -> bool {
        matches!(self.parts.first(), Some(Part::Field(_)))
    }

    /// The literal pieces of the template.
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(s) => Some(s.as_str()),
            Part::Field(_) => None,
        })
    }

    /// The template with every placeholder replaced from `payload`, or `None` when a
    /// placeholder's field is missing, empty, or not a string or number.
    pub(crate) fn render(&self, payload: &Value, escape: Escape) -> Option<String> {
        let mut out = String::new();
        let mut in_query = false;
        for part in &self.parts {
            match part {
                Part::Literal(s) => {
                    out.push_str(s);
                    in_query |= s.contains('?');
                }
                Part::Field(path) => {
                    let text = match lookup(payload, path)? {
                        Value::String(s) if !s.is_empty() => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    match escape {
                        Escape::Verbatim => out.push_str(&text),
                        Escape::Url if in_query => out.extend(url::form_urlencoded::byte_serialize(text.as_bytes())),
                        Escape::Url => encode_path(&text, &mut out),
                    }
                }
            }
        }
        Some(out)
    }
}

/// Splits `a.b.c` into its segments; every segment must be non-empty.
pub(crate) fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let path = path.trim();
    if path.is_empty() {
        return Err("a field path must not be empty".into());
    }
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!("field path {path:?} has an empty segment"));
    }
    Ok(segments)
}

/// The value at `path` in `value`: object keys by name, array elements by decimal index.
pub(crate) fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Appends `text` percent-encoded with the WHATWG path percent-encode set (controls, space,
/// `"`, `#`, `<`, `>`, `?`, `` ` ``, `{`, `}`, non-ASCII) plus `\`, so the result reads the same
/// once parsed as a URL and cannot end the path early. `/` is kept (slugs may have segments).
fn encode_path(text: &str, out: &mut String) {
    for &b in text.as_bytes() {
        if b <= 0x20 || b >= 0x7f || b"\"#<>?`{}\\".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, payload: &Value, escape: Escape) -> Option<String> {
        Template::parse(t).unwrap().render(payload, escape)
    }

    #[test]
    fn substitutes_strings_and_numbers_by_dotted_path() {
        let p = json!({"slug": {"current": "hello"}, "id": 42, "price": 1.5, "list": ["a", {"b": "c"}]});
        assert_eq!(render("post-{slug.current}", &p, Escape::Verbatim), Some("post-hello".into()));
        assert_eq!(render("{id}-{price}", &p, Escape::Verbatim), Some("42-1.5".into()));
        assert_eq!(render("{list.1.b}/{list.0}", &p, Escape::Verbatim), Some("c/a".into()));
        assert_eq!(render("{ slug.current }", &p, Escape::Verbatim), Some("hello".into()));
        assert_eq!(render("posts", &p, Escape::Verbatim), Some("posts".into()));
    }

    #[test]
    fn missing_empty_or_non_scalar_fields_produce_nothing() {
        let p = json!({"slug": {"current": ""}, "flag": true, "none": null, "obj": {}, "list": []});
        for t in ["{missing}", "{slug.current}", "{slug}", "{flag}", "{none}", "{obj}", "{list}", "{list.0}", "{slug.current.x}", "x-{list.x}"] {
            assert_eq!(render(t, &p, Escape::Verbatim), None, "{t}");
        }
    }

    #[test]
    fn url_values_are_percent_encoded_path_then_query() {
        let p = json!({"s": "a b/ü?x=1#f", "q": "a&b=c d"});
        assert_eq!(render("/blog/{s}", &p, Escape::Url), Some("/blog/a%20b/%C3%BC%3Fx=1%23f".into()));
        assert_eq!(render("/search?q={q}&x=1", &p, Escape::Url), Some("/search?q=a%26b%3Dc+d&x=1".into()));
        assert_eq!(render("{s}", &json!({"s": "/x\u{1}y"}), Escape::Url), Some("/x%01y".into()));
        assert_eq!(render("t-{s}", &p, Escape::Verbatim), Some("t-a b/ü?x=1#f".into()));
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in ["{", "a{b", "}", "a}b", "{}", "{ }", "{a..b}", "{.a}", "{a{b}}", "{a}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let t = Template::parse("/blog/{slug.current}").unwrap();
        assert!(t.has_fields());
        assert!(!t.starts_with_field());
        assert_eq!(t.literals().collect::<Vec<_>>(), vec!["/blog/"]);
        assert_eq!(t.source(), "/blog/{slug.current}");
        assert!(Template::parse("{path}").unwrap().starts_with_field());
        assert!(!Template::parse("").unwrap().has_fields());
    }
}

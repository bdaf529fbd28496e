//! Rules that translate a CMS's own webhook payload into tags, paths and prefixes, configured
//! without code through the `WEBHOOK_MAPPINGS` variable (a JSON string in `[vars]`).
//!
//! Most CMSes send a fixed payload shape they cannot be told to change (Strapi, Contentful) or
//! that is easiest left as the document (Sanity). A rule says "when these fields have these
//! values, invalidate these templates":
//!
//! ```json
//! [{"when": {"_type": "post"}, "tags": ["post-{slug.current}", "posts"],
//!   "paths": ["/blog/{slug.current}"], "prefixes": [], "mode": "stale"}]
//! ```
//!
//! `when` compares fields by dotted path (`sys.contentType.sys.id`, array elements by index)
//! with equal JSON values, all of which must match (`{}` matches every payload). Templates are
//! described in [`super::template`]. Every matching rule contributes; results are merged, and
//! each produced value must still pass the tag or path validation.

use super::collect::Collector;
use super::error::{quote, WebhookError};
use super::template::{lookup, parse_path, Escape, Template};
use super::validate::{check, Kind};
use super::InvalidationMode;
use serde_json::{Map, Value};

const RULE_FIELDS: [&str; 5] = ["when", "tags", "paths", "prefixes", "mode"];

/// The configured payload mappings (`WEBHOOK_MAPPINGS`); empty when none are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mappings {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    when: Vec<(Vec<String>, Value)>,
    tags: Vec<Template>,
    paths: Vec<Template>,
    prefixes: Vec<Template>,
    mode: Option<InvalidationMode>,
}

impl Mappings {
    /// Parses `WEBHOOK_MAPPINGS`: a JSON array of rules, or an empty (or blank) string for none.
    /// The error names the rule (1-based) and the field at fault.
    pub fn from_json(s: &str) -> Result<Mappings, String> {
        if s.trim().is_empty() {
            return Ok(Mappings::default());
        }
        let value: Value = serde_json::from_str(s).map_err(|e| format!("WEBHOOK_MAPPINGS is not valid JSON: {e}"))?;
        let Value::Array(items) = value else {
            return Err("WEBHOOK_MAPPINGS must be a JSON array of rules, e.g. \
                        [{\"when\": {\"_type\": \"post\"}, \"tags\": [\"post-{slug.current}\"]}]"
                .into());
        };
        let rules = items
            .iter()
            .enumerate()
            .map(|(i, item)| Rule::parse(item).map_err(|e| format!("WEBHOOK_MAPPINGS rule {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mappings { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rules are configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds what every rule matching `payload` produces to `out`, and applies their modes;
    /// returns the 1-based numbers of the rules that matched.
    pub(crate) fn apply(&self, payload: &Value, out: &mut Collector) -> Result<Vec<usize>, WebhookError> {
        let mut matched = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(payload) {
                continue;
            }
            matched.push(i + 1);
            if let Some(mode) = rule.mode {
                out.mode(mode);
            }
            for (kind, templates) in rule.templates() {
                let escape = if kind == Kind::Tag { Escape::Verbatim } else { Escape::Url };
                for template in templates {
                    if let Some(value) = template.render(payload, escape) {
                        let field = format!(
                            "WEBHOOK_MAPPINGS rule {} {} template {} produced",
                            i + 1,
                            kind.plural(),
                            quote(template.source())
                        );
                        out.add(kind, &field, &value)?;
                    }
                }
            }
        }
        Ok(matched)
    }
}

impl Rule {
    fn parse(item: &Value) -> Result<Rule, String> {
        let Value::Object(map) = item else {
            return Err("must be an object with \"when\" and at least one of \"tags\", \"paths\", \"prefixes\"".into());
        };
        let unknown: Vec<String> = map.keys().filter(|k| !RULE_FIELDS.contains(&k.as_str())).map(|k| quote(k)).collect();
        if !unknown.is_empty() {
            return Err(format!("unknown field(s) {}; a rule has when, tags, paths, prefixes and mode", unknown.join(", ")));
        }
        let when = match map.get("when") {
            Some(Value::Object(conditions)) => conditions
                .iter()
                .map(|(path, expected)| Ok((parse_path(path).map_err(|e| format!("\"when\": {e}"))?, expected.clone())))
                .collect::<Result<Vec<_>, String>>()?,
            Some(_) => return Err("\"when\" must be an object of field paths and values, e.g. {\"_type\": \"post\"}".into()),
            None => return Err("\"when\" is missing (use {} to match every payload)".into()),
        };
        let mode = match map.get("mode") {
            None => None,
            Some(Value::String(s)) => Some(InvalidationMode::parse(s).ok_or_else(|| format!("\"mode\" {} must be \"stale\" or \"expire\"", quote(s)))?),
            Some(_) => return Err("\"mode\" must be \"stale\" or \"expire\"".into()),
        };
        let rule = Rule {
            when,
            tags: parse_templates(map, Kind::Tag)?,
            paths: parse_templates(map, Kind::Path)?,
            prefixes: parse_templates(map, Kind::Prefix)?,
            mode,
        };
        if rule.templates().iter().all(|(_, t)| t.is_empty()) {
            return Err("invalidates nothing: give at least one of \"tags\", \"paths\", \"prefixes\"".into());
        }
        Ok(rule)
    }

    fn matches(&self, payload: &Value) -> bool {
        self.when.iter().all(|(path, expected)| lookup(payload, path) == Some(expected))
    }

    fn templates(&self) -> [(Kind, &[Template]); 3] {
        [(Kind::Tag, &self.tags), (Kind::Path, &self.paths), (Kind::Prefix, &self.prefixes)]
    }
}

/// The `kind` templates of a rule object, checked as far as their literal text allows.
fn parse_templates(map: &Map<String, Value>, kind: Kind) -> Result<Vec<Template>, String> {
    let field = kind.plural();
    let items = match map.get(field) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("\"{field}\" must be an array of template strings")),
    };
    items
        .iter()
        .map(|item| {
            let Value::String(text) = item else {
                return Err(format!("\"{field}\" must contain only strings"));
            };
            let template = Template::parse(text)?;
            check_literals(&template, kind).map_err(|e| format!("\"{field}\" template {}: {e}", quote(text)))?;
            Ok(template)
        })
        .collect()
}

/// Refuses templates that can never produce a valid value.
fn check_literals(template: &Template, kind: Kind) -> Result<(), String> {
    if !template.has_fields() {
        return check(kind, template.source()).map(|_| ());
    }
    let literals: String = template.literals().collect();
    if literals.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    if kind == Kind::Tag {
        return Ok(());
    }
    if !template.starts_with_field() && !template.source().starts_with('/') {
        return Err("must start with '/' (or with a placeholder whose value does)".into());
    }
    if literals.contains('#') {
        return Err("must not contain '#'".into());
    }
    if kind == Kind::Prefix && literals.contains('?') {
        return Err("a prefix must not contain '?'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(mappings: &Mappings, payload: Value) -> Result<(Vec<usize>, super::super::Invalidation), WebhookError> {
        let mut out = Collector::default();
        let matched = mappings.apply(&payload, &mut out)?;
        Ok((matched, out.finish("nothing")?))
    }

    #[test]
    fn empty_configuration_means_no_rules() {
        assert!(Mappings::from_json("").unwrap().is_empty());
        assert!(Mappings::from_json("  \n").unwrap().is_empty());
        assert_eq!(Mappings::from_json("[]").unwrap().len(), 0);
    }

    #[test]
    fn sanity_document_payload() {
        let m = Mappings::from_json(
            r#"[{"when": {"_type": "post"}, "tags": ["post-{slug.current}", "posts"], "paths": ["/blog/{slug.current}"], "prefixes": []}]"#,
        )
        .unwrap();
        let (matched, r) = run(&m, json!({"_type": "post", "slug": {"current": "hello"}})).unwrap();
        assert_eq!(matched, vec![1]);
        assert_eq!(r.tags, vec!["post-hello", "posts"]);
        assert_eq!(r.paths, vec!["/blog/hello"]);
        assert_eq!(r.mode, InvalidationMode::Stale);
        let mut out = Collector::default();
        assert_eq!(m.apply(&json!({"_type": "author", "slug": {"current": "x"}}), &mut out).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn strapi_entry_payload() {
        // Strapi v4/v5 webhooks: {"event": "entry.update", "model": "post", "entry": {...}}.
        let m = Mappings::from_json(
            r#"[
                {"when": {"model": "post"}, "tags": ["post-{entry.slug}", "posts"], "paths": ["/blog/{entry.slug}"]},
                {"when": {"model": "post", "event": "entry.delete"}, "prefixes": ["/blog/"], "mode": "expire"}
            ]"#,
        )
        .unwrap();
        let update = json!({"event": "entry.update", "model": "post", "entry": {"id": 7, "slug": "hello"}});
        let (matched, r) = run(&m, update).unwrap();
        assert_eq!(matched, vec![1]);
        assert_eq!((r.tags.as_slice(), r.paths.as_slice(), r.mode), (&["post-hello".to_string(), "posts".into()][..], &["/blog/hello".to_string()][..], InvalidationMode::Stale));
        let delete = json!({"event": "entry.delete", "model": "post", "entry": {"id": 7, "slug": "hello"}});
        let (matched, r) = run(&m, delete).unwrap();
        assert_eq!(matched, vec![1, 2], "several rules match and merge");
        assert_eq!(r.prefixes, vec!["/blog/"]);
        assert_eq!(r.mode, InvalidationMode::Expire);
    }

    #[test]
    fn contentful_entry_payload() {
        let m = Mappings::from_json(
            r#"[{"when": {"sys.contentType.sys.id": "post"}, "tags": ["post-{fields.slug.en-US}"], "paths": ["/blog/{fields.slug.en-US}"]}]"#,
        )
        .unwrap();
        let payload = json!({"sys": {"contentType": {"sys": {"id": "post"}}}, "fields": {"slug": {"en-US": "hello"}}});
        let (_, r) = run(&m, payload).unwrap();
        assert_eq!(r.tags, vec!["post-hello"]);
        assert_eq!(r.paths, vec!["/blog/hello"]);
    }

    #[test]
    fn when_compares_json_values_exactly_and_all_must_match() {
        let m = Mappings::from_json(r#"[{"when": {"a": 1, "b.c": [1, 2], "d": null}, "tags": ["t"]}]"#).unwrap();
        assert!(run(&m, json!({"a": 1, "b": {"c": [1, 2]}, "d": null})).is_ok());
        for miss in [json!({"a": "1", "b": {"c": [1, 2]}, "d": null}), json!({"a": 1, "b": {"c": [2, 1]}, "d": null}), json!({"a": 1, "b": {"c": [1, 2]}}), json!([1])] {
            let mut out = Collector::default();
            assert!(m.apply(&miss, &mut out).unwrap().is_empty(), "{miss}");
        }
        let any = Mappings::from_json(r#"[{"when": {}, "tags": ["all"]}]"#).unwrap();
        assert_eq!(run(&any, json!("anything")).unwrap().1.tags, vec!["all"]);
    }

    #[test]
    fn missing_fields_skip_the_template_and_bad_values_are_refused() {
        let m = Mappings::from_json(r#"[{"when": {}, "tags": ["post-{slug}", "posts"], "paths": ["/blog/{slug}"]}]"#).unwrap();
        let (_, r) = run(&m, json!({"title": "no slug"})).unwrap();
        assert_eq!(r.tags, vec!["posts"]);
        assert!(r.paths.is_empty());

        let only = Mappings::from_json(r#"[{"when": {}, "paths": ["/blog/{slug}"]}]"#).unwrap();
        let mut out = Collector::default();
        assert_eq!(only.apply(&json!({}), &mut out).unwrap(), vec![1]);
        assert!(matches!(out.finish("x"), Err(WebhookError::NothingToInvalidate(_))));

        let long = "x".repeat(300);
        let err = run(&m, json!({ "slug": long })).unwrap_err();
        assert!(err.message().contains("rule 1 tags template \"post-{slug}\" produced"), "{err}");
        let err = run(&m, json!({ "slug": "a\u{7}" })).unwrap_err();
        assert!(err.message().contains("control characters"), "{err}");

        let whole = Mappings::from_json(r#"[{"when": {}, "paths": ["{url}"]}]"#).unwrap();
        assert_eq!(run(&whole, json!({"url": "/docs/intro"})).unwrap().1.paths, vec!["/docs/intro"]);
        let err = run(&whole, json!({"url": "https://example.com/docs"})).unwrap_err();
        assert!(err.message().contains("must start with '/'"), "{err}");
    }

    #[test]
    fn configuration_errors_name_the_rule_and_field() {
        let cases = [
            ("{", "not valid JSON"),
            (r#"{"when": {}}"#, "must be a JSON array"),
            (r#"[1]"#, "rule 1: must be an object"),
            (r#"[{"tags": ["a"]}]"#, "\"when\" is missing"),
            (r#"[{"when": [], "tags": ["a"]}]"#, "\"when\" must be an object"),
            (r#"[{"when": {"a..b": 1}, "tags": ["a"]}]"#, "empty segment"),
            (r#"[{"when": {}, "tags": ["a"], "tag": "b"}]"#, "unknown field(s) \"tag\""),
            (r#"[{"when": {}}]"#, "invalidates nothing"),
            (r#"[{"when": {}, "tags": "a"}]"#, "\"tags\" must be an array"),
            (r#"[{"when": {}, "tags": [1]}]"#, "only strings"),
            (r#"[{"when": {}, "tags": ["post-{slug"]}]"#, "without a matching"),
            (r#"[{"when": {}, "tags": [""]}]"#, "must not be empty"),
            (r#"[{"when": {}, "paths": ["blog/{slug}"]}]"#, "must start with '/'"),
            (r#"[{"when": {}, "paths": ["/blog/{slug}#x"]}]"#, "'#'"),
            (r#"[{"when": {}, "prefixes": ["/blog?{x}"]}]"#, "'?'"),
            (r#"[{"when": {}, "prefixes": ["/blog?x"]}]"#, "'?'"),
            (r#"[{"when": {}, "tags": ["a"], "mode": "purge"}]"#, "\"mode\""),
            (r#"[{"when": {}, "tags": ["a"]}, {"when": {}, "tags": ["a\u0007{x}"]}]"#, "rule 2"),
        ];
        for (json, expected) in cases {
            let err = Mappings::from_json(json).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
            assert!(err.starts_with("WEBHOOK_MAPPINGS"), "{err}");
        }
    }
}

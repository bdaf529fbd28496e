//! What an authenticated webhook call asks to invalidate, read from its query and body.
//!
//! Two body shapes are understood: edge-isr's own (`{"tags": [...], "paths": [...],
//! "prefixes": [...], "mode": "stale"|"expire"}` and the single-string `tag`, `path`, `prefix`)
//! and, when the body has other top-level fields, a CMS's own payload translated by
//! [`Mappings`]. Query parameters (`?tag=a&tag=b&path=/x&prefix=/blog/&mode=expire`) are merged
//! with either, so a CMS that only lets you type a URL can still name what to invalidate.
//! A body with any field outside the edge-isr shape is read only through the mappings (its
//! `tags` field, say, is the CMS's own data, not a list of cache tags).
//!
//! Only POST is accepted, even for query-only calls: the webhook changes state, so it must not
//! be triggerable by a link, a prefetch or a crawler. Such calls are a POST with an empty body.

use super::collect::Collector;
use super::error::WebhookError;
use super::mapping::Mappings;
use super::validate::Kind;
use super::{AuthMethod, Invalidation, InvalidationMode, MAX_BODY_BYTES, SECRET_QUERY_PARAM};
use crate::http::Request;
use serde_json::{Map, Value};
use url::Url;

/// Top-level body fields of the edge-isr shape.
const BODY_FIELDS: [&str; 7] = ["tags", "paths", "prefixes", "tag", "path", "prefix", "mode"];

/// Reads what `req` asks to invalidate.
///
/// Refuses with 405 unless the method is POST, 413 when the body is over [`MAX_BODY_BYTES`],
/// and 400 for malformed JSON, wrong field types, unknown fields or query parameters (unless a
/// mapping matches the payload), invalid values, an empty request or more than
/// [`super::MAX_ITEMS`] entries. Call it only after [`super::authenticate`] succeeded.
pub fn parse_request(req: &Request, mappings: &Mappings) -> Result<Invalidation, WebhookError> {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(WebhookError::MethodNotAllowed(req.method.clone()));
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::PayloadTooLarge(req.body.len()));
    }
    let url = crate::rules::key::parse_url(&req.url).map_err(|_| WebhookError::InvalidUrl)?;
    let mut out = Collector::default();
    read_query(&url, &mut out)?;
    let hint = read_body(&req.body, mappings, &mut out)?;
    out.finish(&hint)
}

/// Query parameters that choose what a call invalidates, or how.
const TARGET_QUERY_PARAMS: [&str; 4] = ["tag", "path", "prefix", "mode"];

/// Refuses query parameters that choose targets or mode (`tag`, `path`, `prefix`, `mode`) when
/// the request was authenticated by `method`, a signature over the body only
/// ([`AuthMethod::covers_query`]): a captured delivery replayed within its window with
/// `?prefix=/&mode=expire` added must not purge the site. Call it after [`super::authenticate`].
pub fn refuse_unsigned_query(req: &Request, method: AuthMethod) -> Result<(), WebhookError> {
    if method.covers_query() {
        return Ok(());
    }
    let url = crate::rules::key::parse_url(&req.url).map_err(|_| WebhookError::InvalidUrl)?;
    let mut names: Vec<String> = Vec::new();
    for (name, _) in url.query_pairs() {
        if TARGET_QUERY_PARAMS.contains(&name.as_ref()) && !names.iter().any(|n| *n == name) {
            names.push(name.into_owned());
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let signature = match method {
        AuthMethod::Sanity => super::SANITY_SIGNATURE_HEADER,
        _ => super::ISR_SIGNATURE_HEADER,
    };
    Err(WebhookError::UnsignedQuery { names, signature })
}

fn read_query(url: &Url, out: &mut Collector) -> Result<(), WebhookError> {
    let mut unknown: Vec<String> = Vec::new();
    for (name, _) in url.query_pairs() {
        let known = matches!(name.as_ref(), "tag" | "path" | "prefix" | "mode") || name == SECRET_QUERY_PARAM;
        if !known && !unknown.iter().any(|u| *u == name) {
            unknown.push(name.into_owned());
        }
    }
    if !unknown.is_empty() {
        return Err(WebhookError::UnknownQueryParameters(unknown));
    }
    for (name, value) in url.query_pairs() {
        let kind = match name.as_ref() {
            "tag" => Kind::Tag,
            "path" => Kind::Path,
            "prefix" => Kind::Prefix,
            "mode" => {
                out.mode(parse_mode("query parameter mode", &value)?);
                continue;
            }
            _ => continue,
        };
        out.add(kind, &format!("query parameter {}", kind.singular()), &value)?;
    }
    Ok(())
}

/// Adds what the body asks for; returns the hint shown if the whole request turns out empty.
fn read_body(body: &[u8], mappings: &Mappings, out: &mut Collector) -> Result<String, WebhookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("the body is empty and the query names nothing".into());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson(e.to_string()))?;
    if let Value::Object(map) = &value {
        let unknown: Vec<String> = map.keys().filter(|k| !BODY_FIELDS.contains(&k.as_str())).cloned().collect();
        if unknown.is_empty() {
            read_edge_isr(map, out)?;
            return Ok("the body names no tags, paths or prefixes".into());
        }
        let matched = mappings.apply(&value, out)?;
        if matched.is_empty() {
            return Err(WebhookError::UnknownFields { fields: unknown, mappings: mappings.len() });
        }
        return Ok(produced_nothing(&matched));
    }
    let matched = mappings.apply(&value, out)?;
    if matched.is_empty() {
        return Err(WebhookError::NotAnObject(json_type(&value)));
    }
    Ok(produced_nothing(&matched))
}

fn produced_nothing(matched: &[usize]) -> String {
    let numbers: Vec<String> = matched.iter().map(usize::to_string).collect();
    format!(
        "the payload matched WEBHOOK_MAPPINGS rule(s) {} but their templates produced nothing \
         (the fields they name are missing, empty, or not strings or numbers)",
        numbers.join(", ")
    )
}

fn read_edge_isr(map: &Map<String, Value>, out: &mut Collector) -> Result<(), WebhookError> {
    for kind in [Kind::Tag, Kind::Path, Kind::Prefix] {
        let list = kind.plural();
        match map.get(list) {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("{list}[{i}]");
                    let Value::String(s) = item else {
                        return Err(WebhookError::WrongType { field, expected: "a string" });
                    };
                    out.add(kind, &field, s)?;
                }
            }
            Some(_) => return Err(WebhookError::WrongType { field: list.into(), expected: "an array of strings" }),
        }
        let single = kind.singular();
        match map.get(single) {
            None => {}
            Some(Value::String(s)) => out.add(kind, single, s)?,
            Some(_) => return Err(WebhookError::WrongType { field: single.into(), expected: "a string" }),
        }
    }
    match map.get("mode") {
        None => {}
        Some(Value::String(s)) => out.mode(parse_mode("mode", s)?),
        Some(_) => return Err(WebhookError::WrongType { field: "mode".into(), expected: "\"stale\" or \"expire\"" }),
    }
    Ok(())
}

fn parse_mode(field: &str, value: &str) -> Result<InvalidationMode, WebhookError> {
    InvalidationMode::parse(value).ok_or_else(|| WebhookError::InvalidValue {
        field: field.into(),
        value: value.into(),
        reason: "must be \"stale\" (serve stale while regenerating, the default) or \"expire\" (render before answering)".into(),
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_ITEMS;
    use super::*;

    const URL: &str = "https://isr.test/api/revalidate";

    fn post(url: &str, body: &str) -> Request {
        let mut r = Request::new("POST", url);
        r.body = body.to_string().into();
        r
    }

    fn parse(url: &str, body: &str) -> Result<Invalidation, WebhookError> {
        parse_request(&post(url, body), &Mappings::default())
    }

    #[test]
    fn edge_isr_body_with_lists_singles_and_mode() {
        let r = parse(URL, r#"{"tags": ["posts", "post-1", "posts"], "tag": "home", "paths": ["/a?x=1"], "path": "/b", "prefixes": ["/blog/"], "prefix": "/docs/", "mode": "expire"}"#).unwrap();
        assert_eq!(r.tags, vec!["posts", "post-1", "home"]);
        assert_eq!(r.paths, vec!["/a?x=1", "/b"]);
        assert_eq!(r.prefixes, vec!["/blog/", "/docs/"]);
        assert_eq!(r.mode, InvalidationMode::Expire);
        let r = parse(URL, r#"{"paths": ["/x"]}"#).unwrap();
        assert_eq!((r.paths.len(), r.mode), (1, InvalidationMode::Stale));
    }

    #[test]
    fn query_parameters_work_alone_and_merge_with_the_body() {
        let r = parse(&format!("{URL}?tag=a&tag=b&path=/x&prefix=/blog/&mode=expire&secret=s"), "").unwrap();
        assert_eq!(r.tags, vec!["a", "b"]);
        assert_eq!(r.paths, vec!["/x"]);
        assert_eq!(r.prefixes, vec!["/blog/"]);
        assert_eq!(r.mode, InvalidationMode::Expire);
        let r = parse(&format!("{URL}?tag=a&path=%2Fp%3Fq%3D1"), r#"{"tags": ["b", "a"]}"#).unwrap();
        assert_eq!(r.tags, vec!["a", "b"], "query first, duplicates dropped");
        assert_eq!(r.paths, vec!["/p?q=1"]);
        let r = parse(&format!("{URL}?tag=a"), "  \n").unwrap();
        assert_eq!(r.tags, vec!["a"]);
    }

    #[test]
    fn only_post_is_accepted() {
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let mut r = post(&format!("{URL}?tag=a"), "");
            r.method = method.into();
            let err = parse_request(&r, &Mappings::default()).unwrap_err();
            assert_eq!(err, WebhookError::MethodNotAllowed(method.into()));
            assert_eq!(err.status(), 405);
        }
    }

    #[test]
    fn oversized_bodies_are_413() {
        let body = format!("{{\"tags\": [\"a\"], \"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        let err = parse(URL, &body).unwrap_err();
        assert_eq!(err.status(), 413);
        let exact = format!("{{\"tag\": \"{}\"}}", "x".repeat(200));
        assert!(parse(URL, &exact).is_ok());
    }

    #[test]
    fn malformed_json_and_wrong_types_are_400_naming_the_field() {
        let err = parse(URL, "{tags: [}").unwrap_err();
        assert!(err.message().starts_with("body is not valid JSON: "), "{err}");
        assert_eq!(err.status(), 400);
        let cases = [
            (r#"{"tags": "posts"}"#, "field tags must be an array of strings"),
            (r#"{"tags": ["a", 1]}"#, "field tags[1] must be a string"),
            (r#"{"paths": null}"#, "field paths must be an array of strings"),
            (r#"{"tag": ["a"]}"#, "field tag must be a string"),
            (r#"{"prefix": 3}"#, "field prefix must be a string"),
            (r#"{"tag": "a", "mode": 1}"#, "field mode must be"),
            (r#"{"tag": "a", "mode": "purge"}"#, "mode \"purge\": must be \"stale\""),
            (r#"{"paths": ["blog"]}"#, "paths[0] \"blog\": a path must start with '/'"),
            (r#"{"prefix": "/a?b"}"#, "prefix \"/a?b\": a prefix must not contain '?'"),
            (r#"{"tag": ""}"#, "tag \"\": a tag must not be empty"),
        ];
        for (body, expected) in cases {
            let err = parse(URL, body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.message().contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn unknown_fields_and_parameters_are_named() {
        let err = parse(URL, r#"{"tgas": ["a"], "tag": "b"}"#).unwrap_err();
        assert_eq!(err, WebhookError::UnknownFields { fields: vec!["tgas".into()], mappings: 0 });
        assert!(err.message().contains("\"tgas\""));
        let err = parse(&format!("{URL}?tags=a&utm=1&tags=b"), "").unwrap_err();
        assert_eq!(err, WebhookError::UnknownQueryParameters(vec!["tags".into(), "utm".into()]));
        let err = parse(&format!("{URL}?mode=hard&tag=a"), "").unwrap_err();
        assert!(err.message().contains("query parameter mode \"hard\""), "{err}");
        let err = parse(URL, "[1, 2]").unwrap_err();
        assert_eq!(err, WebhookError::NotAnObject("array"));
    }

    #[test]
    fn empty_requests_are_400() {
        for body in ["", "{}", r#"{"tags": []}"#, r#"{"mode": "expire"}"#] {
            let err = parse(URL, body).unwrap_err();
            assert!(matches!(err, WebhookError::NothingToInvalidate(_)), "{body}: {err:?}");
            assert!(err.message().starts_with("nothing to invalidate"));
        }
    }

    #[test]
    fn too_many_items_states_the_limit() {
        let tags: Vec<String> = (0..MAX_ITEMS).map(|i| format!("\"t{i}\"")).collect();
        let body = format!("{{\"tags\": [{}], \"path\": \"/x\"}}", tags.join(","));
        let err = parse(URL, &body).unwrap_err();
        assert_eq!(err, WebhookError::TooManyItems(MAX_ITEMS + 1));
        assert!(err.message().contains("256"));
        let body = format!("{{\"tags\": [{}]}}", tags.join(","));
        assert_eq!(parse(URL, &body).unwrap().tags.len(), MAX_ITEMS);
    }

    #[test]
    fn cms_payloads_go_through_mappings() {
        let m = Mappings::from_json(
            r#"[{"when": {"_type": "post"}, "tags": ["post-{slug.current}", "posts"], "paths": ["/blog/{slug.current}"]},
                {"when": {"model": "post"}, "tags": ["post-{entry.slug}"], "mode": "expire"},
                {"when": {"sys.contentType.sys.id": "post"}, "paths": ["/blog/{fields.slug.en-US}"]}]"#,
        )
        .unwrap();
        let sanity = post(URL, r#"{"_type":"post","slug":{"current":"hello"},"tags":[{"_ref":"x"}]}"#);
        let r = parse_request(&sanity, &m).unwrap();
        assert_eq!(r.tags, vec!["post-hello", "posts"], "edge-isr fields of a CMS payload are not read");
        assert_eq!(r.paths, vec!["/blog/hello"]);

        let strapi = post(&format!("{URL}?tag=extra"), r#"{"event":"entry.update","model":"post","entry":{"slug":"hello"}}"#);
        let r = parse_request(&strapi, &m).unwrap();
        assert_eq!(r.tags, vec!["extra", "post-hello"]);
        assert_eq!(r.mode, InvalidationMode::Expire);

        let contentful = post(URL, r#"{"sys":{"contentType":{"sys":{"id":"post"}}},"fields":{"slug":{"en-US":"hello"}}}"#);
        assert_eq!(parse_request(&contentful, &m).unwrap().paths, vec!["/blog/hello"]);

        let other = post(URL, r#"{"_type":"author","slug":{"current":"x"}}"#);
        let err = parse_request(&other, &m).unwrap_err();
        assert_eq!(err, WebhookError::UnknownFields { fields: vec!["_type".into(), "slug".into()], mappings: 3 });
        assert!(err.message().contains("none of the 3 WEBHOOK_MAPPINGS rules matched"));

        let no_slug = post(URL, r#"{"sys":{"contentType":{"sys":{"id":"post"}}},"fields":{}}"#);
        let err = parse_request(&no_slug, &m).unwrap_err();
        assert!(err.message().contains("matched WEBHOOK_MAPPINGS rule(s) 3"), "{err}");
    }

    #[test]
    fn random_requests_never_panic() {
        use super::super::authenticate;
        let m = Mappings::from_json(r#"[{"when": {"a": 1}, "tags": ["t-{b}"], "paths": ["/{b}?q={c}"], "prefixes": ["{c}"]}]"#).unwrap();
        let pieces = [
            "{", "}", "[", "]", ",", ":", "\"tags\"", "\"paths\"", "\"prefix\"", "\"mode\"", "\"a\"", "\"b\"", "\"c\"",
            "1", "\"/x\"", "\"expire\"", "null", "\"\\u0000\"", "\"#\"", "\"é?\"", " ", "\"",
        ];
        let headers = ["t=1,v1=", "t=1700000000000,v1=x", "Bearer s", "x", "", "t=,v1=,", "é"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..3000 {
            let body: String = (0..next(24)).map(|_| pieces[next(pieces.len())]).collect();
            let mut req = post(&format!("{URL}?tag={}", pieces[next(pieces.len())]), &body);
            for name in ["authorization", "x-isr-signature", "sanity-webhook-signature", "x-contentful-signature", "x-contentful-timestamp", "x-contentful-signed-headers"] {
                if next(2) == 0 {
                    req.headers.append(name, headers[next(headers.len())]);
                }
            }
            let _ = authenticate(&req, "s", 1_700_000_000_000);
            let _ = parse_request(&req, &m);
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(URL, &deep).is_err());
        let many_dups = format!("{{\"tags\": [{}]}}", vec!["\"a\""; 10_000].join(","));
        assert_eq!(parse(URL, &many_dups).unwrap().tags, vec!["a"]);
        for body in ["\u{feff}{}", "\"\\ud800\"", "1e999999", "{\"tag\": \"\\u0000\"}", "\u{0}"] {
            let _ = parse(URL, body);
        }
        let mut bad_utf8 = post(URL, "");
        bad_utf8.body = vec![b'{', 0xff, b'}'].into();
        assert!(matches!(parse_request(&bad_utf8, &Mappings::default()), Err(WebhookError::InvalidJson(_))));
        assert_eq!(parse_request(&post("no url", "{}"), &Mappings::default()), Err(WebhookError::InvalidUrl));
    }
}

//! A tiny headless CMS: JSON documents from a directory, for the demo site and the tests of
//! template routes.
//!
//! With a content directory set (`--content DIR`, or [`crate::TestOrigin::set_content_dir`]):
//!
//! * `GET /api/{collection}` → `{"{collection}": [item, ...]}`: every `DIR/{collection}/*.json`,
//!   newest `date` first (then by slug), each with its `slug` (the file name) filled in;
//! * `GET /api/{collection}/{slug}` → `DIR/{collection}/{slug}.json` with its `slug`, or a JSON
//!   404.
//!
//! Files are read on every request, so editing one changes what the next render sees. The
//! `fail` and `stall_ms` behaviours of the control API apply to these paths as to pages.

use crate::http::Response;
use std::path::Path;

/// Answers `path` from `dir`, or `None` when the path is not under `/api/`.
pub(crate) fn answer(dir: &Path, path: &str) -> Option<Response> {
    let rest = path.strip_prefix("/api/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    Some(match parts.as_slice() {
        [collection] if valid(collection) => listing(dir, collection),
        [collection, slug] if valid(collection) && valid(slug) => document(dir, collection, slug),
        _ => not_found(path),
    })
}

fn json(status: u16, value: &serde_json::Value) -> Response {
    let mut resp = Response::new(status, "application/json", value.to_string().into_bytes());
    resp.set_header("cache-control", "no-store");
    resp
}

fn not_found(what: &str) -> Response {
    json(404, &serde_json::json!({ "error": format!("no content at {what}") }))
}

fn read_item(file: &Path, slug: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("slug").or_insert_with(|| slug.into());
    }
    Ok(value)
}

fn document(dir: &Path, collection: &str, slug: &str) -> Response {
    let file = dir.join(collection).join(format!("{slug}.json"));
    if !file.is_file() {
        return not_found(&format!("/api/{collection}/{slug}"));
    }
    match read_item(&file, slug) {
        Ok(v) => json(200, &v),
        Err(e) => json(500, &serde_json::json!({ "error": e })),
    }
}

fn listing(dir: &Path, collection: &str) -> Response {
    let Ok(entries) = std::fs::read_dir(dir.join(collection)) else {
        return not_found(&format!("/api/{collection}"));
    };
    let mut items = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(slug) = path.file_stem().and_then(|s| s.to_str()).map(String::from) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read_item(&path, &slug) {
            Ok(v) => items.push(v),
            Err(e) => return json(500, &serde_json::json!({ "error": e })),
        }
    }
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    items.sort_by(|a, b| text(b, "date").cmp(&text(a, "date")).then(text(a, "slug").cmp(&text(b, "slug"))));
    json(200, &serde_json::json!({ collection: items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn documents_and_listings_come_from_the_directory() {
        let dir = std::env::temp_dir().join(format!("test-origin-content-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("posts")).unwrap();
        std::fs::write(dir.join("posts/a.json"), r#"{"title": "A", "date": "2026-01-01"}"#).unwrap();
        std::fs::write(dir.join("posts/b.json"), r#"{"title": "B", "date": "2026-02-01"}"#).unwrap();
        let one = answer(&dir, "/api/posts/a").unwrap();
        assert_eq!(one.status, 200);
        assert_eq!(body(&one)["slug"], "a");
        let all = body(&answer(&dir, "/api/posts").unwrap());
        assert_eq!(all["posts"][0]["slug"], "b", "newest first");
        assert_eq!(answer(&dir, "/api/posts/zz").unwrap().status, 404);
        assert_eq!(answer(&dir, "/api/posts/..%2Fx").unwrap().status, 404);
        assert_eq!(answer(&dir, "/api/../etc").unwrap().status, 404);
        assert!(answer(&dir, "/blog/a").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

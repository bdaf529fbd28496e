//! The JavaScript the wasm module carries (`src/cloudflare/js.rs`'s inline snippet), run in
//! Node against what the Rust side means by it. The rest of the suite sees the snippet's work
//! only as the worker's answers; here each function is called with chosen inputs, including
//! the ones no answer of the demo site makes (a header `Headers` refuses, a value without a
//! number).
//!
//! Node's `Headers` and `Response` are the Fetch standard's, as the Workers runtime's are.

use crate::support::{node_path, Suite};
use edge_isr::http::header_text::{self, Split};
use edge_isr::http::Headers;
use std::path::Path;
use std::process::Command;

pub const TESTS: &[crate::Test] = &[("snippet_answers_from_a_kept_set_as_the_rust_side_means", snippet_answers_from_a_kept_set_as_the_rust_side_means)];

/// The snippet's source, written as a module Node can import.
fn snippet_module(root: &Path) -> std::path::PathBuf {
    let rust = std::fs::read_to_string(root.join("src/cloudflare/js.rs")).expect("src/cloudflare/js.rs");
    let start = rust.find("inline_js = r#\"").expect("the inline_js snippet") + "inline_js = r#\"".len();
    let end = start + rust[start..].find("\"#)]").expect("the snippet's end");
    let dir = root.join("target/e2e/snippets");
    std::fs::create_dir_all(&dir).expect("target/e2e/snippets");
    let path = dir.join("snippet.mjs");
    std::fs::write(&path, &rust[start..end]).expect("snippet.mjs");
    path
}

/// What Node made of each case: `null` when `keep_headers` refused the set, else the answer's
/// status and headers (as `[name, value]` pairs, in `Headers`' order).
fn run_in_node(root: &Path, cases: &serde_json::Value) -> serde_json::Value {
    let module = snippet_module(root);
    let driver = r#"
const { keep_headers, response_from_kept } = await import(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
const out = cases.map(([number, kept, first, second, status]) => {
  if (!keep_headers(number, kept)) return null;
  const r = response_from_kept(null, status, number, first, second);
  if (r instanceof Error) return { error: r.message };
  return { status: r.status, headers: [...r.headers] };
});
console.log(JSON.stringify(out));
"#;
    let output = Command::new("node")
        .env("PATH", node_path(root))
        .args(["--input-type=module", "-e", driver])
        .arg(module.to_str().expect("a UTF-8 path"))
        .arg(cases.to_string())
        .output()
        .expect("node (run `make setup`, which installs it under node_modules/.bin)");
    assert!(output.status.success(), "node failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the driver's JSON")
}

/// `headers` as `Headers` holds them: names lower-case, sorted, repeated names joined by ", ".
fn as_fetch_headers(headers: &Headers) -> Vec<(String, String)> {
    let mut joined: Vec<(String, String)> = Vec::new();
    let mut pairs = headers.clone().into_pairs();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in pairs {
        match joined.last_mut() {
            Some((last, v)) if *last == name && name != "set-cookie" => *v = format!("{v}, {value}"),
            _ => joined.push((name, value)),
        }
    }
    joined
}

fn split(pairs: &[(&str, &str)]) -> Split {
    header_text::split(&pairs.iter().copied().collect()).expect("no line break").expect("at most two per-answer entries")
}

fn number(n: Option<u64>) -> f64 {
    n.map_or(-1.0, |n| n as f64)
}

fn snippet_answers_from_a_kept_set_as_the_rust_side_means(_: &Suite) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hit = [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "public, max-age=0, must-revalidate"),
        ("etag", "\"6df6ae1ddd41b9ed\""),
        ("age", "69"),
        ("x-isr-cache", "HIT"),
        ("server-timing", "cache;desc=HIT, kv;dur=13"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ];
    let sets = [
        split(&hit),
        // The same set, other numbers (the kept object is reused, not changed).
        split(&[("content-type", "text/html; charset=utf-8"), ("cache-control", "public, max-age=0, must-revalidate"), ("etag", "\"6df6ae1ddd41b9ed\""), ("age", "0"), ("x-isr-cache", "HIT"), ("server-timing", "cache;desc=HIT, kv;dur=0"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]),
        // Values without a trailing number, or with leading zeros, and one per-answer entry.
        split(&[("etag", "\"1\""), ("server-timing", "cache;desc=STALE")]),
        split(&[("age", "007")]),
        // No per-answer entry at all.
        split(&[("etag", "\"1\"")]),
    ];
    let mut cases: Vec<serde_json::Value> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!([i, s.kept, number(s.numbers[0]), number(s.numbers[1]), if i == 3 { 304 } else { 200 }]))
        .collect();
    // A set `Headers` refuses (a space in a name): not kept.
    cases.push(serde_json::json!([9, "bad name\nx\n\0", -1.0, -1.0, 200]));
    let out = run_in_node(root, &serde_json::Value::Array(cases));
    for (i, s) in sets.iter().enumerate() {
        let want: Vec<(String, String)> = as_fetch_headers(&s.headers());
        let got: Vec<(String, String)> = serde_json::from_value(out[i]["headers"].clone()).unwrap_or_else(|_| panic!("case {i}: {}", out[i]));
        assert_eq!(got, want, "case {i}: {s:?}");
        assert_eq!(out[i]["status"], if i == 3 { 304 } else { 200 });
    }
    assert!(out[sets.len()].is_null(), "a refused set is not kept: {}", out[sets.len()]);
    // The first answer is exactly the page's headers again.
    assert_eq!(as_fetch_headers(&sets[0].headers()), as_fetch_headers(&hit.iter().copied().collect()));
}

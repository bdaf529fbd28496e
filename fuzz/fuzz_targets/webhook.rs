//! Revalidation webhook: any request through `authenticate` and `parse_request`.
//!
//! Input (see `src/lib.rs`): a first line `<METHOD> <URL>`, header lines, an empty line and
//! the raw body. The seeds carry valid credentials for [`SECRET`] at [`NOW_MS`] (bearer,
//! header, query, edge-isr, Sanity and Contentful signatures), so mutations start from
//! requests that get through.
//! Invariants:
//! - no panic, and every error has the status of its kind and a message;
//! - nothing is authenticated under a secret the request does not carry: [`OTHER_SECRET`]
//!   never appears in an input nor signs one, so `authenticate` with it must always fail;
//! - under [`SECRET`], a secret credential is accepted only if the secret is in that place,
//!   and an edge-isr or Sanity signature only if an independent HMAC check agrees;
//! - an empty secret refuses everything;
//! - an `Ok` from `parse_request` has 1..=`MAX_ITEMS` entries, each valid (tags per
//!   `is_valid_tag`; paths and prefixes start with `/`, at most `MAX_PATH_CHARS` characters,
//!   no control characters, no `#`, prefixes no `?`), trimmed and distinct.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use edge_isr::http::Request;
use edge_isr::rules::policy::is_valid_tag;
use edge_isr::webhook::{
    authenticate, parse_request, AuthMethod, Mappings, WebhookError, ISR_SIGNATURE_HEADER, MAX_BODY_BYTES, MAX_ITEMS,
    MAX_PATH_CHARS, REPLAY_WINDOW_S, SANITY_SIGNATURE_HEADER, SECRET_HEADER,
};
use edge_isr_fuzz::parse_message;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::sync::OnceLock;

/// The configured `REVALIDATE_SECRET` the seeds are signed with (64 characters, as Contentful
/// requires; the same as the Contentful vectors in `src/webhook/contentful.rs`).
const SECRET: &str = "q7Hn2bV9xK4mP0sL8dR3tY6wZ1cF5gJ2hN7vB4kM9pQ3rT8xW0yE6uI1oA5sD2fG";
/// A secret no input carries: nothing may authenticate under it.
const OTHER_SECRET: &str = "Zx0-never-sent-by-any-seed-7c41e9b2";
/// The worker's clock for every check (the seeds' signing time).
const NOW_MS: u64 = 1_700_000_000_000;

/// The README's Sanity, Contentful and Strapi rules.
const MAPPINGS: &str = r#"[
  {"when": {"_type": "post"}, "tags": ["post-{slug.current}", "posts"], "paths": ["/blog/{slug.current}"]},
  {"when": {"sys.contentType.sys.id": "post"}, "tags": ["post-{fields.slug.en-US}", "posts"], "prefixes": ["/blog/{fields.slug.en-US}/"]},
  {"when": {"model": "post"}, "tags": ["post-{entry.slug}", "posts"], "paths": ["/blog/{entry.slug}?page={entry.id}"], "mode": "expire"}
]"#;

fn mappings() -> &'static Mappings {
    static M: OnceLock<Mappings> = OnceLock::new();
    M.get_or_init(|| Mappings::from_json(MAPPINGS).expect("fuzz mappings are valid"))
}

fn hmac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(t, v1)` candidates of a `t=..,v1=..` header, read loosely (any separators).
fn candidates(value: &str) -> (Vec<&str>, Vec<&str>) {
    let parts = value.split([',', ' ']).map(str::trim);
    let ts = parts.clone().filter_map(|p| p.strip_prefix("t=")).map(str::trim).collect();
    let sigs = parts.filter_map(|p| p.strip_prefix("v1=")).map(str::trim).collect();
    (ts, sigs)
}

/// Independent check of an edge-isr signature: some `t` within the window and some `v1`
/// equal (hex, any case) to HMAC(secret, "<t>.<body>").
fn isr_signature_is_valid(req: &Request) -> bool {
    let Some(value) = req.headers.get(ISR_SIGNATURE_HEADER) else { return false };
    let (ts, sigs) = candidates(value);
    ts.iter().any(|t| {
        let Ok(t_s) = t.parse::<u64>() else { return false };
        let expected = hex(&hmac(SECRET, &[t.as_bytes(), b".", &req.body]));
        t_s.abs_diff(NOW_MS / 1000) <= REPLAY_WINDOW_S && sigs.iter().any(|s| s.eq_ignore_ascii_case(&expected))
    })
}

/// Independent check of a Sanity signature: milliseconds within the window, base64url MAC.
fn sanity_signature_is_valid(req: &Request) -> bool {
    let Some(value) = req.headers.get(SANITY_SIGNATURE_HEADER) else { return false };
    let (ts, sigs) = candidates(value);
    !req.body.is_empty()
        && ts.iter().any(|t| {
            let Ok(t_ms) = t.parse::<u64>() else { return false };
            let expected = URL_SAFE_NO_PAD.encode(hmac(SECRET, &[t_ms.to_string().as_bytes(), b".", &req.body]));
            t_ms.abs_diff(NOW_MS) <= REPLAY_WINDOW_S * 1000 && sigs.contains(&expected.as_str())
        })
}

fn query_secrets(url: &str) -> Vec<String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().filter(|(k, _)| k == "secret").map(|(_, v)| v.into_owned()).collect())
        .unwrap_or_default()
}

fn check_auth(req: &Request) {
    assert_eq!(authenticate(req, "", NOW_MS), Err(WebhookError::SecretNotConfigured));

    let other = authenticate(req, OTHER_SECRET, NOW_MS);
    assert!(other.is_err(), "authenticated as {other:?} under a secret the request does not carry");

    match authenticate(req, SECRET, NOW_MS) {
        Ok(AuthMethod::Bearer) => {
            let value = req.headers.get("authorization").unwrap_or("");
            assert!(value.contains(SECRET), "Bearer accepted without the secret: {value:?}");
        }
        Ok(AuthMethod::SecretHeader) => {
            let value = req.headers.get(SECRET_HEADER).unwrap_or("");
            assert!(value.contains(SECRET), "{SECRET_HEADER} accepted without the secret: {value:?}");
        }
        Ok(AuthMethod::QueryParameter) => {
            assert_eq!(query_secrets(&req.url), vec![SECRET.to_string()], "?secret= accepted: {:?}", req.url);
        }
        Ok(AuthMethod::IsrSignature) => assert!(isr_signature_is_valid(req), "edge-isr signature accepted"),
        Ok(AuthMethod::Sanity) => assert!(sanity_signature_is_valid(req), "Sanity signature accepted"),
        Ok(AuthMethod::Contentful) => {
            // Covered by the OTHER_SECRET check: the acceptance depends on the secret.
            assert!(req.body.len() <= MAX_BODY_BYTES);
        }
        Err(e) => {
            assert_eq!(e.status(), 401, "{e:?}");
            assert!(!e.message().contains(SECRET), "an error message echoes the secret");
            let _ = e.to_response();
        }
    }
}

fn check_path(value: &str, is_prefix: bool) {
    assert!(value.starts_with('/'), "{value:?}");
    assert!(value.chars().count() <= MAX_PATH_CHARS, "{value:?}");
    assert!(!value.chars().any(char::is_control), "{value:?}");
    assert!(!value.contains('#'), "{value:?}");
    assert!(!is_prefix || !value.contains('?'), "prefix with a query: {value:?}");
    assert_eq!(value.trim(), value);
}

fn distinct(list: &[String]) -> bool {
    list.iter().enumerate().all(|(i, v)| !list[..i].contains(v))
}

fn check_parse(req: &Request) {
    match parse_request(req, mappings()) {
        Ok(inv) => {
            assert!((1..=MAX_ITEMS).contains(&inv.len()), "{} entries", inv.len());
            for tag in &inv.tags {
                assert!(is_valid_tag(tag), "invalid tag {tag:?}");
                assert_eq!(tag.trim(), tag);
            }
            inv.paths.iter().for_each(|p| check_path(p, false));
            inv.prefixes.iter().for_each(|p| check_path(p, true));
            assert!(distinct(&inv.tags) && distinct(&inv.paths) && distinct(&inv.prefixes), "{inv:?}");
            assert!(req.method.eq_ignore_ascii_case("POST"));
            assert!(req.body.len() <= MAX_BODY_BYTES);
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 413), "{e:?}");
            let response = e.to_response();
            let json: serde_json::Value = serde_json::from_slice(&response.body).expect("error answer is JSON");
            assert!(json["error"].is_string());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let msg = parse_message(data);
    let (method, url) = msg.first_line.split_once(' ').unwrap_or((msg.first_line.as_str(), ""));
    let mut req = Request::new(method, url.trim());
    req.headers = msg.headers;
    req.body = msg.body.into();
    check_auth(&req);
    check_parse(&req);
});

//! Workers Cache mode (`WORKERS_CACHE`), end to end. The local runtime (`wrangler dev`,
//! miniflare) has no Workers Cache and no `ctx.cache` (as of late 2026): `cache = { enabled =
//! true }` is accepted and does nothing. So these tests check what the worker tells the cache
//! (its headers) and what it would purge, through the clearly named TEST DOUBLE of `ctx.cache`
//! (`WORKERS_CACHE_TEST_DOUBLE = "record"`: purge calls recorded, with Workers Cache's limits,
//! and read back from the e2e-only route `/__isr/test/tier-purges`). The mode-on tests run in a
//! `wrangler dev` of their own, with the coordinator Durable Object bound (as `wrangler.toml`
//! has it): purges are planned there (`/record` carries them, `/purge/take` and `/purge/done`
//! lease and report them) and its outlook lets HITs carry the page's whole remaining
//! freshness; the mode-off test runs in the main suite.

use crate::support::{poll, Setup, Suite};
use crate::Test;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Tests of the main suite (mode off, the default).
pub const MODE_OFF: &[Test] = &[("tier_mode_off_gives_shared_caches_nothing", tier_mode_off_gives_shared_caches_nothing)];

/// Tests run on the suite [`start`] makes (mode on).
pub const TESTS: &[Test] = &[
    ("tier_mode_on_headers_hit_kept_everything_else_not", tier_mode_on_headers_hit_kept_everything_else_not),
    ("tier_mode_on_webhook_purges_through_the_test_double", tier_mode_on_webhook_purges_through_the_test_double),
    ("tier_mode_on_a_burst_of_publishes_is_batched_within_the_limits", tier_mode_on_a_burst_of_publishes_is_batched_within_the_limits),
];

/// Starts edge-isr with the mode on, `cache = { enabled = true }` in its config (which the
/// local runtime accepts and ignores), and the recording test double of `ctx.cache`.
pub fn start(root: &Path) -> Result<Suite, String> {
    let id = std::process::id();
    let setup = Setup {
        tag: "-tier".into(),
        replace: vec![
            ("name = \"edge-isr\"".into(), format!("name = \"edge-isr-e2e-tier-{id}\"")),
            ("\"edge-isr-invalidations\"".into(), format!("\"edge-isr-invalidations-e2e-tier-{id}\"")),
            ("# cache = { enabled = true }".into(), "cache = { enabled = true }".into()),
        ],
        vars: vec![("WORKERS_CACHE".into(), "on".into()), ("WORKERS_CACHE_TEST_DOUBLE".into(), "record".into())],
        ..Default::default()
    };
    Suite::start_with(root, &setup)
}

/// The purge calls the test double recorded so far.
fn recorded(s: &Suite) -> Vec<Value> {
    let r = s.get("/__isr/test/tier-purges");
    assert_eq!(r.status, 200, "the test double's route: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body));
    v["purges"].as_array().cloned().unwrap_or_default()
}

fn tags_of(purge: &Value) -> Vec<String> {
    purge["request"]["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect()
}

fn tier_seconds(value: &str) -> Option<u64> {
    value.split(',').map(str::trim).find_map(|d| d.strip_prefix("max-age=")).and_then(|n| n.parse().ok())
}

fn tier_mode_off_gives_shared_caches_nothing(s: &Suite) {
    s.behave("/tier-off", json!({ "headers": { "cache-tag": "tier-off", "cache-control": "s-maxage=3600" } }));
    assert_eq!(s.get("/tier-off").state(), "MISS");
    let hit = s.get("/tier-off");
    assert_eq!(hit.state(), "HIT");
    assert_eq!(hit.header("cloudflare-cdn-cache-control"), "", "{:?}", hit.headers);
    assert_eq!(hit.header("cache-tag"), "");
    assert!(s.get("/__isr/test/tier-purges").state() != "", "no test route with the mode off: an ordinary page");
}

fn tier_mode_on_headers_hit_kept_everything_else_not(s: &Suite) {
    s.behave("/tier/a", json!({ "headers": { "cache-tag": "tier-posts,Tier-Mixed", "cache-control": "s-maxage=300" } }));
    let miss = s.get("/tier/a");
    assert_eq!(miss.state(), "MISS");
    assert_eq!(miss.header("cloudflare-cdn-cache-control"), "no-store", "{:?}", miss.headers);
    let hit = poll("a HIT of /tier/a", Duration::from_secs(10), || Some(s.get("/tier/a")).filter(|r| r.state() == "HIT"));
    let tier = hit.header("cloudflare-cdn-cache-control");
    let seconds = tier_seconds(tier).unwrap_or_else(|| panic!("no max-age for the tier: {tier:?}"));
    // The coordinator is bound and its purge planner keeps up: the copy may live the page's
    // whole remaining freshness (300 s from its render, less the seconds since), and be served
    // stale while the worker is asked again (without it, 13 s at most and never stale).
    let age: u64 = hit.header("age").parse().unwrap_or(0);
    assert!(seconds > 13 && seconds <= 300 - age && seconds + 15 >= 300 - age, "{tier} (age {age})");
    assert!(tier.contains("stale-while-revalidate=60") && tier.contains("stale-if-error="), "{tier}");
    let tags: Vec<&str> = hit.header("cache-tag").split(',').collect();
    assert!(tags[0].starts_with("isr-p-"), "the page's path tag first: {tags:?}");
    assert!(tags.contains(&"tier-posts"), "a conforming tag as it is: {tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("isr-h-")) && !tags.contains(&"Tier-Mixed"), "a tag with capitals hashed: {tags:?}");
    assert!(hit.header("cache-control").contains("max-age=0") || hit.header("cache-control").contains("s-maxage=0"), "browsers: {}", hit.header("cache-control"));
    let post = s.send("POST", "/tier/a", &[], Some("x"));
    assert_eq!(post.state(), "BYPASS");
    assert_eq!(post.header("cloudflare-cdn-cache-control"), "no-store");
    s.revalidate(&json!({ "tags": ["tier-posts"] }));
    let stale = s.get("/tier/a");
    assert_eq!(stale.state(), "STALE");
    assert_eq!(stale.header("cloudflare-cdn-cache-control"), "no-store");
    assert_eq!(stale.header("cache-tag"), "");
}

fn tier_mode_on_webhook_purges_through_the_test_double(s: &Suite) {
    let before = recorded(s).len();
    let answer = s.revalidate(&json!({ "tags": ["tier-one", "Tier-One"], "paths": ["/tier/one"], "prefixes": ["/tier-section/"] }));
    assert_eq!(answer["tier_purge"], json!("coordinator"), "planned by the coordinator: {answer}");
    assert!(answer["log_seq"].as_u64().is_some(), "{answer}");
    let at = answer["at"].as_u64().unwrap_or(0);
    let purge = poll("the webhook's purge", Duration::from_secs(15), || recorded(s).into_iter().skip(before).find(|p| tags_of(p).contains(&"tier-one".to_string())));
    assert!(purge["refused"].is_null(), "{purge}");
    let tags = tags_of(&purge);
    assert_eq!(tags.len(), 3, "tier-one, Tier-One hashed, the path tag: {tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("isr-h-")) && tags.iter().any(|t| t.starts_with("isr-p-")), "{tags:?}");
    assert_eq!(purge["request"]["pathPrefixes"], json!(["/tier-section/"]));
    if at > 0 {
        let sent = purge["at"].as_u64().unwrap_or(0);
        assert!(sent >= at + 2_000, "sent {} ms after the webhook: not before every isolate knows", sent.saturating_sub(at));
    }
}

fn tier_mode_on_a_burst_of_publishes_is_batched_within_the_limits(s: &Suite) {
    let before = recorded(s).len();
    let started = Instant::now();
    for i in 0..30 {
        let answer = s.revalidate(&json!({ "tags": [format!("tier-burst-{i}"), "tier-burst"] }));
        assert_eq!(answer["tier_purge"], json!("coordinator"), "{answer}");
    }
    let webhooks = started.elapsed();
    let all = poll("every burst tag purged", Duration::from_secs(40), || {
        let new: Vec<Value> = recorded(s).into_iter().skip(before).collect();
        let purged = |tag: &str| new.iter().any(|p| p["request"]["purgeEverything"] == json!(true) || tags_of(p).iter().any(|t| t == tag));
        (0..30).all(|i| purged(&format!("tier-burst-{i}"))).then_some(new)
    });
    assert!(all.iter().all(|p| p["refused"].is_null()), "nothing refused by the limits: {all:?}");
    assert!(all.iter().all(|p| tags_of(p).len() + p["request"]["pathPrefixes"].as_array().map_or(0, |a| a.len()) <= 100));
    assert!(all.len() < 30, "{} purge calls for 30 webhooks in {webhooks:?}: batched", all.len());
}

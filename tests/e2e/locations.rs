//! Two locations on one machine: the suite's worker (location A, home of the coordinator) and a
//! second `wrangler dev --env location-b` with its own KV (its own `--persist-to`: KV never
//! reaches it, like a far location before propagation) that binds A's coordinator through the
//! run's dev registry. Each test starts its own second location and stops it.

use crate::support::{let_age, poll, Location, Resp, Suite, SECRET};
use crate::Test;
use base64::Engine as _;
use serde_json::json;
use std::time::{Duration, Instant};

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("locations_a_publish_through_a_is_stale_in_b_within_2_s_then_new", a_publish_through_a_is_stale_in_b_within_2_s_then_new),
    ("locations_one_regeneration_across_a_and_b", one_regeneration_across_a_and_b),
    ("locations_without_the_coordinator_b_keeps_its_own_kv", without_the_coordinator_b_keeps_its_own_kv),
];

/// The bound the issue asks for (the design's is 1.5 s; local requests add a few ms).
const BOUND: Duration = Duration::from_secs(2);
const SHORT: Duration = Duration::from_secs(10);

fn at(s: &Suite, b: &Location, path: &str) -> Resp {
    s.send_at(b, "GET", path, &[], None)
}

fn start(s: &Suite, label: &str, coordinated: bool) -> Location {
    s.start_location(label, coordinated).unwrap_or_else(|e| panic!("starting location {label}: {e}"))
}

/// Stores `path` in A and in B (each renders it once: B cannot see A's KV), both HIT.
fn stored_in_both(s: &Suite, b: &Location, path: &str) {
    assert_eq!(s.get(path).state(), "MISS");
    poll("A serves its stored copy", SHORT, || (s.get(path).state() == "HIT").then_some(()));
    assert_eq!(at(s, b, path).state(), "MISS", "B has its own KV");
    poll("B serves its stored copy", SHORT, || (at(s, b, path).state() == "HIT").then_some(()));
    assert_eq!(s.stats(path).renders, 2);
}

fn a_publish_through_a_is_stale_in_b_within_2_s_then_new(s: &Suite) {
    let b = start(s, "b-publish", true);
    let p = "/e2e/locations/publish";
    s.behave(p, json!({"headers": {"cache-tag": "loc-publish"}}));
    stored_in_both(s, &b, p);
    s.behave(p, json!({"headers": {"cache-tag": "loc-publish"}, "content": "v2"}));
    // B's copy of the log was just refreshed by these HITs: the worst moment for a publish.
    assert_eq!(at(s, &b, p).state(), "HIT");
    let answer = s.revalidate(&json!({"tags": ["loc-publish"]}));
    let published = Instant::now();
    assert!(answer["log_seq"].as_u64().is_some(), "recorded in the coordinator: {answer}");
    let stale = poll("B answers STALE", BOUND, || {
        let r = at(s, &b, p);
        (r.state() != "HIT").then_some(r)
    });
    let after = published.elapsed();
    println!("    B served {} {after:?} after the webhook's 200", stale.state());
    assert_eq!(stale.state(), "STALE", "{stale:?}");
    assert!(stale.body.contains("content=v1"), "the stored page, at once");
    let fresh = poll("B serves the new content", SHORT, || {
        let r = at(s, &b, p);
        (r.state() == "HIT" && r.body.contains("content=v2")).then_some(r)
    });
    assert!(fresh.render() >= 3);
}

fn one_regeneration_across_a_and_b(s: &Suite) {
    let b = start(s, "b-single-flight", true);
    let p = "/e2e/locations/single-flight";
    s.behave(p, json!({"headers": {"cache-tag": "loc-sf"}}));
    stored_in_both(s, &b, p);
    // The regeneration render takes 1.2 s (under the suite's REGENERATE_TIMEOUT_MS of 2 s).
    s.behave(p, json!({"headers": {"cache-tag": "loc-sf"}, "content": "v2", "stall_ms": 1200}));
    // Let B's copy of the log age past 1.5 s, so that B refreshes it before its next answer
    // (this waits for wall-clock time, what the step is about).
    let_age(Duration::from_millis(1600));
    s.revalidate(&json!({"tags": ["loc-sf"]}));
    let requests = s.stats(p).requests;
    assert_eq!(s.get(p).state(), "STALE");
    poll("A's regeneration reached the origin (A holds the claim)", SHORT, || (s.stats(p).requests > requests).then_some(()));
    let in_b = at(s, &b, p);
    assert_eq!(in_b.state(), "STALE", "B learned the publish from the coordinator: {in_b:?}");
    poll("A's regeneration stored v2", SHORT, || {
        let r = s.get(p);
        (r.state() == "HIT" && r.body.contains("content=v2")).then_some(())
    });
    let stats = s.stats(p);
    assert_eq!(stats.renders, 3, "two first renders and one regeneration for A and B together: {stats:?}");
}

fn without_the_coordinator_b_keeps_its_own_kv(s: &Suite) {
    let b = start(s, "kv-only", false);
    let p = "/e2e/locations/kv-only";
    s.behave(p, json!({"headers": {"cache-tag": "loc-kv"}}));
    stored_in_both(s, &b, p);
    s.behave(p, json!({"headers": {"cache-tag": "loc-kv"}, "content": "v2"}));
    s.revalidate(&json!({"tags": ["loc-kv"]}));
    assert_eq!(s.get(p).state(), "STALE", "A, where the webhook ran, has the KV mark");
    // B only has KV's propagation, and separate --persist-to directories never sync: B keeps its
    // copy as fresh (in production, for KV's propagation time: about a minute, README
    // "Consistency"). Watched for 2.5 s, beyond the coordinator's bound.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let r = at(s, &b, p);
        assert_eq!((r.state(), r.body.contains("content=v1")), ("HIT", true), "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.log_lines("no coordinator bound").len(), 1, "said once: {:?}", b.log_lines("\"level\""));
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{SECRET}")));
    let admin = s.send_at(&b, "GET", "/__isr/admin", &[("authorization", &auth)], None);
    assert!(admin.body.contains("KV only"), "the admin page says so: {}", admin.body);
    let coordinated = s.send("GET", "/__isr/admin", &[("authorization", &auth)], None);
    assert!(coordinated.body.contains("coordinator bound"), "{}", coordinated.body);
}

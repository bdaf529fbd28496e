//! Time-based ISR end to end: cache states, headers and origin render counts.

use crate::support::{let_age, poll, Suite};
use crate::Test;
use serde_json::json;
use std::sync::Barrier;
use std::time::Duration;

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("miss_then_hit_with_one_render", miss_then_hit_with_one_render),
    ("stale_after_revalidate_then_new_content", stale_after_revalidate_then_new_content),
    ("fifty_concurrent_stale_hits_one_render", fifty_concurrent_stale_hits_one_render),
    ("fifty_concurrent_misses_one_render", fifty_concurrent_misses_one_render),
    ("failing_origin_keeps_the_old_page", failing_origin_keeps_the_old_page),
    ("stalled_regeneration_keeps_the_old_page", stalled_regeneration_keeps_the_old_page),
    ("bypass_cases", bypass_cases),
    ("etag_304_and_head", etag_304_and_head),
    ("conditional_regeneration_uses_304", conditional_regeneration_uses_304),
    ("redirects_and_not_found", redirects_and_not_found),
    ("query_and_headers_do_not_fragment_or_leak", query_and_headers_do_not_fragment_or_leak),
];

const SHORT: Duration = Duration::from_secs(10);

fn miss_then_hit_with_one_render(s: &Suite) {
    let p = "/e2e/hit/page";
    let first = s.get(p);
    assert_eq!((first.status, first.state()), (200, "MISS"), "{first:?}");
    assert_eq!(first.render(), 1);
    let second = s.get(p);
    assert_eq!(second.state(), "HIT", "{second:?}");
    assert_eq!(second.body, first.body);
    assert!(!second.header("age").is_empty(), "Age header present");
    assert!(!second.header("etag").is_empty(), "ETag header present");
    // After the background write, the page comes from KV; still one render.
    poll("page in KV (HIT with a later request)", SHORT, || {
        let r = s.get(p);
        (r.state() == "HIT").then_some(())
    });
    assert_eq!(s.stats(p).renders, 1);
}

fn stale_after_revalidate_then_new_content(s: &Suite) {
    let p = "/e2e/stale/page";
    s.behave(p, json!({"headers": {"cache-control": "public, s-maxage=1"}}));
    assert_eq!(s.get(p).state(), "MISS");
    assert_eq!(s.get(p).state(), "HIT");
    // The editor changes the content; the page has 1 s to live.
    s.behave(p, json!({"headers": {"cache-control": "public, s-maxage=1"}, "content": "v2"}));
    let_age(Duration::from_millis(1100));
    let stale = s.get(p);
    assert_eq!(stale.state(), "STALE", "{stale:?}");
    assert_eq!(stale.render(), 1, "the visitor got the stored page");
    assert!(stale.body.contains("content=v1"));
    let fresh = poll("regenerated page", SHORT, || {
        let r = s.get(p);
        (r.render() == 2).then_some(r)
    });
    assert!(fresh.body.contains("content=v2"), "{}", fresh.body);
    assert!(matches!(fresh.state(), "HIT" | "STALE"), "{fresh:?}");
    assert_eq!(s.stats(p).renders, 2);
}

fn fifty_concurrent_stale_hits_one_render(s: &Suite) {
    let p = "/e2e/stale-herd/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}}));
    assert_eq!(s.get(p).state(), "MISS");
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    // The regeneration will take 1.5 s, so all fifty requests find the page stale.
    // Etag off: the regeneration must re-render (no 304 short-cut).
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "stall_ms": 1500, "etag": false}));
    let_age(Duration::from_millis(1100));
    let barrier = Barrier::new(50);
    let states: Vec<(u16, String, u32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let r = s.get(p);
                    (r.status, r.state().to_string(), r.render())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    assert!(states.iter().all(|(status, state, render)| *status == 200 && state == "STALE" && *render == 1), "{states:?}");
    poll("one regeneration", SHORT, || (s.stats(p).renders == 2).then_some(()));
    poll("new content", SHORT, || (s.get(p).render() == 2).then_some(()));
    assert_eq!(s.stats(p).renders, 2, "fifty stale hits, one regeneration");
}

fn fifty_concurrent_misses_one_render(s: &Suite) {
    let p = "/e2e/miss-herd/page";
    s.behave(p, json!({"stall_ms": 1000}));
    let barrier = Barrier::new(50);
    let answers: Vec<(u16, u32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let r = s.get(p);
                    (r.status, r.render())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    assert!(answers.iter().all(|(status, render)| *status == 200 && *render == 1), "{answers:?}");
    assert_eq!(s.stats(p).renders, 1, "fifty misses, one render");
}

fn failing_origin_keeps_the_old_page(s: &Suite) {
    let p = "/e2e/failing/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}}));
    let good = s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "fail": true}));
    let_age(Duration::from_millis(1100));
    let stale = s.get(p);
    assert_eq!((stale.status, stale.state()), (200, "STALE"));
    assert_eq!(stale.body, good.body);
    poll("a failed regeneration", SHORT, || (s.stats(p).failures >= 1).then_some(()));
    for _ in 0..20 {
        let r = s.get(p);
        assert_eq!((r.status, r.state()), (200, "STALE"), "{r:?}");
        assert_eq!(r.body, good.body, "the last good page is kept");
    }
    assert_eq!(s.stats(p).failures, 1, "backing off: no retry on every request");
    // wrangler writes its log a moment after the request that logged: poll for the line.
    poll("the failure is logged", SHORT, || (!s.log_events("regenerate_failed", "", "").is_empty()).then_some(()));
}

fn stalled_regeneration_keeps_the_old_page(s: &Suite) {
    let p = "/e2e/stalled/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}}));
    let good = s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    // Longer than the suite's REGENERATE_TIMEOUT_MS (2 s).
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "stall_ms": 6000}));
    let_age(Duration::from_millis(1100));
    assert_eq!(s.get(p).state(), "STALE");
    poll("the regeneration to time out", SHORT, || {
        (!s.log_events("regenerate_failed", p, "origin did not answer").is_empty()).then_some(())
    });
    let r = s.get(p);
    assert_eq!((r.status, r.body.as_str()), (200, good.body.as_str()));
}

fn bypass_cases(s: &Suite) {
    let post = s.send("POST", "/e2e/bypass/form", &[("content-type", "text/plain")], Some("hello"));
    assert_eq!((post.status, post.state(), post.header("x-isr-reason")), (200, "BYPASS", "method"));
    assert!(post.body.contains("\"body_len\":5"), "{}", post.body);

    let auth = s.get_with("/e2e/bypass/private", &[("authorization", "Bearer x")]);
    assert_eq!((auth.state(), auth.header("x-isr-reason")), ("BYPASS", "authorization"));
    let cookie = s.get_with("/e2e/bypass/private", &[("cookie", "__session=abc")]);
    assert_eq!((cookie.state(), cookie.header("x-isr-reason")), ("BYPASS", "session-cookie"));

    for (path, headers, reason) in [
        ("/e2e/bypass/set-cookie", json!({"set-cookie": "sid=1; Path=/"}), "set-cookie"),
        ("/e2e/bypass/no-store", json!({"cache-control": "no-store"}), "not-public"),
        ("/e2e/bypass/private-cc", json!({"cache-control": "private, max-age=60"}), "not-public"),
    ] {
        s.behave(path, json!({ "headers": headers }));
        for _ in 0..2 {
            let r = s.get(path);
            assert_eq!((r.state(), r.header("x-isr-reason")), ("BYPASS", reason), "{path}");
        }
        assert_eq!(s.stats(path).renders, 2, "{path} is never stored");
    }
    s.behave("/e2e/bypass/error", json!({"fail": true}));
    let error = s.get("/e2e/bypass/error");
    assert_eq!((error.status, error.state()), (500, "BYPASS"));
}

fn etag_304_and_head(s: &Suite) {
    let p = "/e2e/etag/page";
    let head = s.send("HEAD", p, &[], None);
    assert_eq!((head.status, head.state()), (200, "MISS"));
    assert!(head.body.is_empty());
    let full = s.get(p);
    assert_eq!(full.state(), "HIT", "HEAD stored the full page");
    assert_eq!(full.render(), 1);
    let etag = full.header("etag").to_string();
    assert!(!etag.is_empty());
    let not_modified = s.get_with(p, &[("if-none-match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), etag);
    let other = s.get_with(p, &[("if-none-match", "\"something-else\"")]);
    assert_eq!(other.status, 200);
    let head_hit = s.send("HEAD", p, &[], None);
    assert_eq!((head_hit.status, head_hit.state()), (200, "HIT"));
    assert!(head_hit.body.is_empty());
}

fn conditional_regeneration_uses_304(s: &Suite) {
    let p = "/e2e/conditional/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "etag": true}));
    let first = s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    let_age(Duration::from_millis(1100));
    assert_eq!(s.get(p).state(), "STALE");
    poll("a 304 from the origin", SHORT, || (s.stats(p).not_modified == 1).then_some(()));
    let refreshed = poll("the refreshed page", SHORT, || {
        let r = s.get(p);
        (r.state() == "HIT").then_some(r)
    });
    assert_eq!(refreshed.body, first.body, "same body, no re-render");
    assert_eq!(s.stats(p).renders, 1);
    let sent = s.origin_requests(p);
    assert!(sent.iter().any(|r| r["headers"]["if-none-match"].is_string()), "{sent:?}");
}

fn redirects_and_not_found(s: &Suite) {
    s.behave("/e2e/status/moved", json!({"status": 301, "headers": {"location": "/e2e/status/new"}}));
    s.behave("/e2e/status/temp", json!({"status": 302, "headers": {"location": "/e2e/status/new"}}));
    s.behave("/e2e/status/missing", json!({"status": 404}));
    for (path, status) in [("/e2e/status/moved", 301), ("/e2e/status/missing", 404)] {
        assert_eq!(s.get(path).state(), "MISS", "{path}");
        let r = poll("stored", SHORT, || {
            let r = s.get(path);
            (r.state() == "HIT").then_some(r)
        });
        assert_eq!(r.status, status);
        assert_eq!(s.stats(path).renders, 1, "{path}");
    }
    assert_eq!(s.get("/e2e/status/moved").header("location"), "/e2e/status/new");
    let temp = s.get("/e2e/status/temp");
    assert_eq!((temp.status, temp.state()), (302, "BYPASS"));
}

fn query_and_headers_do_not_fragment_or_leak(s: &Suite) {
    let p = "/e2e/query/page";
    let first = s.get_with(&format!("{p}?utm_source=news&page=2"), &[("cookie", "theme=dark"), ("x-forwarded-host", "evil.test")]);
    assert_eq!(first.state(), "MISS");
    poll("stored", SHORT, || (s.get(&format!("{p}?page=2")).state() == "HIT").then_some(()));
    assert_eq!(s.get(&format!("{p}?page=2&fbclid=x&utm_campaign=y")).state(), "HIT");
    assert_eq!(s.get(&format!("{p}?page=3")).state(), "MISS", "allowed parameters are keyed");
    let sent = s.origin_requests(p);
    let first_sent = &sent[0];
    assert_eq!(first_sent["query"], "page=2", "{sent:?}");
    assert!(first_sent["headers"]["cookie"].is_null(), "visitor cookies are not forwarded");
    assert_ne!(first_sent["headers"]["x-forwarded-host"], "evil.test");
}

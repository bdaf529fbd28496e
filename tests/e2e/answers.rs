//! What the origin's answers do, in the built worker: pages the origin says are gone stop being
//! served, a stale page hides a failing origin only for a while, and a failing origin gets one
//! request per back-off period, not one per visitor.

use crate::support::{poll, Resp, Suite};
use crate::Test;
use serde_json::json;
use std::time::{Duration, Instant};

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("gone_answers_stop_being_served", gone_answers_stop_being_served),
    ("server_errors_keep_the_stale_page", server_errors_keep_the_stale_page),
    ("stale_if_error_has_an_end", stale_if_error_has_an_end),
    ("a_failing_miss_backs_off_until_a_webhook", a_failing_miss_backs_off_until_a_webhook),
    ("visitors_sharing_a_failed_miss_make_one_origin_request", visitors_sharing_a_failed_miss_make_one_origin_request),
];

const SHORT: Duration = Duration::from_secs(10);

/// Stores `p` (tagged `tag`, fresh for an hour) and returns its first answer.
fn store(s: &Suite, p: &str, tag: &str) -> Resp {
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=3600", "cache-tag": tag}, "content": "good"}));
    let first = s.get(p);
    assert_eq!((first.status, first.state()), (200, "MISS"), "{p}: {first:?}");
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    first
}

fn gone_answers_stop_being_served(s: &Suite) {
    for status in [451u16, 403, 401, 302, 307, 400] {
        let p = format!("/e2e/gone/{status}");
        let tag = format!("gone-{status}");
        let good = store(s, &p, &tag);
        let mut headers = json!({"cache-control": "s-maxage=3600"});
        if (300..400).contains(&status) {
            headers["location"] = json!("/e2e/gone/elsewhere");
        }
        s.behave(&p, json!({"status": status, "headers": headers, "content": "gone"}));
        s.revalidate(&json!({"tags": [tag]}));
        // The first request after the invalidation gets the stored page and starts the
        // regeneration; once that has the origin's answer, the page is no longer served.
        let gone = poll("the origin's answer to reach visitors", SHORT, || {
            let r = s.get(&p);
            if r.status == status {
                return Some(r);
            }
            assert_eq!((r.status, r.state(), r.body.as_str()), (200, "STALE", good.body.as_str()), "{p}");
            None
        });
        assert_eq!(gone.state(), "BYPASS", "{p}: {gone:?}");
        if (300..400).contains(&status) {
            assert_eq!(gone.header("location"), "/e2e/gone/elsewhere", "{p}");
        }
        let renders = s.stats(&p).renders;
        for _ in 0..3 {
            let r = s.get(&p);
            assert_eq!((r.status, r.state()), (status, "BYPASS"), "{p}: never the old page again");
        }
        assert_eq!(s.stats(&p).renders, renders + 3, "{p}: an answer, not a failure: passed on every time");
    }
}

fn server_errors_keep_the_stale_page(s: &Suite) {
    for status in [503u16, 501, 429] {
        let p = format!("/e2e/server-error/{status}");
        let tag = format!("server-error-{status}");
        let good = store(s, &p, &tag);
        s.behave(&p, json!({"status": status, "headers": {"cache-control": "no-store"}}));
        s.revalidate(&json!({"tags": [tag]}));
        assert_eq!(s.get(&p).state(), "STALE");
        poll("the failed regeneration to be logged", SHORT, || {
            (!s.log_events("regenerate_failed", &p, &format!("origin answered {status}")).is_empty()).then_some(())
        });
        for _ in 0..3 {
            let r = s.get(&p);
            assert_eq!((r.status, r.state(), r.body.as_str()), (200, "STALE", good.body.as_str()), "{p}");
        }
    }
}

fn stale_if_error_has_an_end(s: &Suite) {
    // Fresh for 1 s, then served stale for at most 2 s while the origin fails.
    let p = "/e2e/stale-if-error/page";
    let cc = json!({"cache-control": "s-maxage=1, stale-if-error=2"});
    let t0 = Instant::now();
    s.behave(p, json!({"headers": cc, "etag": false, "content": "good"}));
    let good = s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    s.behave(p, json!({"headers": cc, "etag": false, "fail": true}));
    let error = poll("the error to reach visitors", SHORT, || {
        let r = s.get(p);
        if r.status == 500 {
            return Some(r);
        }
        assert_eq!((r.status, r.body.as_str()), (200, good.body.as_str()), "the good page until then: {r:?}");
        None
    });
    let after = t0.elapsed();
    assert!(after >= Duration::from_secs(3), "not before 1 s fresh + 2 s stale-if-error: {after:?}");
    assert_eq!(error.state(), "BYPASS", "{error:?}");
    assert!(s.stats(p).failures >= 1);
    // The page was not deleted by the failure, but it is not served: the next good render
    // replaces it (after the failure's short back-off).
    s.behave(p, json!({"headers": cc, "etag": false, "content": "back"}));
    let back = poll("the page to be rendered again", SHORT, || {
        let r = s.get(p);
        (r.status == 200).then_some(r)
    });
    assert_eq!(back.state(), "MISS", "{back:?}");
    assert_eq!(test_origin::page_field(&back.body, "content"), Some("back"));
}

fn a_failing_miss_backs_off_until_a_webhook(s: &Suite) {
    // No origin Retry-After: the first back-off is 2 s.
    let short = "/e2e/backoff/short";
    s.behave(short, json!({"fail": true}));
    let r = s.get(short);
    assert_eq!((r.status, r.state(), r.header("retry-after")), (500, "BYPASS", "2"), "{r:?}");

    // The origin asks for 30 s: for that long, visitors get its answer without a request.
    let p = "/e2e/backoff/page";
    s.behave(p, json!({"status": 503, "headers": {"retry-after": "30"}, "content": "busy"}));
    let first = s.get(p);
    assert_eq!((first.status, first.state(), first.header("retry-after")), (503, "BYPASS", "30"), "{first:?}");
    for _ in 0..5 {
        let r = s.get(p);
        assert_eq!((r.status, r.body.as_str()), (503, first.body.as_str()), "the recent error");
        assert_eq!(r.header("x-isr-reason"), "origin-backoff", "{r:?}");
        assert_eq!(r.header("cache-control"), "no-store", "{r:?}");
        let wait: u32 = r.header("retry-after").parse().unwrap_or(0);
        assert!((1..=30).contains(&wait), "{r:?}");
    }
    let head = s.send("HEAD", p, &[], None);
    assert_eq!((head.status, head.body.as_str()), (503, ""));
    assert_eq!(s.stats(p).requests, 1, "six visitors, one origin request");

    // The CMS publishes: the back-off ends, the next visitor gets the new page.
    s.behave(p, json!({"content": "published"}));
    s.revalidate(&json!({"paths": [p]}));
    let r = s.get(p);
    assert_eq!((r.status, r.state()), (200, "MISS"), "{r:?}");
    assert_eq!(test_origin::page_field(&r.body, "content"), Some("published"));
    assert_eq!(s.stats(p).requests, 2);
}

fn visitors_sharing_a_failed_miss_make_one_origin_request(s: &Suite) {
    let p = "/e2e/backoff/shared";
    s.behave(p, json!({"status": 503, "stall_ms": 1500, "headers": {"retry-after": "30", "set-cookie": "lb=1"}}));
    let answers: Vec<Resp> = std::thread::scope(|scope| {
        let visitors: Vec<_> = (0..4).map(|_| scope.spawn(|| s.get(p))).collect();
        visitors.into_iter().map(|v| v.join().expect("visitor thread")).collect()
    });
    assert!(answers.iter().all(|r| r.status == 503), "{answers:?}");
    assert_eq!(s.stats(p).requests, 1, "four visitors, one origin request: {answers:?}");
    let cookies = answers.iter().filter(|r| !r.header("set-cookie").is_empty()).count();
    assert!(cookies <= 1, "the origin's cookie reaches one visitor at most: {answers:?}");
}

//! What the origin's answers do to stored pages and to the origin itself: pages the origin says
//! are gone stop being served, stale-if-error has an end, and a failing origin is not hammered.

use crate::store::layout;
use crate::store::KvStore;
use crate::testing::{body, cache_state, Bench, Reply};
use crate::http::Request;
use futures::executor::block_on;
use std::rc::Rc;

use super::tests::three_visitors_at_once;

use crate::testing::config_with as config;

async fn is_stored(b: &Bench, path: &str) -> bool {
    let key = layout::page_key(&b.config.cache_version, &format!("site.test{path}"));
    b.kv.get(&key).await.ok().flatten().is_some()
}

/// Origin requests for `path` so far.
fn calls(b: &Bench, path: &str) -> usize {
    b.origin.requests().iter().filter(|r| r.url.ends_with(path)).count()
}

/// The CMS's webhook call for `paths`, as the engine receives it.
fn webhook(paths: &[&str]) -> Request {
    let mut req = Request::new("POST", "https://site.test/api/revalidate")
        .with_header("authorization", "Bearer s3cret")
        .with_header("content-type", "application/json");
    req.body = serde_json::json!({ "paths": paths }).to_string().into_bytes().into();
    req
}

#[test]
fn a_page_the_origin_says_is_gone_stops_being_served() {
    let answers = [
        Reply::status_page(401, "log in", &[("www-authenticate", "Basic")]),
        Reply::status_page(403, "forbidden", &[]),
        Reply::status_page(451, "unavailable for legal reasons", &[]),
        Reply::status_page(302, "", &[("location", "/elsewhere")]),
        Reply::status_page(303, "", &[("location", "/elsewhere")]),
        Reply::status_page(307, "", &[("location", "/elsewhere")]),
        Reply::status_page(400, "bad", &[]),
        Reply::status_page(405, "no", &[]),
        Reply::status_page(422, "no", &[]),
    ];
    for answer in answers {
        let b = Bench::new();
        b.origin.reply("/g", Reply::page("good", &[("cache-control", "s-maxage=10")]));
        block_on(async {
            b.get("/g").await;
            b.run_background().await;
            b.origin.reply("/g", answer.clone());
            b.clock.advance(10_000);
            let stale = b.get("/g").await;
            assert_eq!((cache_state(&stale), body(&stale).as_str()), ("STALE", "good render=1"));
            b.run_background().await;
            assert!(!is_stored(&b, "/g").await, "{answer:?}: the page is removed");
            let next = b.get("/g").await;
            let Reply::Page { status, .. } = &answer else { unreachable!() };
            assert_eq!((next.status, cache_state(&next)), (*status, "BYPASS"), "{answer:?}: the origin's answer, passed through");
            assert!(!body(&next).contains("good"), "{answer:?}");
        });
    }
}

#[test]
fn a_page_gone_after_a_tag_invalidation_stops_being_served() {
    let b = Bench::new();
    b.origin.reply("/t", Reply::page("good", &[("cache-control", "s-maxage=3600"), ("cache-tag", "news")]));
    block_on(async {
        b.get("/t").await;
        b.run_background().await;
        b.clock.advance(1_500); // KV: one write per second per key
        b.kv.begin_invocation();
        let inv = crate::engine::jobs::Invalidation {
            tags: vec!["news".into()],
            ..Default::default()
        };
        b.engine().invalidate(&["site.test".to_string()], &inv).await;
        b.origin.reply("/t", Reply::status_page(451, "gone", &[]));
        assert_eq!(cache_state(&b.get("/t").await), "STALE");
        b.run_background().await;
        for _ in 0..3 {
            let r = b.get("/t").await;
            assert_eq!((r.status, cache_state(&r)), (451, "BYPASS"));
        }
    });
}

#[test]
fn server_errors_and_rate_limiting_keep_the_stale_page() {
    for status in [500, 501, 502, 503, 504, 505, 507, 429] {
        let b = Bench::new();
        b.origin.reply("/s", Reply::page("good", &[("cache-control", "s-maxage=10")]));
        block_on(async {
            b.get("/s").await;
            b.run_background().await;
            b.origin.reply("/s", Reply::status_page(status, "down", &[("set-cookie", "a=b")]));
            b.clock.advance(10_000);
            b.get("/s").await;
            b.run_background().await;
            let r = b.get("/s").await;
            assert_eq!((cache_state(&r), body(&r).as_str()), ("STALE", "good render=1"), "{status}");
            assert!(is_stored(&b, "/s").await, "{status}");
        });
    }
}

/// Now, on the bench's clock.
fn now(b: &Bench) -> u64 {
    crate::runtime::clock::Clock::now_ms(&b.clock)
}

#[test]
fn a_stale_page_is_served_for_stale_if_error_s_then_visitors_get_the_error() {
    let b = Bench::with_config(config(&[("STALE_IF_ERROR_S", "100")]));
    b.origin.reply("/e", Reply::page("good", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        let t0 = now(&b);
        b.get("/e").await;
        b.run_background().await;
        b.origin.reply("/e", Reply::Status(503));
        let stale_from = t0 + 10_000;
        for t in (0..10).map(|i| stale_from + i * 10_000).chain([stale_from + 99_999]) {
            b.clock.set(t); // (background work moves the clock while it waits out KV's write limit)
            let r = b.get("/e").await;
            assert_eq!((cache_state(&r), body(&r).as_str()), ("STALE", "good render=1"), "{} ms stale", t - stale_from);
            b.run_background().await;
        }
        b.clock.set(stale_from + 100_000);
        let r = b.get("/e").await;
        assert_eq!((r.status, cache_state(&r)), (503, "BYPASS"), "100 s stale: the origin's error reaches the visitor");
        assert!(is_stored(&b, "/e").await, "a failure deletes nothing");
        b.origin.reply("/e", Reply::page("back", &[("cache-control", "s-maxage=10")]));
        b.clock.advance(60_000); // past any back-off
        let r = b.get("/e").await;
        assert_eq!((cache_state(&r), body(&r).as_str()), ("MISS", "back render=2"));
    });
}

#[test]
fn stale_if_error_defaults_to_one_day_and_the_origin_may_ask_for_less() {
    let b = Bench::new();
    b.origin.reply("/d", Reply::page("day", &[("cache-control", "s-maxage=10")]));
    b.origin.reply("/o", Reply::page("own", &[("cache-control", "s-maxage=10, stale-if-error=30")]));
    block_on(async {
        let t0 = now(&b);
        b.get("/d").await;
        b.get("/o").await;
        b.run_background().await;
        b.origin.reply("/d", Reply::Network);
        b.origin.reply("/o", Reply::Network);
        let stale_from = t0 + 10_000;
        b.clock.set(stale_from + 29_999);
        assert_eq!(cache_state(&b.get("/o").await), "STALE");
        b.run_background().await;
        b.clock.set(stale_from + 30_000);
        assert_eq!(b.get("/o").await.status, 502, "the origin's own stale-if-error=30");
        b.clock.set(stale_from + 86_400_000 - 1);
        assert_eq!(cache_state(&b.get("/d").await), "STALE");
        b.run_background().await;
        b.clock.set(stale_from + 86_400_000);
        assert_eq!(b.get("/d").await.status, 502, "a day after it went stale");
    });
}


#[test]
fn an_expired_page_the_origin_says_is_gone_is_removed() {
    let b = Bench::new();
    b.origin.reply("/x", Reply::page("good", &[("cache-control", "s-maxage=3600")]));
    block_on(async {
        b.get("/x").await;
        b.run_background().await;
        b.clock.advance(1_500);
        b.kv.begin_invocation();
        let inv = crate::engine::jobs::Invalidation {
            paths: vec!["/x".into()],
            mode: crate::rules::invalidation::InvalidationMode::Expire,
            ..Default::default()
        };
        b.engine().invalidate(&["site.test".to_string()], &inv).await;
        b.origin.reply("/x", Reply::status_page(403, "forbidden", &[]));
        let r = b.get("/x").await;
        assert_eq!((r.status, cache_state(&r)), (403, "BYPASS"));
        b.run_background().await;
        assert!(!is_stored(&b, "/x").await, "the expired page is removed, not kept for ever");
    });
}


#[test]
fn visitors_sharing_a_failed_miss_do_not_each_call_the_origin() {
    let b = Rc::new(Bench::new());
    b.origin.reply("/busy", Reply::status_page(503, "try later", &[("set-cookie", "lb=7")]));
    let results = three_visitors_at_once(&b, "/busy");
    assert_eq!(results.len(), 3);
    assert_eq!(calls(&b, "/busy"), 1, "one origin request for three visitors");
    assert!(results.iter().all(|r| r.status == 503 && body(r) == "try later render=1"));
    let cookies = results.iter().filter(|r| r.headers.contains("set-cookie")).count();
    assert_eq!(cookies, 1, "the origin's cookie goes to one visitor only");
}

#[test]
fn a_failing_miss_backs_off_and_answers_the_recent_error() {
    let b = Bench::new();
    b.origin.reply("/down", Reply::status_page(503, "down", &[]));
    block_on(async {
        let first = b.get("/down").await;
        assert_eq!((first.status, cache_state(&first)), (503, "BYPASS"));
        assert_eq!(first.headers.get("retry-after"), Some("2"));
        for _ in 0..5 {
            let r = b.get("/down").await;
            assert_eq!((r.status, body(&r).as_str()), (503, "down render=1"), "the recent error, again");
            assert_eq!(r.headers.get("cache-control"), Some("no-store"));
            assert_eq!(r.headers.get("x-isr-reason"), Some("origin-backoff"));
            assert_eq!(r.headers.get("retry-after"), Some("2"));
        }
        let head = b.send(Request::new("HEAD", "https://site.test/down")).await;
        assert_eq!((head.status, head.body.len()), (503, 0));
        assert_eq!(calls(&b, "/down"), 1, "no origin call while backing off");
        b.clock.advance(1_500);
        assert_eq!(b.get("/down").await.headers.get("retry-after"), Some("1"));
        b.clock.advance(500);
        b.get("/down").await; // failure 2: the next attempt waits 4 s
        assert_eq!(calls(&b, "/down"), 2);
        b.clock.advance(3_999);
        b.get("/down").await;
        assert_eq!(calls(&b, "/down"), 2);
        b.clock.advance(1);
        b.origin.reply("/down", Reply::page("up", &[]));
        let up = b.get("/down").await;
        assert_eq!((cache_state(&up), body(&up).as_str()), ("MISS", "up render=3"));
        assert_eq!(up.headers.get("retry-after"), None);
        b.run_background().await;
        // A success ended the back-off: a new failure starts again from 2 s.
        b.origin.reply("/other", Reply::Timeout);
        assert_eq!(b.get("/other").await.status, 504);
        let again = b.get("/other").await;
        assert_eq!((again.status, cache_state(&again)), (504, "MISS"));
        assert_eq!(again.headers.get("retry-after"), Some("2"));
        assert_eq!(calls(&b, "/other"), 1);
    });
}

#[test]
fn answers_that_are_not_failures_do_not_back_off() {
    let b = Bench::new();
    b.origin.reply("/no", Reply::status_page(403, "no", &[]));
    block_on(async {
        for n in 1..=3 {
            let r = b.get("/no").await;
            assert_eq!((r.status, body(&r)), (403, format!("no render={n}")));
            assert_eq!(r.headers.get("retry-after"), None);
        }
    });
}

#[test]
fn an_expired_page_with_a_failing_origin_backs_off_too() {
    let b = Bench::with_config(config(&[("STALE_IF_ERROR_S", "0")]));
    b.origin.reply("/x", Reply::page("good", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/x").await;
        b.run_background().await;
        b.origin.reply("/x", Reply::Timeout);
        b.clock.advance(10_000);
        assert_eq!(b.get("/x").await.status, 504);
        assert_eq!(b.get("/x").await.status, 504);
        assert_eq!(calls(&b, "/x"), 2, "the first render, then one failed render");
        assert!(is_stored(&b, "/x").await);
    });
}

#[test]
fn a_webhook_call_ends_the_back_off() {
    let b = Bench::with_config(config(&[]));
    b.origin.reply("/w", Reply::Status(500));
    block_on(async {
        assert_eq!(b.get("/w").await.status, 500);
        b.origin.reply("/w", Reply::page("published", &[]));
        assert_eq!(b.get("/w").await.status, 500, "backing off");
        let hook = b.send(webhook(&["/w"])).await;
        assert_eq!(hook.status, 200);
        let r = b.get("/w").await;
        assert_eq!((r.status, body(&r).as_str()), (200, "published render=1"));
    });
}

#[test]
fn a_webhook_call_ends_the_regeneration_back_off_of_this_isolate() {
    let b = Bench::with_config(config(&[]));
    b.origin.reply("/r", Reply::page("old", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/r").await;
        b.run_background().await;
        b.origin.reply("/r", Reply::Status(500));
        b.clock.advance(10_000);
        b.get("/r").await;
        b.run_background().await; // failed: the next attempt waits 5 s
        b.clock.advance(1_500); // (KV: one write per second to the lease's key)
        b.origin.reply("/r", Reply::page("new", &[("cache-control", "s-maxage=10")]));
        assert_eq!(b.send(webhook(&["/r"])).await.status, 200);
        let stale = b.get("/r").await;
        assert_eq!((cache_state(&stale), body(&stale).as_str()), ("STALE", "old render=1"));
        assert!(!b.queue.is_empty(), "the published page is regenerated at once");
        b.run_background().await;
        let r = b.get("/r").await;
        assert_eq!(body(&r), "new render=2", "{:?}", b.logger.lines());
    });
}

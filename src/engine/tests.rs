//! Behaviour of the engine: cache states, regeneration, coalescing, failures and KV limits.

use crate::http::Request;
use crate::store::layout;
use crate::store::memory::Op;
use crate::store::{KvStore, PutOptions, StoreError};
use crate::testing::{body, cache_state, Bench, Reply};
use futures::executor::{block_on, LocalPool};
use futures::future::join_all;
use futures::task::LocalSpawnExt;
use std::cell::RefCell;
use std::rc::Rc;

/// Lets the other tasks of the pool run once.
pub(super) async fn yield_once() {
    crate::runtime::clock::Clock::pause(&crate::runtime::clock::ManualClock::new(0)).await;
}

/// `n` visitors of `path` spawned on `pool` (each a new invocation); their answers are pushed
/// to the returned list as they come.
pub(super) fn spawn_visitors(pool: &LocalPool, b: &Rc<Bench>, path: &'static str, n: usize) -> Rc<RefCell<Vec<crate::http::Response>>> {
    let results = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..n {
        let (b, results) = (b.clone(), results.clone());
        pool.spawner()
            .spawn_local(async move {
                let r = b.get(path).await;
                results.borrow_mut().push(r);
            })
            .unwrap();
    }
    results
}

/// Three visitors share one MISS render while the origin holds its answer.
pub(super) fn three_visitors_at_once(b: &Rc<Bench>, path: &'static str) -> Vec<crate::http::Response> {
    let gate = b.origin.hold();
    let mut pool = LocalPool::new();
    let results = spawn_visitors(&pool, b, path, 3);
    pool.spawner()
        .spawn_local(async move {
            for _ in 0..200 {
                yield_once().await;
            }
            gate.open();
        })
        .unwrap();
    pool.run();
    let out = results.borrow().clone();
    out
}

fn page_key(bench: &Bench, id: &str) -> String {
    layout::page_key(&bench.config.cache_version, id)
}

#[test]
fn miss_then_hit_with_one_origin_render() {
    let b = Bench::new();
    block_on(async {
        let first = b.get("/a").await;
        assert_eq!(cache_state(&first), "MISS");
        assert_eq!(first.status, 200);
        assert_eq!(body(&first), "page /a render=1");
        b.run_background().await;
        b.clock.advance(3_000);
        let second = b.get("/a").await;
        assert_eq!(cache_state(&second), "HIT");
        assert_eq!(body(&second), "page /a render=1");
        assert_eq!(second.headers.get("age"), Some("3"));
        assert!(second.headers.get("etag").is_some());
        assert_eq!(b.origin.renders("/a"), 1);
    });
}

#[test]
fn a_hit_is_exactly_one_kv_read_and_no_write() {
    let b = Bench::new();
    block_on(async {
        b.get("/a").await;
        b.run_background().await;
        b.kv.reset_counts();
        let hit = b.get("/a").await;
        assert_eq!(cache_state(&hit), "HIT");
        let c = b.kv.counts();
        assert_eq!((c.gets, c.puts, c.deletes, c.lists), (1, 0, 0, 0));
    });
}

#[test]
fn stale_after_the_revalidate_time_then_new_content() {
    let b = Bench::new();
    b.origin.reply("/s", Reply::page("v", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/s").await;
        b.run_background().await;
        b.clock.advance(9_999);
        assert_eq!(cache_state(&b.get("/s").await), "HIT");
        assert!(b.queue.is_empty(), "a HIT starts no background work");
        b.clock.advance(1);
        let stale = b.get("/s").await;
        assert_eq!(cache_state(&stale), "STALE");
        assert_eq!(body(&stale), "v render=1", "the visitor gets the stored page at once");
        assert_eq!(b.origin.renders("/s"), 1, "nothing rendered before the response");
        b.run_background().await;
        assert_eq!(b.origin.renders("/s"), 2);
        let fresh = b.get("/s").await;
        assert_eq!(cache_state(&fresh), "HIT");
        assert_eq!(body(&fresh), "v render=2");
    });
}

#[test]
fn fifty_concurrent_stale_hits_cause_one_render() {
    let b = Bench::new();
    b.origin.reply("/herd", Reply::page("h", &[("cache-control", "s-maxage=5")]));
    block_on(async {
        b.get("/herd").await;
        b.run_background().await;
        b.clock.advance(5_000);
        let answers = join_all((0..50).map(|_| b.get("/herd"))).await;
        assert!(answers.iter().all(|r| cache_state(r) == "STALE"));
        assert_eq!(b.queue.len(), 1, "one regeneration queued for fifty stale hits");
        b.run_background().await;
        assert_eq!(b.origin.renders("/herd"), 2);
    });
}

#[test]
fn stale_hits_in_other_isolates_are_held_back_by_the_lease() {
    let b = Bench::new();
    b.origin.reply("/l", Reply::page("l", &[("cache-control", "s-maxage=5")]));
    let other = b.other_isolate(0);
    block_on(async {
        b.get("/l").await;
        b.run_background().await;
        b.clock.advance(5_000);
        assert_eq!(cache_state(&b.get("/l").await), "STALE");
        assert_eq!(cache_state(&other.get("/l").await), "STALE");
        // Both isolates queued a regeneration; run them interleaved as separate invocations.
        let tasks: Vec<_> = b.queue.take_all().into_iter().chain(other.queue.take_all()).collect();
        join_all(tasks).await;
        assert_eq!(b.origin.renders("/l"), 2, "the second isolate found the lease and did not render");
    });
}

#[test]
fn concurrent_misses_share_one_render() {
    let b = Bench::new();
    let gate = b.origin.hold();
    let mut pool = LocalPool::new();
    let b = Rc::new(b);
    let results = spawn_visitors(&pool, &b, "/m", 50);
    // Followers keep polling (they never await the leader's render), so the pool never
    // stalls while the origin is held; a controller task lets everyone run a while, checks
    // that only one origin request is in flight, then releases it.
    let (b2, r2) = (b.clone(), results.clone());
    pool.spawner()
        .spawn_local(async move {
            for _ in 0..200 {
                yield_once().await;
            }
            assert_eq!(b2.origin.request_count(), 1, "fifty visitors, one origin request in flight");
            assert!(r2.borrow().is_empty(), "everyone is waiting for the one render");
            gate.open();
        })
        .unwrap();
    pool.run();
    let results = results.borrow();
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(|r| cache_state(r) == "MISS" && body(r) == "page /m render=1"));
    assert_eq!(b.origin.renders("/m"), 1);
}

#[test]
fn an_uncacheable_shared_render_is_not_handed_to_other_visitors() {
    let b = Rc::new(Bench::new());
    b.origin.reply("/cookie", Reply::page("c", &[("set-cookie", "session=abc")]));
    let results = three_visitors_at_once(&b, "/cookie");
    let bodies: Vec<String> = results.iter().map(body).collect();
    assert_eq!(b.origin.renders("/cookie"), 3, "each visitor got their own render");
    for n in 1..=3 {
        assert!(bodies.contains(&format!("c render={n}")));
    }
    assert!(results.iter().all(|r| cache_state(r) == "BYPASS"));
}

#[test]
fn a_failing_origin_keeps_the_last_good_page_and_backs_off() {
    let b = Bench::new();
    b.origin.reply("/f", Reply::page("good", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/f").await;
        b.run_background().await;
        for failure in [Reply::Status(500), Reply::Timeout, Reply::Network] {
            b.origin.reply("/f", failure);
            b.clock.advance(600_000);
            let r = b.get("/f").await;
            assert_eq!(cache_state(&r), "STALE");
            assert_eq!(body(&r), "good render=1");
            b.run_background().await;
            let again = b.get("/f").await;
            assert_eq!(body(&again), "good render=1", "still the last good page");
            assert!(b.queue.is_empty(), "backing off: no new attempt right after a failure");
        }
        assert_eq!(b.logger.count_event("regenerate_failed", "p/1/site.test/f"), 3, "logged once per attempt");
        b.origin.reply("/f", Reply::page("better", &[("cache-control", "s-maxage=10")]));
        b.clock.advance(600_000);
        b.get("/f").await;
        b.run_background().await;
        assert_eq!(body(&b.get("/f").await), "better render=2");
    });
}

#[test]
fn back_off_grows_between_attempts() {
    let b = Bench::new();
    b.origin.reply("/g", Reply::page("good", &[("cache-control", "s-maxage=1")]));
    block_on(async {
        b.get("/g").await;
        b.run_background().await;
        b.origin.reply("/g", Reply::Status(503));
        b.clock.advance(1_000);
        b.get("/g").await;
        // Failure 1 at t: next attempt from t+5 s. (Rewriting the lease waits out KV's
        // one-write-per-second limit, so the simulated clock is at t+1 s afterwards.)
        b.run_background().await;
        let attempts = |b: &Bench| b.origin.requests().iter().filter(|r| r.url.ends_with("/g")).count();
        assert_eq!(attempts(&b), 2);
        b.clock.advance(3_000);
        b.get("/g").await;
        b.run_background().await;
        assert_eq!(attempts(&b), 2, "inside the 5 s back-off");
        b.clock.advance(2_000);
        b.get("/g").await;
        b.run_background().await; // failure 2 at t+6 s: next attempt from t+16 s
        assert_eq!(attempts(&b), 3);
        b.clock.advance(6_000);
        b.get("/g").await;
        b.run_background().await;
        assert_eq!(attempts(&b), 3, "inside the 10 s back-off");
        // A different isolate learns the back-off from the lease in KV.
        let other = b.other_isolate(0);
        other.get("/g").await;
        other.run_background().await;
        assert_eq!(attempts(&b), 3, "the lease holds other isolates back too");
    });
}

#[test]
fn miss_with_failing_origin_answers_an_error_and_stores_nothing() {
    let b = Bench::new();
    block_on(async {
        b.origin.reply("/down", Reply::Timeout);
        let r = b.get("/down").await;
        assert_eq!(r.status, 504);
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("did not answer"));
        // Each failure backs the page off (2 s, then 4 s: see failure_tests), so each new
        // answer is looked at once the back-off has ended.
        b.clock.advance(crate::engine::backoff::backoff_ms(1));
        b.origin.reply("/down", Reply::Network);
        assert_eq!(b.get("/down").await.status, 502);
        b.clock.advance(crate::engine::backoff::backoff_ms(2));
        b.origin.reply("/down", Reply::Status(500));
        let r = b.get("/down").await;
        assert_eq!((r.status, cache_state(&r)), (500, "BYPASS"));
        b.run_background().await;
        assert!(b.kv.visible_keys().is_empty());
    });
}

#[test]
fn bypass_requests_go_to_the_origin_untouched() {
    let b = Bench::new();
    block_on(async {
        let post = b.send(Request::new("POST", "https://site.test/form?x=1")).await;
        assert_eq!(cache_state(&post), "BYPASS");
        assert_eq!(post.headers.get("x-isr-reason"), Some("method"));
        assert_eq!(post.headers.get("x-echo-method"), Some("POST"));
        let last = b.origin.requests().pop().unwrap();
        assert_eq!(last.url, "http://origin.test/form?x=1");
        let auth = b.send(Request::new("GET", "https://site.test/me").with_header("authorization", "Bearer t")).await;
        assert_eq!(auth.headers.get("x-isr-reason"), Some("authorization"));
        assert_eq!(b.origin.requests().pop().unwrap().headers.get("authorization"), Some("Bearer t"));
        let preview = b.send(Request::new("GET", "https://site.test/me").with_header("cookie", "__prerender_bypass=1")).await;
        assert_eq!(preview.headers.get("x-isr-reason"), Some("session-cookie"));
        b.run_background().await;
        assert!(b.kv.visible_keys().is_empty(), "nothing stored");
    });
}

#[test]
fn uncacheable_origin_answers_are_never_stored() {
    let b = Bench::new();
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("/cookie", Reply::page("x", &[("set-cookie", "a=1")]), "set-cookie"),
        ("/private", Reply::page("x", &[("cache-control", "private, max-age=60")]), "not-public"),
        ("/nostore", Reply::page("x", &[("cache-control", "no-store")]), "not-public"),
        ("/vary", Reply::page("x", &[("vary", "Cookie")]), "vary"),
        ("/redirect", Reply::status_page(302, "x", &[("location", "/elsewhere")]), "status"),
        ("/zero", Reply::page("x", &[("cache-control", "s-maxage=0")]), "zero-revalidate"),
    ];
    block_on(async {
        for (path, reply, reason) in cases {
            b.origin.reply(path, reply);
            let r = b.get(path).await;
            assert_eq!(cache_state(&r), "BYPASS", "{path}");
            assert_eq!(r.headers.get("x-isr-reason"), Some(reason), "{path}");
            b.run_background().await;
            assert_eq!(cache_state(&b.get(path).await), "BYPASS", "{path} not stored");
            assert_eq!(b.origin.renders(path), 2, "{path}");
        }
        assert!(b.kv.visible_keys().is_empty());
    });
}

#[test]
fn redirects_and_not_found_are_cached_with_their_own_defaults() {
    let b = Bench::new();
    b.origin.reply("/moved", Reply::status_page(301, "", &[("location", "/new")]));
    b.origin.reply("/gone", Reply::status_page(404, "not found", &[]));
    block_on(async {
        b.get("/moved").await;
        b.get("/gone").await;
        b.run_background().await;
        let moved = b.get("/moved").await;
        assert_eq!((moved.status, cache_state(&moved)), (301, "HIT"));
        assert_eq!(moved.headers.get("location"), Some("/new"));
        b.clock.advance(30_000);
        assert_eq!(cache_state(&b.get("/gone").await), "STALE", "404s use NOT_FOUND_REVALIDATE (30 s)");
        assert_eq!(cache_state(&b.get("/moved").await), "HIT", "others use DEFAULT_REVALIDATE (60 s)");
    });
}

#[test]
fn etag_and_if_none_match_give_304_and_head_has_no_body() {
    let b = Bench::new();
    block_on(async {
        let miss = b.send(Request::new("HEAD", "https://site.test/e")).await;
        assert_eq!((miss.status, cache_state(&miss)), (200, "MISS"));
        assert!(miss.body.is_empty());
        b.run_background().await;
        let hit = b.get("/e").await;
        let etag = hit.headers.get("etag").unwrap().to_string();
        assert_eq!(body(&hit), "page /e render=1", "HEAD stored the full page");
        let cond = b.send(Request::new("GET", "https://site.test/e").with_header("if-none-match", &etag)).await;
        assert_eq!(cond.status, 304);
        assert!(cond.body.is_empty());
        assert_eq!(cond.headers.get("etag"), Some(etag.as_str()));
        let weak = b.send(Request::new("GET", "https://site.test/e").with_header("if-none-match", &format!("W/{etag}"))).await;
        assert_eq!(weak.status, 304);
        let other = b.send(Request::new("GET", "https://site.test/e").with_header("if-none-match", "\"nope\"")).await;
        assert_eq!(other.status, 200);
        let head = b.send(Request::new("HEAD", "https://site.test/e")).await;
        assert_eq!((head.status, cache_state(&head)), (200, "HIT"));
        assert!(head.body.is_empty());
        assert_eq!(head.headers.get("etag"), Some(etag.as_str()));
    });
}

#[test]
fn conditional_regeneration_refreshes_without_a_render() {
    let b = Bench::new();
    b.origin.reply("/c", Reply::page("same", &[("cache-control", "s-maxage=10"), ("etag", "\"v1\"")]));
    block_on(async {
        b.get("/c").await;
        b.run_background().await;
        b.clock.advance(10_000);
        assert_eq!(cache_state(&b.get("/c").await), "STALE");
        b.run_background().await;
        let regen = b.origin.requests().pop().unwrap();
        assert_eq!(regen.headers.get("if-none-match"), Some("\"v1\""));
        assert_eq!(b.origin.renders("/c"), 1, "the origin did not re-render");
        assert_eq!(b.origin.not_modified("/c"), 1);
        let fresh = b.get("/c").await;
        assert_eq!(cache_state(&fresh), "HIT");
        assert_eq!(fresh.headers.get("age"), Some("0"));
        assert_eq!(body(&fresh), "same render=1");
    });
}

#[test]
fn a_304_refresh_keeps_a_newer_page_stored_meanwhile() {
    // The visitor's copy of a STALE page is only served (a stream on Workers): the refresh after
    // a 304 re-reads the stored page and writes that body back, and only if it is still the page
    // the origin confirmed. Here another location stored a newer page in between: it stays.
    let b = Bench::new();
    b.origin.reply("/n", Reply::page("old", &[("cache-control", "s-maxage=10"), ("etag", "\"v1\"")]));
    block_on(async {
        b.get("/n").await;
        b.run_background().await;
        b.clock.advance(10_000);
        assert_eq!(cache_state(&b.get("/n").await), "STALE");
        let key = b.kv.visible_keys().into_iter().find(|k| k.starts_with(&layout::page_prefix(&b.config.cache_version, ""))).unwrap();
        let stored = b.kv.get(&key).await.unwrap().unwrap();
        let mut meta = crate::rules::meta::PageMeta::decode(stored.metadata.as_deref()).unwrap();
        meta.etag = "\"newer\"".into();
        meta.rendered_at = crate::runtime::clock::Clock::now_ms(&b.clock);
        let opts = PutOptions { metadata: Some(meta.encode().unwrap()), expiration_ttl: None };
        b.kv.put(&key, "newer page".into(), opts).await.unwrap();
        b.run_background().await;
        assert_eq!(b.origin.not_modified("/n"), 1, "the origin confirmed the old page");
        let now = b.get("/n").await;
        assert_eq!((cache_state(&now), body(&now).as_str(), now.headers.get("etag")), ("HIT", "newer page", Some("\"newer\"")));
    });
}

#[test]
fn tracking_parameters_and_visitor_headers_do_not_reach_the_key_or_the_origin() {
    let b = Bench::new();
    block_on(async {
        let first = b
            .send(
                Request::new("GET", "https://site.test/q?utm_source=mail")
                    .with_header("x-forwarded-host", "evil.test")
                    .with_header("accept-language", "de")
                    .with_header("cookie", "theme=dark"),
            )
            .await;
        assert_eq!(cache_state(&first), "MISS");
        let sent = b.origin.requests().pop().unwrap();
        assert_eq!(sent.url, "http://origin.test/q");
        assert_eq!(sent.headers.get("x-forwarded-host"), Some("site.test"));
        assert!(sent.headers.get("accept-language").is_none());
        assert!(sent.headers.get("cookie").is_none());
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/q?fbclid=1").await), "HIT");
        assert_eq!(cache_state(&b.get("//q").await), "HIT");
    });
}

#[test]
fn changing_the_cache_version_starts_from_an_empty_cache() {
    let b = Bench::new();
    block_on(async {
        b.get("/v").await;
        b.run_background().await;
        let mut config = (*b.config).clone();
        config.cache_version = "2".into();
        let mut v2 = b.other_isolate(0);
        v2.config = Rc::new(config);
        assert_eq!(cache_state(&v2.get("/v").await), "MISS");
    });
}

#[test]
fn kv_429_on_a_write_is_retried_and_never_fails_the_visitor() {
    let b = Bench::new();
    block_on(async {
        b.kv.fail_next(Op::Put, StoreError::RateLimited);
        let r = b.get("/r").await;
        assert_eq!(cache_state(&r), "MISS");
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/r").await), "HIT", "stored on the retry");
    });
}

#[test]
fn kv_errors_degrade_to_the_origin_and_keep_stored_pages() {
    let b = Bench::new();
    b.origin.reply("/k", Reply::page("k", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.kv.fail_next(Op::Get, StoreError::Unavailable("read failed".into()));
        let r = b.get("/k").await;
        assert_eq!((r.status, cache_state(&r)), (200, "MISS"));
        b.run_background().await;
        b.clock.advance(10_000);
        b.get("/k").await;
        b.kv.fail_next_for(Op::Put, "p/", StoreError::Unavailable("write failed".into()));
        b.run_background().await;
        assert_eq!(b.logger.count_event("store_failed", "p/1/site.test/k"), 1);
        let still = b.get("/k").await;
        assert_eq!(body(&still), "k render=1", "the previous copy stays when a write fails");
    });
}

#[test]
fn pages_too_large_for_kv_are_served_but_not_stored() {
    let b = Bench::new();
    let huge = "x".repeat(25 * 1024 * 1024 + 1);
    b.origin.reply("/big", Reply::page(&huge, &[]));
    b.origin.reply("/csp", Reply::page("c", &[("content-security-policy", &"a".repeat(1100))]));
    block_on(async {
        let big = b.get("/big").await;
        assert_eq!((big.status, big.headers.get("x-isr-reason")), (200, Some("too-large")));
        assert!(big.body.len() > 25 * 1024 * 1024);
        let csp = b.get("/csp").await;
        assert_eq!(csp.headers.get("x-isr-reason"), Some("headers-too-large"));
        assert!(csp.headers.get("content-security-policy").is_some(), "the visitor still gets every header");
        b.run_background().await;
        assert!(b.kv.visible_keys().is_empty());
        assert_eq!(b.logger.records().iter().filter(|l| l.event == "not_stored").count(), 2);
    });
}

#[test]
fn unreadable_metadata_is_re_rendered_and_replaced() {
    let b = Bench::new();
    block_on(async {
        let key = page_key(&b, "site.test/u");
        let junk = PutOptions {
            metadata: Some(r#"{"v":99}"#.into()),
            expiration_ttl: None,
        };
        b.kv.put(&key, "old".into(), junk).await.unwrap();
        b.clock.advance(1_000);
        assert_eq!(cache_state(&b.get("/u").await), "MISS");
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/u").await), "HIT");
    });
}

#[test]
fn a_page_the_origin_stops_allowing_is_removed_on_regeneration() {
    let b = Bench::new();
    b.origin.reply("/p", Reply::page("p", &[("cache-control", "s-maxage=5")]));
    block_on(async {
        b.get("/p").await;
        b.run_background().await;
        b.origin.reply("/p", Reply::page("p", &[("cache-control", "private")]));
        b.clock.advance(5_000);
        b.get("/p").await;
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/p").await), "BYPASS");
    });
}

#[test]
fn an_expired_page_renders_synchronously_and_is_never_shown_on_failure() {
    let b = Bench::new();
    block_on(async {
        b.get("/x").await;
        b.run_background().await;
        let key = page_key(&b, "site.test/x");
        let stored = b.kv.get(&key).await.unwrap().unwrap();
        let mut meta = crate::rules::meta::PageMeta::decode(stored.metadata.as_deref()).unwrap();
        meta.invalidated_at = Some(crate::runtime::clock::Clock::now_ms(&b.clock));
        meta.expired = true;
        b.clock.advance(1_000);
        let opts = PutOptions {
            metadata: Some(meta.encode().unwrap()),
            expiration_ttl: None,
        };
        b.kv.put(&key, stored.value, opts).await.unwrap();
        b.origin.reply("/x", Reply::Status(503));
        let down = b.get("/x").await;
        assert_eq!(down.status, 503, "expired content is not shown again, even when the origin fails");
        b.clock.advance(crate::engine::backoff::backoff_ms(1)); // the failure's back-off
        b.origin.reply("/x", Reply::page("new", &[]));
        let r = b.get("/x").await;
        assert_eq!((cache_state(&r), body(&r).as_str()), ("MISS", "new render=2"));
    });
}

#[test]
fn another_location_sees_a_new_page_only_after_propagation() {
    let b = Bench::new();
    let b = Bench { kv: b.kv.clone().with_propagation_delay(60_000), ..b };
    let far = b.other_isolate(1);
    b.origin.reply("/w", Reply::page("w", &[("cache-control", "s-maxage=3600")]));
    block_on(async {
        b.get("/w").await;
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/w").await), "HIT");
        assert_eq!(cache_state(&far.get("/w").await), "MISS", "not visible there yet");
        far.run_background().await;
        b.clock.advance(60_000);
        assert_eq!(cache_state(&far.get("/w").await), "HIT");
    });
}

#[test]
fn a_visitor_arriving_before_the_write_lands_gets_the_rendered_page_without_a_render() {
    let b = Bench::new();
    block_on(async {
        assert_eq!(cache_state(&b.get("/early").await), "MISS");
        assert!(b.kv.visible_keys().is_empty(), "the write is still queued");
        let second = b.get("/early").await;
        assert_eq!((cache_state(&second), body(&second).as_str()), ("HIT", "page /early render=1"));
        assert_eq!(b.origin.renders("/early"), 1);
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/early").await), "HIT");
    });
}

#[test]
fn a_render_whose_write_never_lands_is_not_served_from_memory_forever() {
    let b = Bench::new();
    block_on(async {
        b.get("/lost").await;
        drop(b.queue.take_all()); // the runtime dropped the background write
        b.clock.advance(super::render::MAX_PENDING_WRITE_MS);
        assert_eq!(cache_state(&b.get("/lost").await), "MISS");
        assert_eq!(b.origin.renders("/lost"), 2);
    });
}

fn members(b: &Bench, tag: &str) -> Vec<String> {
    let prefix = layout::tag_prefix(&b.config.cache_version, tag);
    b.kv.visible_keys().into_iter().filter(|k| k.starts_with(&prefix)).map(|k| k[prefix.len()..].to_string()).collect()
}

#[test]
fn storing_a_page_indexes_its_tags() {
    let b = Bench::new();
    b.origin.reply("/post/1", Reply::page("p", &[("cache-tag", "posts,post-1"), ("surrogate-key", "author/7")]));
    b.origin.reply("/post/2", Reply::page("p", &[("cache-tag", "posts,post-2")]));
    block_on(async {
        // Two pages with a shared tag, written concurrently: neither loses its membership.
        b.get("/post/1").await;
        b.get("/post/2").await;
        join_all(b.queue.take_all()).await;
        assert_eq!(members(&b, "posts"), vec!["site.test/post/1", "site.test/post/2"]);
        assert_eq!(members(&b, "post-1"), vec!["site.test/post/1"]);
        assert_eq!(members(&b, "author/7"), vec!["site.test/post/1"]);
        assert!(members(&b, "author").is_empty(), "a tag's prefix never matches another tag");
    });
}

#[test]
fn a_regeneration_with_unchanged_tags_writes_nothing_to_the_index() {
    let b = Bench::new();
    b.origin.reply("/t", Reply::page("t", &[("cache-control", "s-maxage=1"), ("cache-tag", "a,b,c")]));
    block_on(async {
        b.get("/t").await;
        b.run_background().await;
        b.clock.advance(1_000);
        b.get("/t").await;
        b.kv.reset_counts();
        b.run_background().await;
        let c = b.kv.counts();
        // lease read + lease write + page re-read (invalidation carry-over) + page write;
        // nothing for the index
        assert_eq!((c.gets, c.puts, c.deletes, c.lists), (2, 2, 0, 0));
        assert_eq!(b.origin.renders("/t"), 2);
    });
}

#[test]
fn changed_tags_move_the_page_in_the_index() {
    let b = Bench::new();
    b.origin.reply("/m", Reply::page("m", &[("cache-control", "s-maxage=1"), ("cache-tag", "old,kept")]));
    block_on(async {
        b.get("/m").await;
        b.run_background().await;
        b.origin.reply("/m", Reply::page("m", &[("cache-control", "s-maxage=1"), ("cache-tag", "kept,new")]));
        b.clock.advance(1_000);
        b.get("/m").await;
        b.run_background().await;
        assert!(members(&b, "old").is_empty(), "stale members are removed");
        assert_eq!(members(&b, "kept"), vec!["site.test/m"]);
        assert_eq!(members(&b, "new"), vec!["site.test/m"]);
        b.origin.reply("/m", Reply::page("m", &[("cache-control", "s-maxage=1")]));
        b.clock.advance(1_000);
        b.get("/m").await;
        b.run_background().await;
        assert!(members(&b, "kept").is_empty() && members(&b, "new").is_empty());
        let tags_key = layout::page_tags_key(&b.config.cache_version, "site.test/m");
        assert!(!b.kv.visible_keys().contains(&tags_key));
    });
}

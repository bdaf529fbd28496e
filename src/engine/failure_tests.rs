//! What the origin's answers do to stored pages and to the origin itself: pages the origin says
//! are gone stop being served, stale-if-error has an end, and a failing origin is not hammered.

use crate::rules::config::Config;
use crate::store::layout;
use crate::store::KvStore;
use crate::testing::{body, cache_state, Bench, Reply};
use futures::executor::block_on;

fn config(vars: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = vars.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    Config::from_vars(move |name| match name {
        "ORIGIN_URL" => Some("http://origin.test".to_string()),
        "REVALIDATE_SECRET" => Some("s3cret".to_string()),
        _ => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
    })
    .expect("valid test configuration")
}

async fn is_stored(b: &Bench, path: &str) -> bool {
    let key = layout::page_key(&b.config.cache_version, &format!("site.test{path}"));
    b.kv.get(&key).await.ok().flatten().is_some()
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

//! The two steps of a visitor request ([`super::flow`]) taken one at a time, as the Workers
//! adapter takes them: `begin`, the page read made outside the engine, `after_read`. What they
//! answer without awaiting, and what they leave to `answer_later`.

use super::{AfterRead, Begun};
use crate::http::{Request, Response};
use crate::store::KvStore;
use crate::testing::{body, cache_state, config_with, Bench, Reply};
use futures::executor::block_on;

fn get(path: &str) -> Request {
    Request::new("GET", &format!("https://site.test{path}"))
}

/// `req` through the two steps, begun as the adapter begins: from the cache path's view of it
/// (what `request_view_text` takes from the runtime), and whole only when that is not enough.
/// `Ok`: answered by `after_read`, with no await in the engine (only the store's own read is
/// awaited here, standing in for the adapter's); `Err`: what `answer_later` gave, and at which
/// step the request was handed on.
fn two_steps(b: &Bench, req: Request) -> Result<Response, (&'static str, Response)> {
    b.kv.begin_invocation();
    let engine = b.engine();
    let view = crate::rules::policy::cache_view(req.clone());
    let begun = engine.begin_view(view).unwrap_or_else(|| engine.begin(req));
    match begun {
        Begun::Read(pending) => {
            let read = block_on(b.kv.get_to_serve(pending.page_key()));
            match engine.after_read(pending, read) {
                AfterRead::Answer(resp) => Ok(resp),
                AfterRead::Later(later) => Err(("after_read", block_on(engine.answer_later(later)))),
            }
        }
        Begun::Later(later) => Err(("begin", block_on(engine.answer_later(later)))),
    }
}

/// `/a` stored (rendered and written), the clock `after_ms` later.
fn stored(b: &Bench, after_ms: u64) {
    b.origin.reply("/a", Reply::page("v1", &[("cache-control", "s-maxage=60")]));
    block_on(async {
        assert_eq!(cache_state(&b.get("/a").await), "MISS");
        b.run_background().await;
    });
    b.clock.advance(after_ms);
}

#[test]
fn a_hit_a_stale_and_a_304_are_answered_after_the_read_without_awaiting() {
    let b = Bench::new();
    stored(&b, 1_000);
    let hit = two_steps(&b, get("/a")).expect("a HIT needs no await after the read");
    assert_eq!(cache_state(&hit), "HIT");
    assert!(body(&hit).starts_with("v1"));
    let etag = hit.headers.get("etag").unwrap().to_string();
    let not_modified = two_steps(&b, get("/a").with_header("if-none-match", &etag)).expect("a 304 needs no await");
    assert_eq!(not_modified.status, 304);
    b.clock.advance(60_000);
    let stale = two_steps(&b, get("/a")).expect("a STALE needs no await: its regeneration is background work");
    assert_eq!(cache_state(&stale), "STALE");
    assert!(body(&stale).starts_with("v1"));
    // The regeneration was handed to background work, as `handle` hands it.
    b.origin.reply("/a", Reply::page("v2", &[("cache-control", "s-maxage=60")]));
    block_on(b.run_background());
    assert_eq!(b.origin.renders("/a"), 2);
}

#[test]
fn a_miss_and_an_expired_page_are_left_to_answer_later_after_the_read() {
    let b = Bench::new();
    b.origin.reply("/a", Reply::page("v1", &[("cache-control", "s-maxage=60")]));
    let (step, miss) = two_steps(&b, get("/a")).expect_err("a MISS renders");
    assert_eq!((step, cache_state(&miss)), ("after_read", "MISS"));
    assert!(body(&miss).starts_with("v1"));
    block_on(b.run_background());
    // Past revalidate + stale-if-error's end the page is expired: rendered while the visitor waits.
    b.clock.advance(60_000 + 86_400_000 + 1_000);
    b.origin.reply("/a", Reply::page("v2", &[("cache-control", "s-maxage=60")]));
    let (step, expired) = two_steps(&b, get("/a")).expect_err("an expired page renders");
    assert_eq!(step, "after_read");
    assert!(body(&expired).starts_with("v2"), "rendered anew: {}", body(&expired));
}

#[test]
fn the_webhook_and_a_bypass_are_handed_on_before_any_read() {
    let b = Bench::with_config(config_with(&[]));
    let mut webhook = Request::new("POST", "https://site.test/api/revalidate").with_header("authorization", "Bearer s3cret");
    webhook.body = r#"{"paths":["/a"]}"#.to_string().into();
    let (step, answer) = two_steps(&b, webhook).expect_err("the webhook awaits");
    assert_eq!((step, answer.status), ("begin", 200));
    b.kv.reset_counts();
    let (step, bypass) = two_steps(&b, get("/a").with_header("authorization", "Bearer visitor")).expect_err("a BYPASS awaits the origin");
    assert_eq!((step, cache_state(&bypass)), ("begin", "BYPASS"));
    assert_eq!(b.kv.counts().gets, 0, "the BYPASS read no page");
}

#[test]
fn a_log_copy_too_old_to_check_against_is_refreshed_before_the_read() {
    let b = Bench::new().with_coordinator();
    stored(&b, 1_000);
    // This isolate's copy was refreshed by the MISS above; 10 s later it is too old to use.
    b.clock.advance(10_000);
    let refreshes = b.isolate.log.borrow().refreshes();
    let (step, hit) = two_steps(&b, get("/a")).expect_err("the refresh is awaited");
    assert_eq!((step, cache_state(&hit)), ("begin", "HIT"));
    assert_eq!(b.isolate.log.borrow().refreshes(), refreshes + 1);
    // Refreshed a moment ago: the next HIT takes the two steps again.
    let hit = two_steps(&b, get("/a")).expect("a HIT on a young copy needs no await");
    assert_eq!(cache_state(&hit), "HIT");
}

#[test]
fn each_answer_is_counted_once_on_either_path() {
    // Counters in hour-long buckets, so that the minute this test spans stays in one.
    let b = Bench::with_config(config_with(&[("STATS_INTERVAL_S", "3600")]));
    stored(&b, 1_000);
    let before = b.isolate.stats.current();
    two_steps(&b, get("/a")).expect("HIT");
    b.clock.advance(60_000);
    two_steps(&b, get("/a")).expect("STALE");
    let _ = two_steps(&b, get("/b"));
    let after = b.isolate.stats.current();
    assert_eq!((after.hit - before.hit, after.stale - before.stale, after.miss - before.miss), (1, 1, 1));
}

#[test]
fn the_cache_paths_view_of_a_request_is_enough_for_it_and_only_for_it() {
    let b = Bench::with_config(config_with(&[]));
    stored(&b, 1_000);
    let engine = b.engine();
    // A cacheable request: its view is read, without the headers the cache path never reads.
    let full = get("/a").with_header("x-extra", "1").with_header("If-None-Match", "\"e\"").with_header("accept", "text/html");
    let Some(Begun::Read(pending)) = engine.begin_view(crate::rules::policy::cache_view(full.clone())) else {
        panic!("a cacheable request is begun from its view");
    };
    assert_eq!(pending.req, crate::rules::policy::cache_view(full.clone()));
    // Begun whole, it is narrowed to the same view, so every test of the cache path runs with
    // what the Workers fast path takes.
    let Begun::Read(whole) = engine.begin(full) else { panic!("a cacheable request is read") };
    assert_eq!(whole.req, pending.req);
    assert!(whole.req.headers.get("x-extra").is_none());
    // The webhook, the admin page and a BYPASS need the whole request.
    let webhook = Request::new("POST", "https://site.test/api/revalidate").with_header("authorization", "Bearer s3cret");
    let admin = get("/__isr/admin");
    let credentials = get("/a").with_header("authorization", "Bearer visitor");
    for req in [webhook, admin, credentials] {
        assert!(engine.begin_view(crate::rules::policy::cache_view(req.clone())).is_none(), "{} {} needs the whole request", req.method, req.url);
    }
}

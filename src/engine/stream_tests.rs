//! A MISS that streams: the first visitor gets the origin's body as it arrives, the store gets
//! it only whole, and the visitors sharing the render get the whole page.

use super::render::STREAMED_BODY_LIMIT_MS;
use super::tests::{spawn_visitors, yield_once};
use crate::http::{Request, Response};
use crate::store::layout;
use crate::store::KvStore;
use crate::testing::{body, cache_state, config_with, read_body, stream_of, Bench, BodyFeed, Reply};
use futures::executor::{block_on, LocalPool};
use futures::task::LocalSpawnExt;
use std::cell::RefCell;
use std::rc::Rc;

const CACHEABLE: &[(&str, &str)] = &[("cache-control", "s-maxage=60"), ("content-type", "text/html")];

/// The body stored for `path`, if any.
async fn stored(b: &Bench, path: &str) -> Option<String> {
    let key = layout::page_key(&b.config.cache_version, &format!("site.test{path}"));
    let value = b.kv.get(&key).await.ok().flatten()?;
    Some(String::from_utf8_lossy(&value.value).into_owned())
}

/// Starts `req` on `pool` and runs the pool until nothing can move: the answer, if the engine
/// gave one by then (the origin's body may still be arriving).
fn answer_while_the_origin_holds(b: &Rc<Bench>, pool: &mut LocalPool, req: Request) -> Option<Response> {
    let slot = Rc::new(RefCell::new(None));
    let (bench, out) = (b.clone(), slot.clone());
    pool.spawner().spawn_local(async move { *out.borrow_mut() = Some(bench.send(req).await) }).unwrap();
    pool.run_until_stalled();
    let answer = slot.borrow_mut().take();
    answer
}

fn get(path: &str) -> Request {
    Request::new("GET", &format!("https://site.test{path}"))
}

#[test]
fn the_first_visitor_gets_the_first_bytes_before_the_origin_has_finished() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/s", Reply::streamed(&feed, CACHEABLE));
    feed.send("<p>first part");
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/s")).expect("an answer while the origin still holds the rest of the body");
    assert_eq!((r.status, cache_state(&r)), (200, "MISS"));
    assert!(!feed.ended());
    assert_eq!(r.headers.get("etag"), None, "the origin gave none and the body is not in yet");
    assert!(r.headers.get("server-timing").is_some_and(|t| t.contains("origin;dur=")), "{:?}", r.headers);
    let stream = stream_of(&r.body).expect("the answer's body is a branch of the origin's stream");
    assert_eq!(block_on(stream.next()).expect("a chunk").expect("not cut").as_ref(), b"<p>first part");
    feed.send(", second part</p>");
    feed.finish();
    block_on(async {
        assert_eq!(read_body(&r.body).await.expect("whole"), b", second part</p>");
        assert_eq!(stored(&b, "/s").await, None, "not stored before the background work reads the other branch");
        b.run_background().await;
        assert_eq!(stored(&b, "/s").await.as_deref(), Some("<p>first part, second part</p>"));
        let hit = b.get("/s").await;
        assert_eq!((cache_state(&hit), body(&hit).as_str()), ("HIT", "<p>first part, second part</p>"));
        assert!(hit.headers.get("etag").is_some(), "computed from the stored body");
        assert_eq!(b.origin.renders("/s"), 1);
    });
}

#[test]
fn a_body_cut_off_mid_way_is_never_stored_and_the_expired_page_stays() {
    let b = Rc::new(Bench::with_config(config_with(&[("STALE_IF_ERROR_S", "0")])));
    b.origin.reply("/c", Reply::page("good", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/c").await;
        b.run_background().await;
    });
    b.clock.advance(10_000); // expired (no stale-if-error): the next visitor's MISS renders again
    let feed = BodyFeed::new();
    b.origin.reply("/c", Reply::streamed(&feed, CACHEABLE));
    feed.send("half a pa");
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/c")).expect("the head and the first bytes go out");
    assert_eq!((r.status, cache_state(&r)), (200, "MISS"));
    feed.cut();
    block_on(async {
        let got = read_body(&r.body).await;
        assert!(got.is_err(), "the visitor's answer breaks off too: {got:?}");
        b.run_background().await;
        assert_eq!(stored(&b, "/c").await.as_deref(), Some("good render=1"), "the expired page is untouched");
        assert_eq!(b.logger.count_event("not_stored", &layout::page_key(&b.config.cache_version, "site.test/c")), 1, "{:?}", b.logger.lines());
        let next = b.get("/c").await;
        assert_eq!(next.status, 502, "the failed render backs off, as a failed render does: {:?}", b.logger.lines());
        assert_eq!(b.origin.renders("/c"), 2, "the good render, then the cut one");
    });
}

#[test]
fn a_body_over_the_kv_limit_streams_to_its_visitor_but_is_not_stored() {
    const MIB: usize = 1024 * 1024;
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/big", Reply::streamed(&feed, CACHEABLE));
    let chunk = bytes::Bytes::from(vec![b'x'; MIB]);
    for _ in 0..26 {
        feed.send(chunk.clone());
    }
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/big")).expect("streamed before the end");
    assert_eq!((r.status, cache_state(&r)), (200, "MISS"));
    pool.run_until_stalled();
    block_on(b.run_background());
    assert_eq!(feed.cancelled(), 2, "the teed stream, and the store's branch once past 25 MiB (nothing more is buffered for it)");
    feed.send(chunk.clone());
    feed.finish();
    block_on(async {
        assert_eq!(read_body(&r.body).await.expect("whole").len(), 27 * MIB, "the visitor gets every byte");
        b.run_background().await;
        assert_eq!(stored(&b, "/big").await, None);
        let key = layout::page_key(&b.config.cache_version, "site.test/big");
        assert_eq!(b.logger.count_event("not_stored", &key), 1, "{:?}", b.logger.lines());
        assert_eq!(b.logger.count("too-large"), 1);
    });
}

#[test]
fn visitors_sharing_a_streamed_miss_get_the_whole_page() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/shared", Reply::streamed(&feed, CACHEABLE));
    feed.send("first part, ");
    let mut pool = LocalPool::new();
    let results = spawn_visitors(&pool, &b, "/shared", 3);
    let (origin_feed, seen) = (feed.clone(), results.clone());
    let answered_before_the_end = Rc::new(std::cell::Cell::new(false));
    let answered = answered_before_the_end.clone();
    pool.spawner()
        .spawn_local(async move {
            // The origin finishes once the first visitor has its answer (or after a while).
            for _ in 0..1_000 {
                if !seen.borrow().is_empty() {
                    answered.set(true);
                    break;
                }
                yield_once().await;
            }
            for _ in 0..50 {
                yield_once().await;
            }
            origin_feed.send("second part");
            origin_feed.finish();
        })
        .unwrap();
    let (bench, done) = (b.clone(), results.clone());
    pool.spawner()
        .spawn_local(async move {
            // waitUntil: background work runs while visitors wait.
            while done.borrow().len() < 3 {
                bench.run_background().await;
                yield_once().await;
            }
        })
        .unwrap();
    pool.run();
    block_on(b.run_background());
    assert!(answered_before_the_end.get(), "the first visitor had its answer while the others waited");
    let answers = results.borrow();
    assert_eq!(answers.len(), 3);
    for r in answers.iter() {
        assert_eq!((r.status, cache_state(r), body(r).as_str()), (200, "MISS", "first part, second part"));
    }
    assert_eq!(answers.iter().filter(|r| stream_of(&r.body).is_some()).count(), 1, "only the first visitor's answer is a stream");
    assert_eq!(b.origin.renders("/shared"), 1, "one origin render for the three");
}

#[test]
fn an_answer_not_to_store_streams_as_it_is_and_is_never_read() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/dl", Reply::streamed(&feed, &[("cache-control", "no-store")]));
    feed.send("a large download, ");
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/dl")).expect("passed on at once");
    assert_eq!((r.status, cache_state(&r)), (200, "BYPASS"));
    assert_eq!(feed.branches(), 1, "not split: nothing is read or held for the store");
    feed.send("the rest");
    feed.finish();
    block_on(async {
        assert_eq!(read_body(&r.body).await.expect("whole"), b"a large download, the rest");
        b.run_background().await;
        assert_eq!(stored(&b, "/dl").await, None);
    });
}

#[test]
fn a_body_that_stalls_is_not_stored_and_its_visitor_keeps_receiving() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/stall", Reply::streamed(&feed, CACHEABLE));
    feed.send("before the stall, ");
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/stall")).expect("streamed");
    let background = b.clone();
    pool.spawner().spawn_local(async move { background.run_background().await }).unwrap();
    pool.run_until_stalled();
    b.clock.advance(STREAMED_BODY_LIMIT_MS - 1);
    pool.run_until_stalled();
    assert_eq!(feed.cancelled(), 1, "still waiting (only the teed stream is cancelled)");
    b.clock.advance(1);
    pool.run_until_stalled();
    assert_eq!(feed.cancelled(), 2, "the store's branch is cancelled at the limit");
    let key = layout::page_key(&b.config.cache_version, "site.test/stall");
    assert_eq!(b.logger.count_event("not_stored", &key), 1, "{:?}", b.logger.lines());
    feed.send("after");
    feed.finish();
    block_on(async {
        assert_eq!(read_body(&r.body).await.expect("whole"), b"before the stall, after");
        b.run_background().await;
        assert_eq!(stored(&b, "/stall").await, None);
    });
}

#[test]
fn a_head_miss_answers_from_the_head_and_stores_the_whole_page() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/h", Reply::streamed(&feed, CACHEABLE));
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, Request::new("HEAD", "https://site.test/h")).expect("answered from the head");
    assert_eq!((r.status, cache_state(&r), body(&r).as_str()), (200, "MISS", ""));
    assert_eq!(feed.branches(), 1, "not split: the visitor needs no body");
    feed.send("whole page");
    feed.finish();
    block_on(async {
        b.run_background().await;
        assert_eq!(stored(&b, "/h").await.as_deref(), Some("whole page"));
    });
}

#[test]
fn a_declared_length_over_the_kv_limit_is_passed_on_unread() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    let over = (crate::store::limits::MAX_VALUE_BYTES + 1).to_string();
    b.origin.reply("/huge", Reply::streamed(&feed, &[("cache-control", "s-maxage=60"), ("content-length", over.as_str())]));
    feed.send("the start of a huge page");
    let mut pool = LocalPool::new();
    let r = answer_while_the_origin_holds(&b, &mut pool, get("/huge")).expect("passed on at once");
    assert_eq!((r.status, cache_state(&r), r.headers.get("x-isr-reason")), (200, "BYPASS", Some("too-large")));
    assert_eq!(feed.branches(), 1, "not split: nothing is read or held for the store");
    feed.finish();
    block_on(async {
        assert_eq!(read_body(&r.body).await.expect("whole"), b"the start of a huge page");
        b.run_background().await;
        assert_eq!(stored(&b, "/huge").await, None);
    });
}

#[test]
fn an_error_answer_is_read_whole_shared_and_keeps_the_expired_page() {
    let b = Rc::new(Bench::with_config(config_with(&[("STALE_IF_ERROR_S", "0")])));
    b.origin.reply("/e", Reply::page("good", &[("cache-control", "s-maxage=10")]));
    block_on(async {
        b.get("/e").await;
        b.run_background().await;
    });
    b.clock.advance(10_000);
    let feed = BodyFeed::new();
    b.origin.reply("/e", Reply::Streamed { status: 503, headers: vec![("retry-after".into(), "5".into())], feed: feed.clone() });
    feed.send("down for ");
    let mut pool = LocalPool::new();
    assert!(answer_while_the_origin_holds(&b, &mut pool, get("/e")).is_none(), "an error answer is read whole before it is answered");
    feed.send("maintenance");
    feed.finish();
    pool.run_until_stalled();
    block_on(async {
        b.run_background().await;
        let key = layout::page_key(&b.config.cache_version, "site.test/e");
        assert_eq!(stored(&b, "/e").await.as_deref(), Some("good render=1"), "a failing origin never replaces a page");
        let again = b.get("/e").await;
        assert_eq!((again.status, body(&again).as_str()), (503, "down for maintenance"), "answered again during the back-off");
        assert_eq!(b.origin.renders("/e"), 2, "the back-off asks the origin nothing: {:?}", b.logger.count_event("miss_failed", &key));
    });
}

#[test]
fn a_body_already_whole_with_its_head_is_answered_whole_with_its_etag() {
    let b = Rc::new(Bench::new());
    let feed = BodyFeed::new();
    b.origin.reply("/quick", Reply::streamed(&feed, CACHEABLE));
    feed.send("all of it");
    feed.finish();
    block_on(async {
        let r = b.get("/quick").await;
        assert_eq!((cache_state(&r), body(&r).as_str()), ("MISS", "all of it"));
        assert!(stream_of(&r.body).is_none(), "the stored copy, not the stream");
        assert!(r.headers.get("etag").is_some());
        assert_eq!(feed.cancelled(), 2, "the teed stream, and the visitor's branch nobody reads");
        b.run_background().await;
        assert_eq!(stored(&b, "/quick").await.as_deref(), Some("all of it"));
    });
}

//! Every path by which an invalidation could be lost or weakened, each reproduced: a second
//! publish during a regeneration, a write retried after 429, a failed queue hand-off, a write
//! landing after the re-check, the tag index, and targets spelled differently from the keys.

use crate::engine::jobs::{recheck_delay_s, Invalidation, InvalidationMode, Job, MemoryJobQueue};
use crate::http::Request;
use crate::rules::config::Config;
use crate::rules::meta::PageMeta;
use crate::store::memory::{MemoryKv, Op};
use crate::store::{layout, KvStore, PutOptions, StoreError};
use crate::testing::{body, cache_state, Bench, FakeOrigin, Reply};
use futures::executor::{block_on, LocalPool};
use futures::task::LocalSpawnExt;
use futures::FutureExt;
use std::rc::Rc;

fn hosts() -> Vec<String> {
    vec!["site.test".to_string()]
}

fn tag(t: &str, mode: InvalidationMode) -> Invalidation {
    Invalidation {
        tags: vec![t.to_string()],
        mode,
        ..Default::default()
    }
}

fn page(content: &str) -> Reply {
    Reply::page(content, &[("cache-control", "s-maxage=3600"), ("cache-tag", "t")])
}

/// `/p` rendered ("one", tag `t`, fresh for an hour) and written.
async fn store_p(b: &Bench) {
    b.origin.reply("/p", page("one"));
    b.get("/p").await;
    b.run_background().await;
}

async fn meta_of(kv: &MemoryKv, id: &str) -> Option<PageMeta> {
    let v = KvStore::get(kv, &layout::page_key("1", id)).await.unwrap()?;
    PageMeta::decode(v.metadata.as_deref()).ok()
}

/// Stores `/p` (tag `t`, fresh for an hour), publishes once (stale), and has a visitor start
/// the regeneration, which is held at the origin: returns the pool running it and the gate.
fn regeneration_in_flight_after_a_first_publish(b: &Rc<Bench>, pool: &mut LocalPool) -> crate::testing::Gate {
    b.origin.reply("/p", page("one"));
    pool.run_until(async {
        b.get("/p").await;
        b.run_background().await;
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        b.clock.advance(1_000);
        b.origin.reply("/p", page("two"));
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
    });
    let gate = b.origin.hold();
    for task in b.queue.take_all() {
        pool.spawner().spawn_local(task).unwrap();
    }
    pool.run_until_stalled();
    gate
}

#[test]
fn a_second_publish_during_the_regeneration_of_the_first_is_not_lost() {
    let b = Rc::new(Bench::new());
    let mut pool = LocalPool::new();
    let gate = regeneration_in_flight_after_a_first_publish(&b, &mut pool);
    // The editor publishes again while render 2 (started before this publish) is in flight.
    pool.run_until(async {
        b.clock.advance(1_000);
        let second = b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        assert_eq!(second.tags[0].1.marked, 1, "the already-stale page is marked again, later");
    });
    b.origin.reply("/p", page("three"));
    gate.open();
    pool.run();
    pool.run_until(async {
        b.clock.advance(1_000);
        let next = b.get("/p").await;
        assert_eq!(cache_state(&next), "STALE", "render 2 predates the second publish: {}", body(&next));
        b.run_background().await;
        let after = b.get("/p").await;
        assert_eq!(cache_state(&after), "HIT");
        assert!(body(&after).starts_with("three"), "{}", body(&after));
    });
}

#[test]
fn an_expire_after_a_stale_mark_expires_even_during_the_regeneration() {
    let b = Rc::new(Bench::new());
    let mut pool = LocalPool::new();
    let gate = regeneration_in_flight_after_a_first_publish(&b, &mut pool);
    pool.run_until(async {
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Expire)).await;
    });
    b.origin.reply("/p", page("three"));
    gate.open();
    pool.run();
    pool.run_until(async {
        b.clock.advance(1_000);
        let next = b.get("/p").await;
        assert_eq!(cache_state(&next), "MISS", "a hard purge after render 2 started: {}", body(&next));
        assert!(body(&next).starts_with("three"), "{}", body(&next));
    });
}

#[test]
fn an_expire_after_a_stale_mark_expires() {
    let b = Bench::new();
    block_on(async {
        store_p(&b).await;
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        b.clock.advance(1_000);
        let hard = b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Expire)).await;
        assert_eq!(hard.tags[0].1.marked, 1);
        b.origin.reply("/p", page("two"));
        let r = b.get("/p").await;
        assert_eq!((cache_state(&r), body(&r).starts_with("two")), ("MISS", true));
    });
}

#[test]
fn the_recheck_of_one_invalidation_writes_nothing_but_a_later_one_rewrites() {
    let b = Bench::new();
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        store_p(&b).await;
        b.clock.advance(1_000);
        b.engine().with_jobs(jobs.clone()).invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        let (recheck, _) = jobs.take_all().pop().unwrap();
        b.clock.advance(90_000);
        b.kv.reset_counts();
        let report = b.engine().run_job(recheck).await;
        assert_eq!((report.pages, report.marked, b.kv.counts().puts), (1, 0, 0));
        let first_at = meta_of(&b.kv, "site.test/p").await.unwrap().invalidated_at.unwrap();
        b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        let later_at = meta_of(&b.kv, "site.test/p").await.unwrap().invalidated_at.unwrap();
        assert!(later_at > first_at, "the latest invalidation is kept ({first_at} -> {later_at})");
    });
}

#[test]
fn an_older_render_never_replaces_a_newer_one_two_renders_in_flight() {
    let b = Rc::new(Bench::new());
    let mut pool = LocalPool::new();
    // Render A: the regeneration after publish 1, started before publish 2, held at the origin.
    let gate = regeneration_in_flight_after_a_first_publish(&b, &mut pool);
    // Publish 2 is a hard purge; another isolate's visitor renders B (after publish 2) and stores it.
    let other = Bench {
        origin: FakeOrigin::new(),
        ..b.other_isolate(0)
    };
    other.origin.reply("/p", page("three"));
    pool.run_until(async {
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Expire)).await;
        b.clock.advance(1_000);
        let miss = other.get("/p").await;
        assert_eq!(cache_state(&miss), "MISS");
        other.run_background().await;
        b.clock.advance(1_000);
    });
    // Only now does render A (content of before publish 2) finish and get written.
    gate.open();
    pool.run();
    pool.run_until(async {
        b.clock.advance(1_000);
        let r = other.get("/p").await;
        assert_eq!(cache_state(&r), "HIT");
        assert!(body(&r).starts_with("three"), "the newer render B stays: {}", body(&r));
    });
}

#[test]
fn a_page_write_retried_after_429_keeps_a_mark_that_landed_meanwhile() {
    let b = Bench::new();
    block_on(async {
        store_p(&b).await;
        b.clock.advance(3_700_000);
        b.origin.reply("/p", page("two"));
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
        // Render 2 is done; between its re-read of the page and its write, the webhook marks
        // the page (so the write gets 429 and is retried a second later).
        let (engine, clock) = (b.engine(), b.clock.clone());
        b.kv.before_next(Op::Put, "p/1/site.test/p", move || {
            clock.advance(5);
            let marked = engine.invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).now_or_never().unwrap();
            assert_eq!(marked.tags[0].1.marked, 1);
        });
        b.run_background().await;
        b.clock.advance(1_000);
        let next = b.get("/p").await;
        assert_eq!(cache_state(&next), "STALE", "render 2 predates the mark: {}", body(&next));
    });
}

#[test]
fn a_failed_queue_send_is_answered_503_so_the_cms_retries() {
    let mut config = Config::for_origin("http://origin.test");
    config.revalidate_secret = "a-webhook-secret-of-32-characters".into();
    let b = Bench::with_config(config);
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        store_p(&b).await;
        b.clock.advance(1_000);
        jobs.fail_next_sends(1);
        let req = Request::new("POST", "https://site.test/api/revalidate?tag=t")
            .with_header("authorization", &format!("Bearer {}", b.config.revalidate_secret));
        let resp = b.engine().with_jobs(jobs.clone()).handle(req).await;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(resp.status, 503, "{json}");
        assert_eq!(json["complete"], false, "{json}");
        assert!(json["error"].as_str().unwrap_or("").contains("queue"), "{json}");
    });
}

#[test]
fn a_queue_job_that_could_not_finish_asks_to_be_retried() {
    let b = Bench::new();
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        store_p(&b).await;
        b.clock.advance(1_000);
        b.engine().with_jobs(jobs.clone()).invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        let (recheck, _) = jobs.take_all().pop().unwrap();
        // Meanwhile an old render was written as fresh elsewhere; the re-check must mark it,
        // but KV fails that write.
        let key = layout::page_key("1", "site.test/p");
        let stored = KvStore::get(&b.kv, &key).await.unwrap().unwrap();
        let mut meta = PageMeta::decode(stored.metadata.as_deref()).unwrap();
        meta.invalidated_at = None;
        b.clock.advance(5_000);
        let opts = PutOptions { metadata: Some(meta.encode().unwrap()), expiration_ttl: None };
        KvStore::put(&b.kv, &key, stored.value, opts).await.unwrap();
        b.kv.fail_next_for(Op::Put, &key, StoreError::Unavailable("boom".into()));
        let first = b.engine().with_jobs(jobs.clone()).run_queued(Job::Sweep(recheck.clone())).await;
        assert!(first.is_err(), "not acked: the queue delivers it again");
        let again = b.engine().with_jobs(jobs.clone()).run_queued(Job::Sweep(recheck)).await;
        assert!(again.is_ok(), "{again:?}");
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
    });
}

#[test]
fn the_recheck_waits_for_the_longest_miss_a_render_can_take() {
    let mut config = Config::for_origin("http://origin.test");
    config.origin_timeout_ms = 120_000;
    let b = Bench::with_config(config.clone());
    let b = Bench { kv: b.kv.clone().with_propagation_delay(60_000), ..b };
    let far = b.other_isolate(1);
    let jobs = Rc::new(MemoryJobQueue::new());
    let delay = recheck_delay_s(&config);
    block_on(async {
        store_p(&b).await;
        b.clock.advance(61_000);
        // Far away, a visitor's MISS render started just before the invalidation ...
        let started = crate::runtime::clock::Clock::now_ms(&b.clock);
        b.clock.advance(10);
        let outcome = b.engine().with_jobs(jobs.clone()).invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        let json = outcome.to_json(InvalidationMode::Stale);
        assert_eq!(json["recheck_in_s"], delay, "{json}");
        // ... waits the whole origin timeout, and its write (after 429 back-off) lands there,
        // where the mark is not visible yet. The queue delivers the re-check after `delay`.
        let (recheck, d) = jobs.take_all().pop().unwrap();
        assert_eq!(d, delay);
        let write_at = started + config.origin_timeout_ms + 7_000;
        let recheck_at = outcome.at + u64::from(delay) * 1000;
        let far_write = || async {
            let key = layout::page_key("1", "site.test/p");
            let stored = KvStore::get(&far.kv, &key).await.unwrap().unwrap();
            let mut meta = PageMeta::decode(stored.metadata.as_deref()).unwrap();
            meta.rendered_at = started;
            meta.invalidated_at = None;
            let opts = PutOptions { metadata: Some(meta.encode().unwrap()), expiration_ttl: None };
            KvStore::put(&far.kv, &key, stored.value, opts).await.unwrap();
        };
        // Both events in the order of their times.
        if recheck_at < write_at {
            b.clock.set(recheck_at);
            b.engine().with_jobs(jobs.clone()).run_job(recheck).await;
            b.clock.set(write_at);
            far_write().await;
        } else {
            b.clock.set(write_at);
            far_write().await;
            b.clock.set(recheck_at);
            b.engine().with_jobs(jobs.clone()).run_job(recheck).await;
        }
        b.clock.advance(60_000);
        assert_eq!(cache_state(&b.get("/p").await), "STALE", "the late old render was caught");
    });
}

/// A write to keys starting with `prefix` fails once.
fn fail_index_write(kv: &MemoryKv, prefix: &str) {
    kv.fail_next_for(Op::Put, prefix, StoreError::Unavailable("index write failed".into()));
}

#[test]
fn a_failed_tag_index_write_does_not_leave_the_page_out_of_its_tag() {
    let b = Bench::new();
    block_on(async {
        b.origin.reply("/p", Reply::page("one", &[("cache-control", "s-maxage=10"), ("cache-tag", "t")]));
        fail_index_write(&b.kv, "t/1/t/");
        b.get("/p").await;
        b.run_background().await;
        // A regeneration with the same tags.
        b.clock.advance(11_000);
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
        b.run_background().await;
        b.clock.advance(1_000);
        let outcome = b.engine().invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).await;
        assert_eq!(outcome.tags[0].1.marked, 1, "the page is in its tag");
    });
}

#[test]
fn missing_pages_add_nothing_to_the_tag_index_and_expire_on_their_own() {
    let site = crate::site::Site::new().route("/blog/:slug", crate::site::Route::proxy().tags(["posts"]));
    let b = Bench::new().with_site(site);
    block_on(async {
        for i in 0..20 {
            let path = format!("/blog/missing-{i}");
            b.origin.reply(&path, Reply::status_page(404, "gone", &[("cache-tag", "posts")]));
            assert_eq!(b.get(&path).await.status, 404);
            b.run_background().await;
        }
        let keys = b.kv.visible_keys();
        assert!(keys.iter().all(|k| !k.starts_with("t/") && !k.starts_with("g/")), "{keys:?}");
        assert_eq!(keys.iter().filter(|k| k.starts_with("p/")).count(), 20);
        // A marked 404 keeps its expiry.
        let req = Invalidation { prefixes: vec!["/blog/".into()], ..Default::default() };
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &req).await;
        b.clock.advance(24 * 3600 * 1000);
        let keys = b.kv.visible_keys();
        assert!(keys.iter().all(|k| !k.starts_with("p/")), "stored 404s expired: {keys:?}");
    });
}

#[test]
fn a_removed_page_takes_its_index_entries_with_it() {
    let b = Bench::new();
    block_on(async {
        b.origin.reply("/p", Reply::page("one", &[("cache-control", "s-maxage=10"), ("cache-tag", "t")]));
        b.get("/p").await;
        b.run_background().await;
        assert!(b.kv.visible_keys().iter().any(|k| k.starts_with("t/1/t/")));
        b.clock.advance(11_000);
        b.origin.reply("/p", Reply::page("one", &[("cache-control", "private")]));
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
        b.run_background().await;
        let keys = b.kv.visible_keys();
        assert!(keys.is_empty() || keys.iter().all(|k| k.starts_with("l/")), "{keys:?}");
    });
}

/// Stores pages at `paths` of `host` (the bench's default host unless one is given).
async fn store_at(b: &Bench, urls: &[&str]) {
    for url in urls {
        b.send(Request::new("GET", url)).await;
        b.run_background().await;
    }
}

#[test]
fn paths_and_prefixes_match_percent_encoded_and_raw_spellings() {
    let b = Bench::new();
    block_on(async {
        store_at(&b, &["https://site.test/caf%C3%A9/menu", "https://site.test/caf%c3%a9/", "https://site.test/other"]).await;
        b.clock.advance(1_000);
        let req = Invalidation {
            prefixes: vec!["/café/".into()],
            ..Default::default()
        };
        let outcome = b.engine().invalidate(&hosts(), &req).await;
        assert_eq!(outcome.prefixes[0].1.marked, 2, "{outcome:?}");
        b.clock.advance(1_000);
        let req = Invalidation {
            paths: vec!["/café/menu".into(), "/caf%c3%a9/".into()],
            ..Default::default()
        };
        let outcome = b.engine().invalidate(&hosts(), &req).await;
        assert_eq!((outcome.paths[0].1.marked, outcome.paths[1].1.marked), (1, 1), "{outcome:?}");
        assert_eq!(cache_state(&b.get("/other").await), "HIT");
    });
}

#[test]
fn paths_and_prefixes_reach_every_host_of_cache_hosts() {
    let mut config = Config::for_origin("http://origin.test");
    config.cache_hosts = vec!["a.test".into(), "b.test".into()];
    let b = Bench::with_config(config);
    block_on(async {
        store_at(&b, &["https://a.test/x", "https://b.test/x", "https://a.test/d/1", "https://b.test/d/2"]).await;
        b.clock.advance(1_000);
        let req = Invalidation {
            paths: vec!["/x".into()],
            prefixes: vec!["/d/".into()],
            ..Default::default()
        };
        let hosts = b.engine().invalidation_hosts(&Request::new("POST", "https://a.test/api/revalidate"));
        let outcome = b.engine().invalidate(&hosts, &req).await;
        assert_eq!((outcome.paths[0].1.marked, outcome.prefixes[0].1.marked), (2, 2), "{outcome:?}");
    });
}

#[test]
fn a_prefix_reaches_pages_whose_keys_were_shortened() {
    let b = Bench::new();
    let long = format!("/{}/", "a".repeat(450));
    block_on(async {
        store_at(&b, &[&format!("https://site.test{long}one"), &format!("https://site.test{long}two"), "https://site.test/b"]).await;
        b.clock.advance(1_000);
        let req = Invalidation {
            prefixes: vec![long.clone()],
            ..Default::default()
        };
        let outcome = b.engine().invalidate(&hosts(), &req).await;
        assert_eq!(outcome.prefixes[0].1.marked, 2, "{outcome:?}");
        assert_eq!(cache_state(&b.get("/b").await), "HIT");
        b.clock.advance(1_000);
        let exact = Invalidation {
            paths: vec![format!("{long}one")],
            ..Default::default()
        };
        assert_eq!(b.engine().invalidate(&hosts(), &exact).await.paths[0].1.marked, 1);
    });
}

#[test]
fn an_entry_that_cannot_match_any_page_is_not_complete() {
    let b = Bench::new();
    block_on(async {
        let req = Invalidation {
            // Within the webhook's 1,024 characters, but over the key's 2,048 bytes once encoded.
            paths: vec![format!("/{}", "é".repeat(1000))],
            ..Default::default()
        };
        let outcome = b.engine().invalidate(&hosts(), &req).await;
        let json = outcome.to_json(InvalidationMode::Stale);
        assert_eq!(json["complete"], false, "{json}");
        assert!(json["paths"].to_string().contains("error"), "{json}");
        let none = b.engine().invalidate(&[], &Invalidation { prefixes: vec!["/".into()], ..Default::default() }).await;
        assert_eq!(none.to_json(InvalidationMode::Stale)["complete"], false);
    });
}

#[test]
fn the_recheck_delay_covers_the_configured_timeouts() {
    let mut config = Config::for_origin("http://origin.test");
    assert_eq!(recheck_delay_s(&config), 90, "the defaults: 20 s regeneration + 7 s of retries + 60 s + margin");
    config.origin_timeout_ms = 120_000;
    assert!(recheck_delay_s(&config) >= 120 + 7 + 60);
}

#[test]
fn a_304_refresh_retried_after_429_keeps_a_mark_that_landed_meanwhile() {
    let b = Bench::new();
    block_on(async {
        let same = Reply::page("same", &[("cache-control", "s-maxage=10"), ("cache-tag", "t"), ("etag", "\"v1\"")]);
        b.origin.reply("/p", same);
        b.get("/p").await;
        b.run_background().await;
        b.clock.advance(11_000);
        assert_eq!(cache_state(&b.get("/p").await), "STALE");
        let (engine, clock) = (b.engine(), b.clock.clone());
        b.kv.before_next(Op::Put, "p/1/site.test/p", move || {
            clock.advance(5);
            let marked = engine.invalidate(&hosts(), &tag("t", InvalidationMode::Stale)).now_or_never().unwrap();
            assert_eq!(marked.tags[0].1.marked, 1);
        });
        b.run_background().await;
        assert_eq!(b.origin.not_modified("/p"), 1, "the regeneration was a 304 refresh");
        b.clock.advance(1_000);
        assert_eq!(cache_state(&b.get("/p").await), "STALE", "the refresh predates the mark");
    });
}

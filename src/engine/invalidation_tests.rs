//! On-demand invalidation: paths, prefixes, tags at scale, expire mode, and the race with
//! regenerations in flight.

use crate::engine::jobs::{recheck_delay_s, Invalidation, InvalidationMode, MemoryJobQueue, SweepJob, OPS_PER_INVOCATION};
use crate::store::memory::MemoryKv;
use crate::testing::{body, cache_state, Bench, FakeOrigin, Reply};
use futures::executor::block_on;
use std::rc::Rc;

fn hosts() -> Vec<String> {
    vec!["site.test".to_string()]
}

fn tags(t: &[&str]) -> Invalidation {
    Invalidation {
        tags: t.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn engine_with_jobs(b: &Bench, jobs: &Rc<MemoryJobQueue>) -> super::Engine<MemoryKv, FakeOrigin> {
    b.engine().with_jobs(jobs.clone())
}

/// Stores `paths`, each tagged with `tag`, and lets their writes land.
async fn store_tagged(b: &Bench, paths: &[String], tag: &str) {
    for p in paths {
        b.origin.reply(p, Reply::page("v1", &[("cache-tag", tag)]));
        b.get(p).await;
        b.run_background().await;
    }
}

#[test]
fn a_tag_makes_every_tagged_page_stale_then_fresh_and_leaves_others_alone() {
    let b = Bench::new();
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        let posts: Vec<String> = (0..3).map(|i| format!("/blog/{i}")).collect();
        store_tagged(&b, &posts, "posts").await;
        store_tagged(&b, &["/about".to_string()], "pages").await;
        b.clock.advance(1_000);
        let outcome = engine_with_jobs(&b, &jobs).invalidate(&hosts(), &tags(&["posts"])).await;
        let (tag, report) = &outcome.tags[0];
        assert_eq!((tag.as_str(), report.pages, report.marked, report.complete), ("posts", 3, 3, true));
        assert_eq!(cache_state(&b.get("/about").await), "HIT", "other pages untouched");
        for p in &posts {
            b.origin.reply(p, Reply::page("v2", &[("cache-tag", "posts")]));
            let stale = b.get(p).await;
            assert_eq!((cache_state(&stale), body(&stale).starts_with("v1")), ("STALE", true), "{p}");
            b.run_background().await;
            let fresh = b.get(p).await;
            assert_eq!((cache_state(&fresh), body(&fresh).starts_with("v2")), ("HIT", true), "{p}");
        }
        let queued = jobs.take_all();
        assert_eq!(queued.len(), 1, "the re-check pass");
        assert_eq!((queued[0].0.pass, queued[0].1), (2, recheck_delay_s(&b.config)));
    });
}

#[test]
fn paths_and_prefixes() {
    let b = Bench::new();
    block_on(async {
        for p in ["/docs/a", "/docs/b/c", "/docsx", "/other"] {
            b.get(p).await;
            b.run_background().await;
        }
        b.clock.advance(1_000);
        let req = Invalidation {
            paths: vec!["/other".into(), "/never-rendered".into()],
            prefixes: vec!["/docs/".into()],
            ..Default::default()
        };
        let outcome = b.engine().invalidate(&hosts(), &req).await;
        assert_eq!(outcome.paths[0].1.pages, 1);
        assert_eq!(outcome.paths[1].1.pages, 0);
        assert_eq!(outcome.prefixes[0].1.pages, 2);
        for (p, state) in [("/docs/a", "STALE"), ("/docs/b/c", "STALE"), ("/docsx", "HIT"), ("/other", "STALE")] {
            assert_eq!(cache_state(&b.get(p).await), state, "{p}");
        }
    });
}

#[test]
fn invalidating_twice_in_the_same_millisecond_writes_once() {
    // (A later invalidation rewrites the page: see lost_invalidation_tests.)
    let b = Bench::new();
    block_on(async {
        store_tagged(&b, &["/x".to_string()], "t").await;
        b.clock.advance(1_000);
        b.engine().invalidate(&hosts(), &tags(&["t"])).await;
        b.kv.reset_counts();
        let again = b.engine().invalidate(&hosts(), &tags(&["t"])).await;
        assert_eq!((again.tags[0].1.pages, again.tags[0].1.marked), (1, 0));
        assert_eq!(b.kv.counts().puts, 0);
    });
}

#[test]
fn expire_mode_renders_synchronously() {
    let b = Bench::new();
    block_on(async {
        store_tagged(&b, &["/e".to_string()], "t").await;
        b.clock.advance(1_000);
        let req = Invalidation {
            mode: InvalidationMode::Expire,
            ..tags(&["t"])
        };
        b.engine().invalidate(&hosts(), &req).await;
        b.origin.reply("/e", Reply::page("new", &[("cache-tag", "t")]));
        let r = b.get("/e").await;
        assert_eq!((cache_state(&r), body(&r).starts_with("new")), ("MISS", true));
    });
}

#[test]
fn a_tag_on_more_pages_than_one_invocation_can_touch_continues_in_jobs() {
    let b = Bench::new();
    let jobs = Rc::new(MemoryJobQueue::new());
    let n = 1200;
    block_on(async {
        let paths: Vec<String> = (0..n).map(|i| format!("/p/{i:05}")).collect();
        store_tagged(&b, &paths, "big").await;
        b.clock.advance(1_000);
        b.kv.begin_invocation();
        let outcome = engine_with_jobs(&b, &jobs).invalidate(&hosts(), &tags(&["big"])).await;
        let first = &outcome.tags[0].1;
        assert!(!first.complete);
        assert!(first.pages > 0 && first.pages < n);
        assert!(b.kv.ops_this_invocation() <= 1000, "stayed within KV's per-invocation limit");
        let mut marked = first.marked;
        let mut invocations = 1;
        // The queue consumer: each job is a new invocation with its own 1,000 operations.
        loop {
            let pending: Vec<(SweepJob, u32)> = jobs.take_all();
            let Some((job, delay)) = pending.into_iter().next() else { break };
            if job.pass == 2 {
                assert_eq!(delay, recheck_delay_s(&b.config));
                break;
            }
            b.kv.begin_invocation();
            marked += engine_with_jobs(&b, &jobs).run_job(job).await.marked;
            assert!(b.kv.ops_this_invocation() <= 1000);
            invocations += 1;
        }
        assert_eq!(marked, n, "every page was reached");
        assert!(invocations >= 3, "{invocations} invocations");
        let per_page = f64::from(OPS_PER_INVOCATION) / 2.0;
        assert!(f64::from(first.pages) >= per_page - 2.0, "about {per_page} pages per invocation, got {}", first.pages);
    });
}

#[test]
fn a_render_that_started_before_an_invalidation_is_not_stored_as_fresh() {
    use futures::task::LocalSpawnExt;
    let b = Rc::new(Bench::new());
    let mut pool = futures::executor::LocalPool::new();
    b.origin.reply("/race", Reply::page("old", &[("cache-control", "s-maxage=10"), ("cache-tag", "t")]));
    pool.run_until(async {
        b.get("/race").await;
        b.run_background().await;
        b.clock.advance(10_000);
        // A visitor makes the page STALE: its regeneration is queued but has not run.
        assert_eq!(cache_state(&b.get("/race").await), "STALE");
    });
    // The regeneration starts rendering (old content) and is held at the origin ...
    let gate = b.origin.hold();
    for task in b.queue.take_all() {
        pool.spawner().spawn_local(task).unwrap();
    }
    pool.run_until_stalled();
    // ... the editor publishes and the webhook invalidates the tag ...
    let b2 = b.clone();
    pool.run_until(async move {
        b2.clock.advance(1_000);
        b2.engine().invalidate(&hosts(), &tags(&["t"])).await;
    });
    // ... and only then does the old render finish and get written.
    gate.open();
    pool.run();
    b.origin.reply("/race", Reply::page("new", &[("cache-control", "s-maxage=10"), ("cache-tag", "t")]));
    pool.run_until(async {
        b.clock.advance(1_000);
        let next = b.get("/race").await;
        assert_eq!(cache_state(&next), "STALE", "the late write of an old render is not fresh");
        b.run_background().await;
        let after = b.get("/race").await;
        assert!(body(&after).starts_with("new"), "{}", body(&after));
    });
}

#[test]
fn the_recheck_pass_catches_an_old_render_written_elsewhere_after_the_sweep() {
    let b = Bench::new();
    let b = Bench { kv: b.kv.clone().with_propagation_delay(60_000), ..b };
    let far = b.other_isolate(1);
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        store_tagged(&b, &["/far".to_string()], "t").await;
        b.clock.advance(60_000);
        // Far away, a render starts before the invalidation ...
        far.origin.reply("/far", Reply::page("old", &[("cache-tag", "t"), ("cache-control", "s-maxage=1")]));
        b.clock.advance(1_000);
        // ... here, the invalidation marks the page; far away, the old render's write lands later
        // and cannot see the mark yet (KV propagation), so it is stored as fresh there.
        let at_before = crate::runtime::clock::Clock::now_ms(&b.clock);
        engine_with_jobs(&b, &jobs).invalidate(&hosts(), &tags(&["t"])).await;
        let key = crate::store::layout::page_key("1", "site.test/far");
        let stored = crate::store::KvStore::get(&far.kv, &key).await.unwrap().unwrap();
        let mut meta = crate::rules::meta::PageMeta::decode(stored.metadata.as_deref()).unwrap();
        meta.rendered_at = at_before - 500; // rendered before the invalidation
        meta.invalidated_at = None;
        meta.revalidate_s = 3600;
        b.clock.advance(1_000);
        let opts = crate::store::PutOptions { metadata: Some(meta.encode().unwrap()), expiration_ttl: None };
        crate::store::KvStore::put(&far.kv, &key, stored.value, opts).await.unwrap();
        b.clock.advance(u64::from(recheck_delay_s(&b.config)) * 1000);
        // The old render is now visible everywhere as fresh; the re-check pass runs.
        assert_eq!(cache_state(&b.get("/far").await), "HIT");
        let (recheck, _) = jobs.take_all().pop().unwrap();
        assert_eq!(recheck.pass, 2);
        b.kv.begin_invocation();
        let report = engine_with_jobs(&b, &jobs).run_job(recheck).await;
        assert_eq!(report.marked, 1);
        assert_eq!(cache_state(&b.get("/far").await), "STALE");
        assert!(jobs.is_empty(), "no third pass");
    });
}

//! The Workers Cache mode through the engine: the tier's fields on each kind of answer (mode on
//! and off), and the purges every invalidation sends (batched, within the limits, none lost),
//! against the model of the tier ([`crate::tier::model`]).

use crate::http::{Request, Response};
use crate::testing::{cache_state, Bench, Reply};
use crate::tier::headers::{CACHE_TAG, TIER_CACHE_CONTROL, UNPURGEABLE_LIFETIME_S};
use crate::tier::model::{ModelPurger, TierModel};
use crate::tier::purge::SETTLE_MS;
use crate::tier::tags::{path_tag, tier_tag};
use crate::runtime::clock::Clock;
use futures::executor::block_on;
use std::rc::Rc;

use crate::testing::config_with as config;

pub(super) fn webhook(body: serde_json::Value) -> Request {
    let mut req = Request::new("POST", "https://site.test/api/revalidate")
        .with_header("authorization", "Bearer s3cret")
        .with_header("content-type", "application/json");
    req.body = body.to_string().into_bytes().into();
    req
}

struct TierBench {
    b: Bench,
    tier: TierModel,
    purger: ModelPurger,
}

impl TierBench {
    fn new(mode: &str) -> TierBench {
        let b = Bench::with_config(config(&[("WORKERS_CACHE", mode)]));
        let tier = TierModel::new(1, Rc::new(b.clock.clone()));
        TierBench {
            purger: ModelPurger::new(tier.clone()),
            tier,
            b,
        }
    }

    async fn send(&self, req: Request) -> Response {
        self.b.kv.begin_invocation();
        self.b.engine().with_purger(Rc::new(self.purger.clone())).handle(req).await
    }

    async fn get(&self, path: &str) -> Response {
        let resp = self.send(Request::new("GET", &format!("https://site.test{path}"))).await;
        self.b.run_background().await;
        resp
    }
}

fn tier_field(resp: &Response) -> Option<&str> {
    resp.headers.get(TIER_CACHE_CONTROL)
}

#[test]
fn with_the_mode_off_the_tier_gets_nothing_and_the_downstream_headers_stay() {
    let t = TierBench::new("off");
    t.b.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts")]));
    block_on(async {
        for state in ["MISS", "HIT"] {
            let resp = t.get("/a").await;
            assert_eq!(cache_state(&resp), state);
            assert_eq!((tier_field(&resp), resp.headers.get(CACHE_TAG)), (None, None), "{state}");
            assert!(resp.headers.get("cache-control").is_some());
        }
        let w = t.send(webhook(serde_json::json!({ "tags": ["posts"] }))).await;
        assert_eq!(w.status, 200);
        t.b.run_background().await;
        assert!(t.tier.purges().is_empty(), "mode off: no purge");
    });
}

#[test]
fn with_the_mode_on_a_hit_is_kept_with_its_tags_and_nothing_else_is() {
    let t = TierBench::new("on");
    t.b.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts,Posts"), ("cache-control", "s-maxage=300")]));
    block_on(async {
        let miss = t.get("/a").await;
        assert_eq!(cache_state(&miss), "MISS");
        assert_eq!(tier_field(&miss), Some("no-store"), "a MISS may predate an invalidation already purged");
        t.b.clock.advance(2_000);
        let hit = t.get("/a").await;
        assert_eq!(cache_state(&hit), "HIT");
        // No coordinator: other locations learn of invalidations only through KV, so the copy
        // is kept short and never stale.
        assert_eq!(tier_field(&hit), Some(format!("max-age={UNPURGEABLE_LIFETIME_S}").as_str()));
        assert_eq!(hit.headers.get(CACHE_TAG), Some(format!("{},posts,{}", path_tag("/a"), tier_tag("Posts")).as_str()));
        let query = t.get("/a?utm_source=x").await;
        assert_eq!(cache_state(&query), "HIT");
        assert!(tier_field(&query).is_some_and(|v| v.starts_with("max-age=")), "query variants carry the same tags");
        let odd = t.get("/%61").await;
        if cache_state(&odd) == "HIT" {
            assert_eq!(tier_field(&odd), Some("no-store"), "a non-canonical URL would escape a prefix purge");
        }
        let post = t.send(Request::new("POST", "https://site.test/a")).await;
        assert_eq!(cache_state(&post), "BYPASS");
        assert_eq!(tier_field(&post), Some("no-store"));
        let w = t.send(webhook(serde_json::json!({ "tags": ["posts"] }))).await;
        assert_eq!(tier_field(&w), Some("no-store"));
        let stale = t.get("/a").await;
        assert_eq!(cache_state(&stale), "STALE");
        assert_eq!(tier_field(&stale), Some("no-store"));
        assert_eq!(stale.headers.get(CACHE_TAG), None);
    });
}

#[test]
fn a_page_stored_with_the_mode_off_is_not_kept_by_the_tier_until_it_is_rendered_again() {
    let off = Bench::with_config(config(&[]));
    off.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts")]));
    block_on(async {
        off.get("/a").await;
        off.run_background().await;
    });
    let on = Bench {
        config: Rc::new(config(&[("WORKERS_CACHE", "on")])),
        ..off
    };
    block_on(async {
        let hit = on.get("/a").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(hit.headers.get(TIER_CACHE_CONTROL), Some("no-store"), "its tags are not known");
    });
}

#[test]
fn every_invalidation_purges_the_tier_after_the_settle_time_within_the_limits() {
    let t = TierBench::new("on");
    block_on(async {
        let w = t.send(webhook(serde_json::json!({ "tags": ["posts", "Posts"], "paths": ["/blog/a?x=1"], "prefixes": ["/blog/"] }))).await;
        assert_eq!(w.status, 200);
        assert!(t.tier.purges().is_empty(), "nothing before the settle time");
        let start = t.b.clock.now_ms();
        t.b.run_background().await;
        let purges = t.tier.purges();
        assert_eq!(purges.len(), 1, "{purges:?}");
        let (at, request) = &purges[0];
        assert!(*at >= start + SETTLE_MS);
        let mut tags = request.tags.clone();
        tags.sort();
        // `x` is not a kept query parameter (CACHE_QUERY_PARAMS is empty): the page is /blog/a.
        let mut expected = vec!["posts".to_string(), tier_tag("Posts"), path_tag("/blog/a")];
        expected.sort();
        assert_eq!(tags, expected);
        assert_eq!(request.path_prefixes, ["/blog/"]);
    });
}

#[test]
fn a_burst_of_webhooks_is_batched_within_the_rate_limit_and_nothing_is_lost() {
    let t = TierBench::new("on");
    block_on(async {
        for i in 0..40 {
            let w = t.send(webhook(serde_json::json!({ "tags": [format!("post-{i}"), "posts"] }))).await;
            assert_eq!(w.status, 200);
            t.b.clock.advance(100);
        }
        t.b.run_background().await;
        let purges = t.tier.purges();
        assert_eq!(t.tier.counts().refused, 0, "never beyond the platform's limits");
        assert!(purges.len() <= 25, "{} requests for 40 webhooks within 4 s", purges.len());
        assert!(purges.iter().all(|(_, r)| r.len() <= 100));
        for i in 0..40 {
            let tag = format!("post-{i}");
            assert!(purges.iter().any(|(_, r)| r.purge_everything || r.tags.contains(&tag)), "{tag} never purged");
        }
        assert_eq!(t.b.isolate.tier_planner.borrow().backlog(), 0);
    });
}

#[test]
fn without_ctx_cache_nothing_is_purged_and_nothing_breaks() {
    let t = TierBench::new("on");
    t.purger.set_available(false);
    t.b.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts")]));
    block_on(async {
        t.get("/a").await;
        t.b.clock.advance(1_000);
        for _ in 0..2 {
            let w = t.send(webhook(serde_json::json!({ "tags": ["posts"] }))).await;
            assert_eq!(w.status, 200);
            t.b.run_background().await;
        }
        assert!(t.tier.purges().is_empty());
        assert_eq!(t.b.logger.count("ctx.cache is absent"), 1, "said once: {:?}", t.b.logger.lines());
        let stale = t.get("/a").await;
        assert_eq!(cache_state(&stale), "STALE");
    });
}

/// A clock whose sleeps end when the test moves time past them (not at once, as
/// [`crate::runtime::clock::ManualClock`]'s do), so that background purges wait for their
/// settle time and tokens while visitors keep coming.
#[derive(Clone, Default)]
pub(super) struct SimClock {
    pub(super) now: Rc<std::cell::Cell<u64>>,
    sleepers: Rc<std::cell::RefCell<Vec<(u64, std::task::Waker)>>>,
}

struct Sleep {
    clock: SimClock,
    until: u64,
}

impl std::future::Future for Sleep {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.clock.now.get() >= self.until {
            return std::task::Poll::Ready(());
        }
        self.clock.sleepers.borrow_mut().push((self.until, cx.waker().clone()));
        std::task::Poll::Pending
    }
}

impl SimClock {
    pub(super) fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
        let now = self.now.get();
        let due: Vec<std::task::Waker> = {
            let mut s = self.sleepers.borrow_mut();
            let (due, later): (Vec<_>, Vec<_>) = s.drain(..).partition(|(t, _)| *t <= now);
            *s = later;
            due.into_iter().map(|(_, w)| w).collect()
        };
        due.into_iter().for_each(|w| w.wake());
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn sleep(&self, ms: u64) -> futures_util::future::LocalBoxFuture<'static, ()> {
        Box::pin(Sleep { clock: self.clone(), until: self.now.get() + ms })
    }
    /// 10 ms, as on Workers: loops that look at another request's work until a deadline end.
    fn pause(&self) -> futures_util::future::LocalBoxFuture<'static, ()> {
        self.advance(10);
        crate::runtime::clock::ManualClock::new(0).pause()
    }
}

/// The real engine, three locations of the tier model in front of it (one isolate each, on one
/// KV location so that each learns of an invalidation at once, as with the coordinator), and a
/// burst of 100 publishes in one minute through the webhook: no tier copy is served as fresh
/// more than the purge bound after the webhook of a publish that changed it, the purges stay
/// within the limits and none is left behind.
#[test]
fn in_front_of_the_engine_no_tier_copy_outlives_the_purge_bound_under_100_publishes_a_minute() {
    use crate::engine::{Engine, Isolate};
    use crate::runtime::background::TaskQueue;
    use crate::runtime::log::MemoryLogger;
    use crate::store::memory::MemoryKv;
    use crate::testing::{body, FakeOrigin};
    use crate::tier::model::TierServed;
    use crate::tier::purge::PURGE_BOUND_MS;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    const LOCATIONS: usize = 3;
    let clock = SimClock::default();
    clock.now.set(1_000_000_000);
    let shared: Rc<dyn Clock> = Rc::new(clock.clone());
    let kv = MemoryKv::new(shared.clone());
    let origin = FakeOrigin::new();
    let cfg = Rc::new(config(&[("WORKERS_CACHE", "on"), ("DEFAULT_REVALIDATE", "3600")]));
    let tier = TierModel::new(LOCATIONS, shared.clone());
    let purger = ModelPurger::new(tier.clone());
    let queues: Vec<Rc<TaskQueue>> = (0..LOCATIONS).map(|_| Rc::new(TaskQueue::new())).collect();
    let isolates: Vec<Rc<Isolate>> = (0..LOCATIONS).map(|_| Isolate::new()).collect();
    let logger = Rc::new(MemoryLogger::new());
    let engine = |loc: usize| {
        Engine::new(cfg.clone(), Rc::new(kv.clone()), origin.clone(), shared.clone(), queues[loc].clone(), logger.clone(), isolates[loc].clone())
            .with_purger(Rc::new(purger.clone()))
    };
    let mut versions = std::collections::HashMap::<String, u32>::new();
    let mut history = std::collections::HashMap::<String, Vec<(u64, u32)>>::new();
    let set_page = |versions: &mut std::collections::HashMap<String, u32>, path: &str, tags: &str| {
        let v = versions.entry(path.to_string()).or_insert(0);
        *v += 1;
        origin.reply(path, Reply::page(&format!("v{v}."), &[("cache-tag", tags)]));
        *v
    };
    for i in 0..100 {
        set_page(&mut versions, &format!("/blog/p{i}"), &format!("posts,post-p{i}"));
    }
    set_page(&mut versions, "/", "posts");
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    // Runs one request to its end, moving time on whenever it waits (a KV retry's back-off).
    let drive = |pool: &mut LocalPool, fut: futures_util::future::LocalBoxFuture<'static, Response>| -> Response {
        let out: Rc<std::cell::RefCell<Option<Response>>> = Rc::default();
        let slot = out.clone();
        pool.spawner().spawn_local(async move { *slot.borrow_mut() = Some(fut.await) }).expect("spawn");
        loop {
            pool.run_until_stalled();
            if let Some(r) = out.borrow_mut().take() {
                return r;
            }
            clock.advance(10);
        }
    };
    let start = clock.now_ms();
    let mut seed: u64 = 7;
    let mut published = 0;
    while clock.now_ms() < start + 120_000 {
        let now = clock.now_ms();
        while published < 100 && now >= start + 5_000 + published as u64 * 600 {
            for (path, tags) in [(format!("/blog/p{published}"), format!("posts,post-p{published}")), ("/".to_string(), "posts".to_string())] {
                let v = set_page(&mut versions, &path, &tags);
                history.entry(path).or_default().push((now, v));
            }
            kv.begin_invocation();
            let e = engine(0);
            let req = webhook(serde_json::json!({ "tags": [format!("post-p{published}"), "posts"] }));
            let w = drive(&mut pool, Box::pin(async move { e.handle(req).await }));
            assert_eq!(w.status, 200);
            published += 1;
        }
        for loc in 0..LOCATIONS {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (seed >> 33) as usize;
            let path = if r.is_multiple_of(4) { "/".to_string() } else { format!("/blog/p{}", (r / 4) % 100) };
            kv.begin_invocation();
            let e = engine(loc);
            let t = tier.clone();
            let req = Request::new("GET", &format!("https://site.test{path}"));
            drive(&mut pool, Box::pin(async move { t.fetch(loc, req, |req| async move { e.handle(req).await }).await }));
        }
        for q in &queues {
            for task in q.take_all() {
                spawner.spawn_local(task).expect("spawn");
            }
        }
        pool.run_until_stalled();
        clock.advance(50);
        pool.run_until_stalled();
    }
    assert_eq!(published, 100);
    // Let the last purges go out.
    for _ in 0..(30_000 / 50) {
        clock.advance(50);
        pool.run_until_stalled();
    }
    let mut late = Vec::new();
    for s in tier.served().iter().filter(|s| s.how == TierServed::Hit) {
        let path = s.url.trim_start_matches("https://site.test").to_string();
        let text = body(&s.response);
        let served: u32 = text.trim_start_matches('v').split('.').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if let Some((at, _)) = history.get(&path).into_iter().flatten().find(|(at, after)| at + PURGE_BOUND_MS < s.at && served < *after) {
            late.push((path, s.at - at));
        }
    }
    assert!(late.is_empty(), "{} late fresh copies, first {:?}", late.len(), late.first());
    let counts = tier.counts();
    assert!(counts.hits > 200, "the tier answered: {counts:?}");
    assert_eq!(counts.refused, 0);
    assert!(tier.purges().len() <= 25 + 12, "{} purge calls", tier.purges().len());
    assert_eq!(isolates[0].tier_planner.borrow().backlog(), 0, "no purge left behind");
}

#[test]
fn with_any_host_accepted_the_mode_warns_once_that_the_tier_keys_by_path() {
    for (hosts, warnings) in [(None, 1), (Some("site.test"), 0)] {
        let mut vars = vec![("WORKERS_CACHE", "on")];
        vars.extend(hosts.map(|h| ("CACHE_HOSTS", h)));
        let b = Bench::with_config(config(&vars));
        block_on(async {
            for _ in 0..3 {
                b.get("/a").await;
                b.run_background().await;
            }
        });
        assert_eq!(b.logger.count_event("workers_cache_any_host", ""), warnings, "CACHE_HOSTS {hosts:?}");
    }
}

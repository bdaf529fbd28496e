//! Workers Cache in front of the engine with the purge planner in the coordinator: several
//! locations (each its own isolate, tier cache and view of an eventually consistent KV), one
//! [`MemoryCoordinator`], webhooks landing in any of them. The tier model
//! ([`crate::tier::model`]) keeps what the worker's headers allow and purges what the planner
//! sends, within Workers Cache's limits.

use super::tier_tests::{webhook, SimClock};
use crate::coordination::coordinator::MemoryCoordinator;
use crate::engine::{Engine, Isolate};
use crate::http::{Request, Response};
use crate::runtime::background::TaskQueue;
use crate::runtime::clock::Clock;
use crate::runtime::log::MemoryLogger;
use crate::store::memory::MemoryKv;
use crate::testing::{body, cache_state, config_with, Bench, FakeOrigin, Reply};
use crate::tier::headers::{TIER_CACHE_CONTROL, UNPURGEABLE_LIFETIME_S};
use crate::tier::model::{ModelPurger, TierModel, TierServed};
use crate::tier::purge::{LEASE_MS, PURGE_BOUND_MS, SETTLE_MS};
use futures::executor::{block_on, LocalPool};
use futures::task::LocalSpawnExt;
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const LOCATIONS: usize = 3;
/// KV's propagation to other locations: only the coordinator's log tells them sooner.
const PROPAGATION_MS: u64 = 60_000;
const TICK_MS: u64 = 50;

/// Seconds of `max-age` the worker gave the tier in `resp`, if it let the tier keep it.
fn tier_max_age(resp: &Response) -> Option<u64> {
    resp.headers.get(TIER_CACHE_CONTROL)?.split(',').map(str::trim).find_map(|d| d.strip_prefix("max-age=")).and_then(|n| n.parse().ok())
}

/// The version a page body names (`v<n>.`).
fn version(resp: &Response) -> u32 {
    body(resp).trim_start_matches('v').split('.').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Per page: (webhook answered at, version it published).
type History = Rc<RefCell<HashMap<String, Vec<(u64, u32)>>>>;

/// Locations, their isolates and tier caches, one coordinator, one clock whose sleeps end
/// when time passes them (so background purges wait for their settle time and tokens while
/// visitors keep coming).
struct World {
    clock: SimClock,
    kv: MemoryKv,
    origin: Rc<FakeOrigin>,
    tier: TierModel,
    purger: ModelPurger,
    coordinator: MemoryCoordinator,
    queues: Vec<Rc<TaskQueue>>,
    isolates: Vec<Rc<Isolate>>,
    logger: Rc<MemoryLogger>,
    pool: LocalPool,
    config: Rc<crate::rules::config::Config>,
    /// The CMS's current version of each page.
    versions: HashMap<String, u32>,
    /// Per page: (webhook answered at, version it published).
    history: History,
    /// The answers of webhooks sent without waiting ([`World::publish_async`]).
    answers: Rc<RefCell<Vec<Response>>>,
}

impl World {
    fn new() -> World {
        let clock = SimClock::default();
        clock.now.set(1_000_000_000);
        let shared: Rc<dyn Clock> = Rc::new(clock.clone());
        let tier = TierModel::new(LOCATIONS, shared.clone());
        World {
            kv: MemoryKv::new(shared.clone()).with_propagation_delay(PROPAGATION_MS),
            origin: FakeOrigin::new(),
            purger: ModelPurger::new(tier.clone()),
            tier,
            coordinator: MemoryCoordinator::new(shared),
            queues: (0..LOCATIONS).map(|_| Rc::new(TaskQueue::new())).collect(),
            isolates: (0..LOCATIONS).map(|_| Isolate::new()).collect(),
            logger: Rc::new(MemoryLogger::new()),
            pool: LocalPool::new(),
            config: Rc::new(config_with(&[("WORKERS_CACHE", "on"), ("DEFAULT_REVALIDATE", "3600")])),
            versions: HashMap::new(),
            history: Rc::default(),
            answers: Rc::default(),
            clock,
        }
    }

    fn engine(&self, loc: usize) -> Engine<MemoryKv, FakeOrigin> {
        let kv = self.kv.location(loc as u32);
        kv.begin_invocation();
        Engine::new(self.config.clone(), Rc::new(kv), self.origin.clone(), Rc::new(self.clock.clone()), self.queues[loc].clone(), self.logger.clone(), self.isolates[loc].clone())
            .with_purger(Rc::new(self.purger.clone()))
            .with_coordinator(Rc::new(self.coordinator.clone()))
    }

    /// The CMS publishes a new version of `path` (tags `tags`).
    fn set_page(&mut self, path: &str, tags: &str) -> u32 {
        let v = self.versions.entry(path.to_string()).or_insert(0);
        *v += 1;
        self.origin.reply(path, Reply::page(&format!("v{v}."), &[("cache-tag", tags)]));
        *v
    }

    /// Runs one request to its end (moving time on while it waits), then hands its
    /// background work (`waitUntil`) to the pool, where it runs as time passes.
    fn drive(&mut self, fut: LocalBoxFuture<'static, Response>) -> Response {
        let out: Rc<RefCell<Option<Response>>> = Rc::default();
        let slot = out.clone();
        self.pool.spawner().spawn_local(async move { *slot.borrow_mut() = Some(fut.await) }).expect("spawn");
        let began = self.clock.now_ms();
        let resp = loop {
            self.pool.run_until_stalled();
            if let Some(r) = out.borrow_mut().take() {
                break r;
            }
            self.clock.advance(10);
        };
        if std::env::var("SIM_DEBUG").is_ok() && self.clock.now_ms() - began > 100 {
            eprintln!("slow request: {} ms: {:?} {:?}", self.clock.now_ms() - began, resp.status, resp.headers.get("x-isr-cache"));
        }
        self.run_background();
        resp
    }

    /// Hands what the invocations gave `waitUntil` to the pool.
    fn run_background(&mut self) {
        for q in &self.queues {
            for task in q.take_all() {
                self.pool.spawner().spawn_local(task).expect("spawn");
            }
        }
        self.pool.run_until_stalled();
    }

    /// A visitor of `path` in location `loc`, through that location's tier.
    fn view(&mut self, loc: usize, path: &str) -> Response {
        let e = self.engine(loc);
        let t = self.tier.clone();
        let req = Request::new("GET", &format!("https://site.test{path}"));
        self.drive(Box::pin(async move { t.fetch(loc, req, |req| async move { e.handle(req).await }).await }))
    }

    /// A webhook call through location `loc`; records when each path it names was published.
    fn publish(&mut self, loc: usize, json: serde_json::Value, changed: &[(&str, u32)]) -> Response {
        self.publish_async(loc, json, changed);
        while self.answers.borrow().is_empty() {
            self.tick(10);
        }
        self.answers.borrow_mut().remove(0)
    }

    /// [`World::publish`] without waiting for its answer (it lands in `answers`): webhooks and
    /// visitors overlap, as they do in production.
    fn publish_async(&mut self, loc: usize, json: serde_json::Value, changed: &[(&str, u32)]) {
        let e = self.engine(loc);
        let req = webhook(json);
        let clock = self.clock.clone();
        let history = self.history.clone();
        let answers = self.answers.clone();
        let changed: Vec<(String, u32)> = changed.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        let task = async move {
            let w = e.handle(req).await;
            let answered = clock.now_ms();
            for (path, v) in changed {
                history.borrow_mut().entry(path).or_default().push((answered, v));
            }
            answers.borrow_mut().push(w);
        };
        self.pool.spawner().spawn_local(task).expect("spawn");
        self.run_background();
    }

    fn tick(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(10);
            self.clock.advance(step);
            self.run_background();
            left -= step;
        }
    }

    /// Tier answers (no worker) of a page version older than a publish whose webhook answered
    /// more than [`PURGE_BOUND_MS`] before: (path, ms after that webhook).
    fn late_fresh_copies(&self) -> Vec<(String, u64)> {
        let mut late = Vec::new();
        for s in self.tier.served().iter().filter(|s| s.how == TierServed::Hit) {
            let path = s.url.trim_start_matches("https://site.test").to_string();
            let served = version(&s.response);
            let history = self.history.borrow();
            if let Some((at, _)) = history.get(&path).into_iter().flatten().find(|(at, after)| at + PURGE_BOUND_MS < s.at && served < *after) {
                late.push((path, s.at - at));
            }
        }
        late
    }
}

/// 100 publishes in one minute, each through the webhook of one of three locations (in turn),
/// while visitors in all three read the blog through their tier: no tier copy is served as
/// fresh more than the purge bound after the webhook of a publish that changed it, copies made
/// while purges keep up live the page's whole remaining freshness (far beyond the 13 s cap),
/// the purges stay within Workers Cache's limits, none is left behind, and the coordinator's
/// purge traffic stays a few requests per webhook.
#[test]
fn with_the_planner_in_the_coordinator_bursts_are_purged_in_time_and_copies_live_long() {
    let mut w = World::new();
    // Each post is tagged by its own tag; the index by "posts" (it lists them all).
    for i in 0..100 {
        w.set_page(&format!("/blog/p{i}"), &format!("post-p{i}"));
    }
    w.set_page("/", "posts");
    let start = w.clock.now_ms();
    let mut seed: u64 = 7;
    let mut published = 0;
    while w.clock.now_ms() < start + 120_000 {
        let now = w.clock.now_ms();
        while published < 100 && now >= start + 5_000 + published as u64 * 600 {
            let post = format!("/blog/p{published}");
            let vp = w.set_page(&post, &format!("post-p{published}"));
            let vh = w.set_page("/", "posts");
            w.publish_async(published % LOCATIONS, serde_json::json!({ "tags": [format!("post-p{published}"), "posts"] }), &[(&post, vp), ("/", vh)]);
            published += 1;
        }
        for loc in 0..LOCATIONS {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (seed >> 33) as usize;
            let path = if r.is_multiple_of(4) { "/".to_string() } else { format!("/blog/p{}", (r / 4) % 100) };
            w.view(loc, &path);
        }
        w.tick(TICK_MS);
    }
    assert_eq!(published, 100);
    w.tick(30_000);
    let answers = w.answers.borrow().clone();
    assert_eq!(answers.len(), 100);
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", body(answer));
        let json: serde_json::Value = serde_json::from_str(&body(answer)).unwrap_or_default();
        assert_eq!(json["tier_purge"], "coordinator", "{json}");
    }
    let last_answer = w.history.borrow().values().flatten().map(|(at, _)| *at).max().unwrap_or(0);
    // Sent 600 ms apart (one minute); answered as fast as marking the index page in KV allows
    // (one write a second per key).
    assert!(last_answer < start + 5_000 + 70_000, "the last webhook answered {} ms after the first was sent", last_answer - start - 5_000);
    let late = w.late_fresh_copies();
    assert!(late.is_empty(), "{} late fresh copies, first {:?}", late.len(), late.first());
    let worker_answers: Vec<Response> = w.tier.served().into_iter().filter(|s| s.how != TierServed::Hit).map(|s| s.response).collect();
    let long = worker_answers.iter().filter(|r| tier_max_age(r).is_some_and(|s| s > UNPURGEABLE_LIFETIME_S)).count();
    let short = worker_answers.iter().filter(|r| tier_max_age(r).is_some_and(|s| s <= UNPURGEABLE_LIFETIME_S)).count();
    assert!(long > 150 && long > 10 * short, "copies with the page's remaining freshness: {long}, capped: {short}");
    let counts = w.tier.counts();
    assert!(counts.hits > 3_000, "the tier answered: {counts:?}");
    assert_eq!(counts.refused, 0, "never beyond Workers Cache's limits");
    assert!(w.tier.purges().len() <= 25 + 12, "{} purge calls", w.tier.purges().len());
    assert_eq!(w.coordinator.purge_backlog(), 0, "no purge left behind");
    let c = w.coordinator.counts();
    assert!(c.purge_calls <= 100 * 3, "coordinator purge traffic: {c:?}");
    eprintln!("tier {counts:?}; coordinator {c:?}; {} purge calls; copies kept long {long}, short {short}", w.tier.purges().len());
}

/// The webhook's invocation takes a purge request and dies before sending it (its purge call
/// never ends): the request's lease runs out, the next log refresh of any isolate serving
/// traffic hears that it is due, takes it and sends it. No purge is lost, and the old page
/// leaves every tier within the lease's delay.
#[test]
fn a_purge_whose_sender_died_mid_drain_is_sent_once_its_lease_runs_out() {
    let mut w = World::new();
    w.set_page("/a", "posts");
    for i in 0..200 {
        w.set_page(&format!("/other/{i}"), "other");
    }
    for loc in 0..LOCATIONS {
        assert_eq!(cache_state(&w.view(loc, "/a")), "MISS");
        w.tick(1_000);
        let hit = w.view(loc, "/a");
        assert_eq!(cache_state(&hit), "HIT");
        assert!(tier_max_age(&hit).is_some_and(|s| s > UNPURGEABLE_LIFETIME_S), "{:?}", hit.headers);
    }
    w.purger.set_hanging(true);
    let v = w.set_page("/a", "posts");
    let answer = w.publish(0, serde_json::json!({ "tags": ["posts"] }), &[("/a", v)]);
    assert_eq!(answer.status, 200);
    let at = w.clock.now_ms();
    w.tick(SETTLE_MS + 500);
    assert_eq!(w.coordinator.purge_counts().requests, 1, "taken by the webhook's invocation");
    assert!(w.tier.purges().is_empty(), "and never sent: it died");
    w.purger.set_hanging(false);
    // Visitors keep coming in the other locations, for pages the tier does not hold yet (so
    // that the worker runs there and refreshes its copy of the log: a site whose every view is
    // a tier HIT runs no worker, and then the invalidation's queued re-check sends it, below).
    let mut i = 0;
    while w.clock.now_ms() < at + 30_000 {
        for loc in 1..LOCATIONS {
            w.view(loc, &format!("/other/{i}"));
            w.view(loc, "/a");
        }
        i += 1;
        w.tick(200);
    }
    let purges = w.tier.purges();
    assert_eq!(purges.len(), 1, "{purges:?}");
    let (sent, request) = &purges[0];
    assert!(request.tags.contains(&"posts".to_string()) || request.purge_everything);
    assert!(*sent + 100 >= at + SETTLE_MS + LEASE_MS && *sent <= at + SETTLE_MS + LEASE_MS + 2_000, "sent {} ms after the webhook", sent - at);
    assert_eq!(w.coordinator.purge_backlog(), 0);
    assert_eq!(w.coordinator.purge_counts().retried, 1, "the dead sender's lease");
    // A 10 s lease keeps even this within the bound (a token was there).
    let late = w.late_fresh_copies();
    assert!(late.is_empty(), "{late:?}");
}

/// One location, the mode on, the coordinator bound: a HIT lets the tier keep the page for its
/// whole remaining freshness (with stale-while-revalidate) while the isolate's copy of the log
/// is within the bound and the planner keeps up; short copies while the coordinator does not
/// answer, while purges fail, and with no `ctx.cache`.
#[test]
fn copies_get_the_pages_full_remaining_freshness_only_while_the_outlook_allows() {
    let b = Bench::with_config(config_with(&[("WORKERS_CACHE", "on")])).with_coordinator();
    let tier = TierModel::new(1, Rc::new(b.clock.clone()));
    let purger = ModelPurger::new(tier);
    let send = |req: Request| {
        b.kv.begin_invocation();
        let e = b.engine().with_purger(Rc::new(purger.clone()));
        async move { e.handle(req).await }
    };
    let get = |path: &str| send(Request::new("GET", &format!("https://site.test{path}")));
    let coordinator = b.coordinator.clone().expect("coordinated");
    for p in ["/a", "/b", "/c"] {
        b.origin.reply(p, Reply::page(p, &[("cache-tag", "posts"), ("cache-control", "s-maxage=300")]));
    }
    block_on(async {
        assert_eq!(cache_state(&get("/a").await), "MISS");
        b.run_background().await;
        b.clock.advance(2_000);
        let hit = get("/a").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(hit.headers.get(TIER_CACHE_CONTROL), Some("max-age=298, stale-while-revalidate=60, stale-if-error=86400"), "the page's remaining 298 s");
        b.run_background().await;
        // The coordinator stops answering: the isolate cannot know what purges promise.
        coordinator.set_down(true);
        b.clock.advance(2_000);
        let hit = get("/a").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(hit.headers.get(TIER_CACHE_CONTROL), Some(format!("max-age={UNPURGEABLE_LIFETIME_S}").as_str()));
        coordinator.set_down(false);
        b.clock.advance(2_000);
        assert_eq!(tier_max_age(&get("/a").await), Some(294), "back");
        b.run_background().await;
        // Purges fail: the planner says so on the next refresh, and copies are short again.
        purger.set_failing(true);
        get("/b").await;
        b.run_background().await;
        let w = send(webhook(serde_json::json!({ "tags": ["other"] }))).await;
        assert_eq!(w.status, 200);
        b.run_background().await;
        assert!(coordinator.purge_counts().retried > 0);
        b.clock.advance(2_000);
        let hit = get("/b").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(tier_max_age(&hit), Some(UNPURGEABLE_LIFETIME_S), "{:?}", hit.headers);
        b.run_background().await;
        // Without ctx.cache nothing can be purged: short copies.
        purger.set_failing(false);
        purger.set_available(false);
        get("/c").await;
        b.run_background().await;
        b.clock.advance(2_000);
        let hit = get("/c").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(tier_max_age(&hit), Some(UNPURGEABLE_LIFETIME_S));
    });
}

/// The same death of the webhook's sender on a site whose views are all tier HITs (no worker
/// runs to hear that the purge is due): the invalidation's queued re-check sends it.
#[test]
fn with_no_visitor_reaching_the_worker_the_queued_recheck_sends_a_purge_left_behind() {
    let b = Bench::with_config(config_with(&[("WORKERS_CACHE", "on")])).with_coordinator();
    let tier = TierModel::new(1, Rc::new(b.clock.clone()));
    let purger = ModelPurger::new(tier.clone());
    let jobs = Rc::new(crate::engine::jobs::MemoryJobQueue::new());
    let engine = || {
        b.kv.begin_invocation();
        b.engine().with_purger(Rc::new(purger.clone())).with_jobs(jobs.clone())
    };
    b.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts")]));
    block_on(async {
        engine().handle(Request::new("GET", "https://site.test/a")).await;
        b.run_background().await;
        purger.set_hanging(true);
        let w = engine().handle(webhook(serde_json::json!({ "tags": ["posts"] }))).await;
        assert_eq!(w.status, 200);
        // The webhook's drain takes the request and never comes back (ManualClock: its settle
        // wait passes at once); the task is dropped, as a cut-off waitUntil is.
        for task in b.queue.take_all() {
            assert!(futures::FutureExt::now_or_never(task).is_none(), "the drain hangs in its purge call");
        }
        assert_eq!(b.coordinator.as_ref().map(|c| c.purge_counts().requests), Some(1));
        assert!(tier.purges().is_empty());
        purger.set_hanging(false);
        b.clock.advance(LEASE_MS);
        let queued = jobs.take_all_jobs();
        assert!(!queued.is_empty(), "the re-check is queued");
        for (job, _) in queued {
            engine().run_queued(job).await.expect("the job runs");
        }
        b.run_background().await;
        assert_eq!(tier.purges().len(), 1, "sent by the queued job's invocation");
        assert_eq!(b.coordinator.as_ref().map(|c| c.purge_backlog()), Some(0));
    });
}

/// The mode costs page views no coordinator request: the planner's outlook and "requests are
/// due" ride on the log refresh an isolate makes anyway (at most one a second).
#[test]
fn with_the_mode_on_page_views_ask_the_coordinator_no_more_than_the_log_refresh() {
    let b = Bench::with_config(config_with(&[("WORKERS_CACHE", "on")])).with_coordinator();
    let purger = ModelPurger::new(TierModel::new(1, Rc::new(b.clock.clone())));
    let coordinator = b.coordinator.clone().expect("coordinated");
    b.origin.reply("/a", Reply::page("a", &[("cache-tag", "posts")]));
    let get = || {
        b.kv.begin_invocation();
        let e = b.engine().with_purger(Rc::new(purger.clone()));
        async move { e.handle(Request::new("GET", "https://site.test/a")).await }
    };
    block_on(async {
        get().await;
        b.run_background().await;
        coordinator.reset_counts();
        for _ in 0..100 {
            let hit = get().await;
            assert_eq!(cache_state(&hit), "HIT");
            assert!(tier_max_age(&hit).is_some_and(|s| s > UNPURGEABLE_LIFETIME_S));
            b.run_background().await;
            b.clock.advance(20);
        }
        let c = coordinator.counts();
        assert!(c.requests <= 3 && c.requests == c.reads, "100 views in 2 s: {c:?}");
    });
}

//! The tier model in front of a model of edge-isr with the coordinator, under a burst of 100
//! publishes in a minute, seen from three locations: no tier copy is served as fresh more than
//! [`PURGE_BOUND_MS`] after the webhook of a publish that changed it, and the purges stay
//! within Workers Cache's limits and are never lost.
//!
//! The edge-isr side here is a small model (one strongly consistent store, each location
//! learning of an invalidation up to [`SETTLE_MS`] after it, as the coordinator's log cache
//! does), so that the tier's own rules are what is under test; the same proof over the real
//! engine, with the planner in the coordinator, is `engine::tier_coordinated_tests`.

use crate::http::{Request, Response};
use crate::rules::state::CacheState;
use crate::runtime::clock::{Clock, ManualClock, Millis};
use crate::tier::headers::{apply_tier_headers, tier_verdict, PurgeOutlook, TierAnswer, TierSettings};
use crate::tier::model::{ModelPurger, TierModel, TierServed};
use crate::tier::purge::{targets_of, PurgePlanner, PurgeRequest, PURGE_BOUND_MS, PURGE_LATENCY_MS, SETTLE_MS};
use crate::tier::send::{drain, CachePurger};
use crate::tier::tags::page_cache_tags;
use futures::executor::block_on;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

const T0: Millis = 1_000_000;
const LOCATIONS: usize = 3;
/// How long each location takes to learn of an invalidation (the coordinator's bound is 2 s).
const LAG_MS: [u64; LOCATIONS] = [0, 1_500, SETTLE_MS];
const POSTS: usize = 100;
const REVALIDATE_S: u64 = 3_600;
const TICK_MS: u64 = 50;
/// How long a regeneration takes to render and store.
const RENDER_MS: u64 = 800;

/// How invalidations reach the tier in a scenario.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Purging {
    /// Through the planner (what edge-isr does).
    Planner,
    /// Straight from the webhook, one call per publish, no settle time (the naive way).
    AtOnce,
    /// Not at all (the tier's copies live their full lifetime).
    Never,
}

struct Sim {
    clock: ManualClock,
    tier: TierModel,
    purger: ModelPurger,
    planner: RefCell<PurgePlanner>,
    purging: Purging,
    /// The CMS's current version of each page.
    content: RefCell<HashMap<String, u32>>,
    /// edge-isr's store: version and render time of each page.
    pages: RefCell<HashMap<String, (u32, Millis)>>,
    /// Regenerations in flight: (stored at, path, version, render started).
    renders: RefCell<Vec<(Millis, String, u32, Millis)>>,
    /// Accepted invalidations: (time, tags).
    invalidations: RefCell<Vec<(Millis, Vec<String>)>>,
    /// Per page: (webhook time, version after it).
    history: RefCell<HashMap<String, Vec<(Millis, u32)>>>,
}

fn tags_of(path: &str) -> Vec<String> {
    match path.strip_prefix("/blog/") {
        Some(slug) => vec!["posts".into(), format!("post-{slug}")],
        None => vec!["posts".into()],
    }
}

impl Sim {
    fn new(purging: Purging) -> Sim {
        let clock = ManualClock::new(T0);
        let tier = TierModel::new(LOCATIONS, Rc::new(clock.clone()));
        Sim {
            purger: ModelPurger::new(tier.clone()),
            tier,
            planner: RefCell::new(PurgePlanner::new(T0)),
            purging,
            content: RefCell::default(),
            pages: RefCell::default(),
            renders: RefCell::default(),
            invalidations: RefCell::default(),
            history: RefCell::default(),
            clock,
        }
    }

    fn version(&self, path: &str) -> u32 {
        *self.content.borrow().get(path).unwrap_or(&1)
    }

    /// The CMS changes a post (and so the listing) and calls the webhook for its tags.
    fn publish(&self, post: usize) {
        let now = self.clock.now_ms();
        let tags = vec![format!("post-p{post}"), "posts".to_string()];
        for path in [format!("/blog/p{post}"), "/".to_string()] {
            let v = self.version(&path) + 1;
            self.content.borrow_mut().insert(path.clone(), v);
            self.history.borrow_mut().entry(path).or_default().push((now, v));
        }
        self.invalidations.borrow_mut().push((now, tags.clone()));
        let targets = targets_of(tags.iter().map(String::as_str), [], []);
        match self.purging {
            Purging::Planner => self.planner.borrow_mut().add(targets, now),
            Purging::AtOnce => {
                let _ = self.tier.purge(&PurgeRequest {
                    tags: tags.iter().map(|t| crate::tier::tags::tier_tag(t)).collect(),
                    ..Default::default()
                });
            }
            Purging::Never => {}
        }
    }

    /// The coordinator's alarm: sends what is due.
    fn send_due(&self) {
        if self.purging != Purging::Planner || !self.purger.available() {
            return;
        }
        let now = self.clock.now_ms();
        let batches = self.planner.borrow_mut().take_due(now);
        for batch in batches {
            match block_on(self.purger.purge(&batch.request)) {
                Ok(()) => self.planner.borrow_mut().ack(batch.id),
                Err(_) => self.planner.borrow_mut().fail(batch.id, now),
            }
        }
    }

    /// edge-isr in `location` answering `path`.
    fn worker(&self, location: usize, path: &str) -> Response {
        let now = self.clock.now_ms();
        let tags = tags_of(path);
        let stored = self.pages.borrow().get(path).copied();
        let (state, version, rendered_at) = match stored {
            None => {
                let v = self.version(path);
                self.pages.borrow_mut().insert(path.to_string(), (v, now));
                (CacheState::Miss, v, now)
            }
            Some((v, rendered_at)) => {
                let known_invalidation = self
                    .invalidations
                    .borrow()
                    .iter()
                    .any(|(at, t)| *at + LAG_MS[location] <= now && *at > rendered_at && t.iter().any(|x| tags.contains(x)));
                if known_invalidation || now >= rendered_at + REVALIDATE_S * 1000 {
                    // STALE: the old page now, the new one stored by the regeneration.
                    let fresh = self.version(path);
                    let mut renders = self.renders.borrow_mut();
                    if !renders.iter().any(|(_, p, _, _)| p == path) {
                        renders.push((now + RENDER_MS, path.to_string(), fresh, now));
                    }
                    (CacheState::Stale, v, rendered_at)
                } else {
                    (CacheState::Hit, v, rendered_at)
                }
            }
        };
        let outlook = if self.purging == Purging::Planner && self.purger.available() {
            self.planner.borrow_mut().outlook(now)
        } else if self.purging == Purging::Planner {
            PurgeOutlook::Unknown
        } else {
            PurgeOutlook::Within(0) // what a tier without edge-isr's planner would be told
        };
        let cache_tag = page_cache_tags(path, tags.iter().map(String::as_str)).ok();
        let answer = TierAnswer {
            state: &state,
            fresh_until: rendered_at + REVALIDATE_S * 1000,
            now,
            cache_tag: cache_tag.as_deref(),
            canonical: true,
        };
        let mut resp = Response::new(200).with_header("x-version", &version.to_string());
        apply_tier_headers(&mut resp.headers, &tier_verdict(&answer, &TierSettings::default(), outlook));
        resp
    }

    /// Runs the burst: a publish every 600 ms for a minute (100 publishes), visitors in every
    /// location every tick, for two minutes.
    fn run(&self) {
        let mut seed: u64 = 42;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let end = T0 + 120_000;
        let mut published = 0;
        while self.clock.now_ms() < end {
            let now = self.clock.now_ms();
            if published < POSTS && now >= T0 + 5_000 + published as u64 * 600 {
                self.publish(published);
                published += 1;
            }
            self.send_due();
            let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *self.renders.borrow_mut()).into_iter().partition(|r| r.0 <= now);
            *self.renders.borrow_mut() = running;
            for (_, path, version, started) in done {
                self.pages.borrow_mut().insert(path, (version, started));
            }
            for location in 0..LOCATIONS {
                let path = if next() % 4 == 0 { "/".to_string() } else { format!("/blog/p{}", next() % POSTS) };
                let url = format!("https://example.test{path}");
                block_on(self.tier.fetch(location, Request::new("GET", &url), |_| async { self.worker(location, &path) }));
            }
            self.clock.advance(TICK_MS);
        }
        assert_eq!(published, POSTS);
    }

    /// Tier answers served as fresh later than `bound_ms` after a webhook that changed them:
    /// (path, served at, webhook at).
    fn late_fresh_copies(&self, bound_ms: u64) -> Vec<(String, Millis, Millis)> {
        let history = self.history.borrow();
        let mut late = Vec::new();
        for s in self.tier.served().iter().filter(|s| s.how == TierServed::Hit) {
            let path = s.url.trim_start_matches("https://example.test").to_string();
            let served: u32 = s.response.headers.get("x-version").and_then(|v| v.parse().ok()).unwrap_or(0);
            for (at, after) in history.get(&path).into_iter().flatten() {
                if *at + bound_ms < s.at && served < *after {
                    late.push((path.clone(), s.at, *at));
                    break;
                }
            }
        }
        late
    }
}

#[test]
fn no_tier_serves_a_page_as_fresh_longer_than_the_purge_delay_under_a_burst_of_100_publishes() {
    let sim = Sim::new(Purging::Planner);
    sim.run();
    let late = sim.late_fresh_copies(PURGE_BOUND_MS);
    assert!(late.is_empty(), "{} late fresh copies, first {:?}", late.len(), late.first());
    let counts = sim.tier.counts();
    assert!(counts.hits > 1_000, "the tier did serve: {counts:?}");
    assert_eq!(counts.refused, 0, "never beyond the rate limit or 100 per request");
    assert_eq!(sim.planner.borrow().backlog(), 0, "no purge left behind");
    // Every publish's tags were purged after its settle time and within the bound.
    let purges = sim.tier.purges();
    for (at, tags) in sim.invalidations.borrow().iter() {
        for tag in tags {
            let t = crate::tier::tags::tier_tag(tag);
            let first = purges.iter().find(|(when, r)| *when >= at + SETTLE_MS && (r.purge_everything || r.tags.contains(&t)));
            let (when, _) = first.unwrap_or_else(|| panic!("{tag} of {at} never purged"));
            assert!(when - at <= PURGE_BOUND_MS - PURGE_LATENCY_MS, "{tag} purged {} ms after its webhook", when - at);
        }
    }
    assert!(purges.len() <= 25 + 11, "{} purge requests for 100 publishes in a minute", purges.len());
}

#[test]
fn without_the_planner_the_same_burst_leaves_fresh_copies_of_old_pages() {
    // The proof above can fail: with no purge, or with purges sent at once from the webhook
    // (before every location knew, and beyond the rate limit), old pages stay fresh in the tier.
    for purging in [Purging::Never, Purging::AtOnce] {
        let sim = Sim::new(purging);
        sim.run();
        assert!(!sim.late_fresh_copies(PURGE_BOUND_MS).is_empty(), "{purging:?}");
    }
    let at_once = Sim::new(Purging::AtOnce);
    at_once.run();
    assert!(at_once.tier.counts().refused > 0, "100 calls in a minute exceed the bucket");
}

#[test]
fn without_ctx_cache_copies_are_short_lived_and_the_bound_still_holds() {
    let sim = Sim::new(Purging::Planner);
    sim.purger.set_available(false);
    sim.run();
    assert!(sim.tier.purges().is_empty());
    let late = sim.late_fresh_copies(PURGE_BOUND_MS);
    assert!(late.is_empty(), "{} late fresh copies, first {:?}", late.len(), late.first());
    assert!(sim.tier.counts().hits > 0, "short-lived copies still answer");
}

#[test]
fn purges_that_fail_are_kept_and_sent_once_purging_works_again() {
    let clock = ManualClock::new(T0);
    let tier = TierModel::new(2, Rc::new(clock.clone()));
    let purger = ModelPurger::new(tier.clone());
    let planner = RefCell::new(PurgePlanner::new(T0));
    tier.store(0, "https://example.test/blog/a", &Response::new(200).with_header("cloudflare-cdn-cache-control", "max-age=600").with_header("cache-tag", "posts"));
    planner.borrow_mut().add(targets_of(["posts"], ["/x"], ["/blog/"]), T0);
    purger.set_failing(true);
    let report = block_on(drain(&planner, &purger, &clock, T0 + 20_000));
    assert!(report.failed >= 1 && report.sent == 0, "{report:?}");
    assert_eq!(report.left, 3, "nothing lost");
    assert_eq!(planner.borrow_mut().outlook(clock.now_ms()), PurgeOutlook::Unknown);
    assert_eq!(tier.kept(0), 1);
    purger.set_failing(false);
    let report = block_on(drain(&planner, &purger, &clock, clock.now_ms() + 30_000));
    assert_eq!((report.sent, report.left), (1, 0), "{report:?}");
    assert_eq!(tier.kept(0), 0);
    let (_, sent) = tier.purges().pop().unwrap();
    assert_eq!(sent.path_prefixes, ["/blog/"]);
    assert!(planner.borrow_mut().outlook(clock.now_ms()).purges_in_time());
}

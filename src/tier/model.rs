//! A model of Workers Cache in front of the worker, for native tests: what production's tier
//! would keep, serve and purge, so that tests catch what production would.
//!
//! Modelled from Cloudflare's documentation (checked 2026-12-03, see platform-facts): one cache
//! per location (data center); a response is kept according to `Cloudflare-CDN-Cache-Control`,
//! else `CDN-Cache-Control`, else `Cache-Control` (RFC 9213: the first targeted field present
//! is the only one read; in `Cache-Control`, `s-maxage` wins over `max-age`); `no-store`,
//! `private`, `no-cache` and `Set-Cookie` answers are not kept; RFC 9111 freshness
//! (`max-age`, age counted from when the copy was stored), `stale-while-revalidate` (the stale
//! copy is served while the worker is asked again) and `stale-if-error` (served when the
//! worker answers 500, 502, 503 or 504); `Cache-Tag` tags matched case-insensitively; purge by
//! tags, path prefixes or everything, hard (the copy is gone in every location), at most 100
//! targets per request and rate-limited by a token bucket (5 a minute, burst 25); only GET and
//! HEAD. Not modelled: request collapsing (every request that finds no fresh copy reaches the
//! worker: more worker calls than production, never fewer purges), tiered upper caches
//! (a purge reaches every tier alike), `Vary`.

use crate::http::{Request, Response};
use crate::rules::key::parse_url;
use crate::runtime::clock::Millis;
use crate::tier::purge::{PurgeError, PurgeRequest, TokenBucket, MAX_TARGETS_PER_REQUEST};
use crate::tier::send::CachePurger;
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The caching directives the tier read from one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// Seconds fresh; `None`: not storable.
    pub max_age_s: Option<u64>,
    /// `stale-while-revalidate` seconds.
    pub swr_s: u64,
    /// `stale-if-error` seconds.
    pub sie_s: u64,
}

fn parse_list(value: &str) -> Vec<(String, Option<u64>)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().trim_matches('"').parse().ok()),
            None => (d.to_ascii_lowercase(), None),
        })
        .collect()
}

/// The directives Workers Cache reads from `resp` (see the module documentation).
pub fn directives(resp: &Response) -> Directives {
    if resp.headers.contains("set-cookie") {
        return Directives::default();
    }
    let (field, shared) = if let Some(v) = resp.headers.get("cloudflare-cdn-cache-control") {
        (v.to_string(), false)
    } else if let Some(v) = resp.headers.get("cdn-cache-control") {
        (v.to_string(), false)
    } else {
        (resp.headers.get_all("cache-control").collect::<Vec<_>>().join(","), true)
    };
    let list = parse_list(&field);
    let has = |name: &str| list.iter().any(|(n, _)| n == name);
    let value = |name: &str| list.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v);
    if has("no-store") || has("private") || has("no-cache") {
        return Directives::default();
    }
    let max_age = if shared { value("s-maxage").or(value("max-age")) } else { value("max-age") };
    Directives {
        max_age_s: max_age,
        swr_s: value("stale-while-revalidate").unwrap_or(0),
        sie_s: value("stale-if-error").unwrap_or(0),
    }
}

/// One kept copy.
#[derive(Clone, Debug)]
struct Entry {
    response: Response,
    stored_at: Millis,
    directives: Directives,
    tags: Vec<String>,
    path: String,
}

impl Entry {
    fn age_ms(&self, now: Millis) -> u64 {
        now.saturating_sub(self.stored_at)
    }

    fn lifetime_ms(&self) -> u64 {
        self.directives.max_age_s.unwrap_or(0) * 1000
    }

    fn fresh(&self, now: Millis) -> bool {
        self.age_ms(now) < self.lifetime_ms()
    }

    fn within(&self, now: Millis, extra_s: u64) -> bool {
        self.age_ms(now) < self.lifetime_ms() + extra_s * 1000
    }
}

/// How the tier answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierServed {
    /// From a fresh copy: the worker did not run.
    Hit,
    /// From a stale copy within `stale-while-revalidate`; the worker was asked again.
    Revalidating,
    /// From a stale copy within `stale-if-error`: the worker failed.
    StaleIfError,
    /// By the worker (no usable copy).
    Worker,
}

/// Every request the tier answered (for the proof tests).
#[derive(Clone, Debug)]
pub struct Served {
    /// Location.
    pub location: usize,
    /// URL.
    pub url: String,
    /// When.
    pub at: Millis,
    /// How.
    pub how: TierServed,
    /// When the copy served was stored (for tier answers).
    pub stored_at: Option<Millis>,
    /// The answer.
    pub response: Response,
}

/// What the tier did (counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounts {
    /// Requests answered from a fresh copy (no worker invocation).
    pub hits: u64,
    /// Requests that ran the worker.
    pub worker_calls: u64,
    /// Purge requests accepted.
    pub purges: u64,
    /// Purge requests refused (rate limit or too many targets).
    pub refused: u64,
}

struct State {
    locations: Vec<HashMap<String, Entry>>,
    bucket: TokenBucket,
    purges: Vec<(Millis, PurgeRequest)>,
    served: Vec<Served>,
    counts: TierCounts,
}

/// The model of Workers Cache: one cache per location, one rate limit for the worker. Clones
/// share the same tier.
#[derive(Clone)]
pub struct TierModel {
    state: Rc<RefCell<State>>,
    clock: Rc<dyn crate::runtime::clock::Clock>,
}

impl TierModel {
    /// A tier with `locations` empty caches and a full purge bucket.
    pub fn new(locations: usize, clock: Rc<dyn crate::runtime::clock::Clock>) -> Self {
        let now = clock.now_ms();
        TierModel {
            state: Rc::new(RefCell::new(State {
                locations: (0..locations).map(|_| HashMap::new()).collect(),
                bucket: TokenBucket::workers_cache(now),
                purges: Vec::new(),
                served: Vec::new(),
                counts: TierCounts::default(),
            })),
            clock,
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> TierCounts {
        self.state.borrow().counts
    }

    /// Every accepted purge request, with its time.
    pub fn purges(&self) -> Vec<(Millis, PurgeRequest)> {
        self.state.borrow().purges.clone()
    }

    /// Every answer given so far.
    pub fn served(&self) -> Vec<Served> {
        self.state.borrow().served.clone()
    }

    /// Copies kept in `location`.
    pub fn kept(&self, location: usize) -> usize {
        self.state.borrow().locations[location].len()
    }

    /// Keeps `resp` for `url` in `location` if its directives allow.
    pub fn store(&self, location: usize, url: &str, resp: &Response) {
        let d = directives(resp);
        if d.max_age_s.is_none() {
            return;
        }
        let tags = resp
            .headers
            .get_all("cache-tag")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let path = parse_url(url).map(|u| u.path().to_string()).unwrap_or_default();
        let entry = Entry {
            response: resp.clone(),
            stored_at: self.clock.now_ms(),
            directives: d,
            tags,
            path,
        };
        self.state.borrow_mut().locations[location].insert(url.to_string(), entry);
    }

    /// One `ctx.cache.purge` call, with the documented limits.
    pub fn purge(&self, request: &PurgeRequest) -> Result<usize, PurgeError> {
        let now = self.clock.now_ms();
        let mut s = self.state.borrow_mut();
        if request.len() > MAX_TARGETS_PER_REQUEST {
            s.counts.refused += 1;
            return Err(PurgeError::Failed(format!("{} targets in one request (at most {MAX_TARGETS_PER_REQUEST})", request.len())));
        }
        if !s.bucket.take(now) {
            s.counts.refused += 1;
            return Err(PurgeError::RateLimited);
        }
        let tags: Vec<String> = request.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
        let mut removed = 0;
        for location in &mut s.locations {
            let before = location.len();
            location.retain(|_, e| {
                !(request.purge_everything
                    || e.tags.iter().any(|t| tags.contains(t))
                    || request.path_prefixes.iter().any(|p| e.path.starts_with(p.as_str())))
            });
            removed += before - location.len();
        }
        s.counts.purges += 1;
        s.purges.push((now, request.clone()));
        Ok(removed)
    }

    /// Answers `req` in `location`: from a kept copy when RFC 9111 allows, else from `worker`
    /// (whose answer is then kept if its directives allow). A stale copy within
    /// `stale-while-revalidate` is served and the worker asked at once (modelled as done before
    /// the next request); one within `stale-if-error` is served when the worker fails.
    pub async fn fetch<F, Fut>(&self, location: usize, req: Request, worker: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: std::future::Future<Output = Response>,
    {
        let now = self.clock.now_ms();
        let url = req.url.clone();
        let cacheable_method = req.method == "GET" || req.method == "HEAD";
        let entry = if cacheable_method { self.state.borrow().locations[location].get(&url).cloned() } else { None };
        if let Some(e) = &entry {
            if e.fresh(now) {
                self.record(location, &url, TierServed::Hit, Some(e.stored_at), &e.response);
                return e.response.clone();
            }
        }
        self.state.borrow_mut().counts.worker_calls += 1;
        let swr = entry.as_ref().filter(|e| e.within(now, e.directives.swr_s));
        if let Some(e) = swr {
            let e = e.clone();
            self.record(location, &url, TierServed::Revalidating, Some(e.stored_at), &e.response);
            let fresh = worker(req).await;
            if cacheable_method {
                self.store(location, &url, &fresh);
            }
            return e.response;
        }
        let resp = worker(req).await;
        if matches!(resp.status, 500 | 502 | 503 | 504) {
            if let Some(e) = entry.as_ref().filter(|e| e.within(now, e.directives.sie_s)) {
                self.record(location, &url, TierServed::StaleIfError, Some(e.stored_at), &e.response);
                return e.response.clone();
            }
        }
        if cacheable_method {
            self.store(location, &url, &resp);
        }
        self.record(location, &url, TierServed::Worker, None, &resp);
        resp
    }

    fn record(&self, location: usize, url: &str, how: TierServed, stored_at: Option<Millis>, resp: &Response) {
        let at = self.clock.now_ms();
        let mut s = self.state.borrow_mut();
        if how == TierServed::Hit {
            s.counts.hits += 1;
        }
        s.served.push(Served {
            location,
            url: url.to_string(),
            at,
            how,
            stored_at,
            response: resp.clone(),
        });
    }
}

/// `ctx.cache` on the model: purges go to the [`TierModel`]; can be made absent (the local
/// runtime, an old compatibility date) or failing.
#[derive(Clone)]
pub struct ModelPurger {
    tier: TierModel,
    available: Rc<RefCell<bool>>,
    failing: Rc<RefCell<bool>>,
    hanging: Rc<RefCell<bool>>,
}

impl ModelPurger {
    /// Purges `tier`.
    pub fn new(tier: TierModel) -> Self {
        ModelPurger {
            tier,
            available: Rc::new(RefCell::new(true)),
            failing: Rc::new(RefCell::new(false)),
            hanging: Rc::new(RefCell::new(false)),
        }
    }

    /// Makes `ctx.cache` absent (`false`) or present.
    pub fn set_available(&self, available: bool) {
        *self.available.borrow_mut() = available;
    }

    /// Makes every purge fail (`true`) or work.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.borrow_mut() = failing;
    }

    /// Makes every purge call started from now on never end (`true`): the invocation sending it
    /// died (its isolate evicted, its `waitUntil` cut off); nothing is purged and nothing is
    /// reported.
    pub fn set_hanging(&self, hanging: bool) {
        *self.hanging.borrow_mut() = hanging;
    }
}

impl CachePurger for ModelPurger {
    fn available(&self) -> bool {
        *self.available.borrow()
    }

    fn purge<'a>(&'a self, request: &'a PurgeRequest) -> LocalBoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            if *self.hanging.borrow() {
                std::future::pending::<()>().await;
            }
            if *self.failing.borrow() {
                return Err(PurgeError::Failed("modelled outage".into()));
            }
            self.tier.purge(request).map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::ManualClock;
    use futures::executor::block_on;

    fn tier(locations: usize) -> (ManualClock, TierModel) {
        let clock = ManualClock::new(1_000_000);
        (clock.clone(), TierModel::new(locations, Rc::new(clock)))
    }

    fn page(cc: &str, tags: &str) -> Response {
        Response::new(200).with_header("cloudflare-cdn-cache-control", cc).with_header("cache-tag", tags)
    }

    #[test]
    fn the_targeted_field_wins_and_s_maxage_only_counts_in_cache_control() {
        let r = Response::new(200)
            .with_header("cache-control", "public, max-age=0, s-maxage=0")
            .with_header("cdn-cache-control", "max-age=10")
            .with_header("cloudflare-cdn-cache-control", "max-age=20, stale-while-revalidate=5");
        assert_eq!(directives(&r), Directives { max_age_s: Some(20), swr_s: 5, sie_s: 0 });
        let r = Response::new(200).with_header("cache-control", "max-age=5, s-maxage=30, stale-if-error=9");
        assert_eq!(directives(&r), Directives { max_age_s: Some(30), swr_s: 0, sie_s: 9 });
        for cc in ["no-store", "private, max-age=60", "no-cache"] {
            assert_eq!(directives(&page(cc, "")).max_age_s, None, "{cc}");
        }
        assert_eq!(directives(&page("max-age=60", "").with_header("set-cookie", "a=1")).max_age_s, None);
    }

    #[test]
    fn fresh_copies_answer_without_the_worker_then_swr_then_the_worker() {
        let (clock, t) = tier(1);
        let calls = Rc::new(RefCell::new(0));
        let worker = |calls: Rc<RefCell<u32>>| move |_req: Request| {
            *calls.borrow_mut() += 1;
            async { page("max-age=10, stale-while-revalidate=5", "a") }
        };
        block_on(async {
            let url = "https://x.test/p";
            t.fetch(0, Request::new("GET", url), worker(calls.clone())).await;
            clock.advance(9_999);
            t.fetch(0, Request::new("GET", url), worker(calls.clone())).await;
            assert_eq!(*calls.borrow(), 1, "fresh for 10 s");
            clock.advance(1);
            t.fetch(0, Request::new("GET", url), worker(calls.clone())).await;
            assert_eq!(*calls.borrow(), 2, "stale: served and revalidated");
            assert_eq!(t.served()[2].how, TierServed::Revalidating);
            t.fetch(0, Request::new("POST", url), worker(calls.clone())).await;
            assert_eq!(*calls.borrow(), 3, "only GET/HEAD are answered by the tier");
        });
    }

    #[test]
    fn stale_if_error_covers_server_errors_only_within_its_window() {
        let (clock, t) = tier(1);
        let url = "https://x.test/p";
        block_on(async {
            t.fetch(0, Request::new("GET", url), |_| async { page("max-age=1, stale-if-error=60", "a") }).await;
            clock.advance(30_000);
            let r = t.fetch(0, Request::new("GET", url), |_| async { Response::new(503) }).await;
            assert_eq!(r.status, 200);
            let r = t.fetch(0, Request::new("GET", url), |_| async { Response::new(404) }).await;
            assert_eq!(r.status, 404, "an answer is believed");
        });
        let (clock, t) = tier(1);
        block_on(async {
            t.fetch(0, Request::new("GET", url), |_| async { page("max-age=1, stale-if-error=60", "a") }).await;
            clock.advance(61_001);
            let r = t.fetch(0, Request::new("GET", url), |_| async { Response::new(503) }).await;
            assert_eq!(r.status, 503);
        });
    }

    #[test]
    fn purges_are_hard_case_insensitive_everywhere_and_limited() {
        let (_, t) = tier(3);
        for loc in 0..3 {
            t.store(loc, "https://x.test/blog/a", &page("max-age=600", "Posts,isr-p-1"));
            t.store(loc, "https://x.test/about", &page("max-age=600", "pages"));
        }
        assert_eq!(t.purge(&PurgeRequest { tags: vec!["POSTS".into()], ..Default::default() }), Ok(3));
        assert_eq!((t.kept(0), t.kept(1), t.kept(2)), (1, 1, 1));
        assert_eq!(t.purge(&PurgeRequest { path_prefixes: vec!["/ab".into()], ..Default::default() }), Ok(3));
        let too_many = PurgeRequest { tags: (0..101).map(|i| i.to_string()).collect(), ..Default::default() };
        assert!(matches!(t.purge(&too_many), Err(PurgeError::Failed(_))));
        let one = PurgeRequest { purge_everything: true, ..Default::default() };
        let accepted = (0..30).filter(|_| t.purge(&one).is_ok()).count();
        assert_eq!(accepted, 23, "25 a burst, two already spent");
        assert_eq!(t.purge(&one), Err(PurgeError::RateLimited));
        assert_eq!(t.counts().refused, 9);
    }
}

//! The ISR engine: decides, for each request, between HIT, STALE, MISS and BYPASS.
//!
//! Life of a request (compare pingora-cache's phases):
//! 1. [`crate::rules::policy::classify_request`] — BYPASS (method, credentials, unkeyable URL) or a key.
//! 2. One KV read of the page ([`Engine::read_page`]).
//! 3. [`freshness`] of what was read:
//!    - fresh → HIT, answered from the stored page;
//!    - stale → STALE, answered from the stored page, and a regeneration is handed to background
//!      work (one per page per isolate, plus a best-effort lease across isolates);
//!    - none (or expired by a hard invalidation) → MISS: render from the origin while the visitor
//!      waits (one render per page per isolate, shared by concurrent visitors), answer (a proxied
//!      page streams to its first visitor as it arrives), and write the page in the background.
//!
//! The request is taken in two steps around its KV read, neither of which awaits ([`flow`]):
//! on Workers a HIT is answered without Rust's async executor. What a URL is ([`routes`]) and
//! a page's decoded metadata ([`decoded`]) are remembered per isolate.
//!
//! Every dependency is a trait, so the same code runs on Workers and in native tests.

mod admin;
mod coordinate;
mod decoded;
mod flow;
pub mod backoff;
pub mod cleanup;
mod index;
mod invalidate;
pub mod jobs;
pub mod memo;
mod prerender;
mod produce;
mod revalidate;
mod regenerate;
mod render;
mod routes;
pub mod stats;
mod tier;
mod timing;
pub mod waiting;
mod write;

use crate::runtime::background::Background;
use crate::runtime::clock::Clock;
use crate::rules::conditional::if_none_match_matches;
use crate::rules::config::Config;
use crate::http::{Body, Request, Response};
use crate::engine::jobs::JobQueue;
use crate::rules::key::CacheKey;
use crate::coordination::lease::IsolateState;
use crate::runtime::log::{Level, Logger};
use crate::rules::meta::{PageMeta, StoredPage};
use crate::runtime::origin::{Origin, OriginError};
use crate::site::{LazySite, Renderer, Site};
use crate::rules::state::{BypassReason, CacheState};
use crate::store::{KvStore, StoreError, StoredValue};
use crate::coordination::cache::LogCache;
use crate::coordination::coordinator::Coordinator;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use timing::Timing;

pub use flow::{AfterRead, Begun, Later, PendingRead};
pub use invalidate::InvalidationOutcome;
pub use timing::SERVER_TIMING_HEADER;
pub use admin::{Listing, PageRow, ADMIN_PATH};
pub use admin::PageQuery;
pub use produce::Hints;
pub use render::RenderOutcome;
pub use prerender::{params_from_listing, PrerenderJob, PrerenderReport, PRERENDER_BATCH};

/// Response header carrying the cache state.
pub const CACHE_STATE_HEADER: &str = "x-isr-cache";
/// Response header carrying the reason of a BYPASS.
pub const BYPASS_REASON_HEADER: &str = "x-isr-reason";
/// `Cache-Control` sent to browsers when the origin gave no browser lifetime (see
/// [`crate::rules::downstream`]).
pub use crate::rules::downstream::DEFAULT_BROWSER_CACHE_CONTROL;

/// How long a pass-through request with a body (an upload) waits for the origin's answer:
/// Cloudflare's own limit for an origin's response (100 s, then a 524), since sending the body
/// is part of the wait.
pub const UPLOAD_ANSWER_TIMEOUT_MS: u64 = 100_000;

/// Longest time the rest of a refused request body is read (and dropped) before the refusal
/// is sent (see [`Engine::read_small_body`]).
pub const DISCARD_LIMIT_MS: u64 = 10_000;

/// Everything that lives as long as the isolate and is shared by its requests.
#[derive(Default)]
pub struct Isolate {
    /// Regeneration claims and back-off.
    pub regenerations: Rc<IsolateState>,
    /// MISS renders in flight, shared by concurrent visitors of the same page.
    pub(crate) renders: render::InFlightRenders,
    /// This isolate's copy of the coordinator's invalidation log.
    pub(crate) log: RefCell<LogCache>,
    /// Whether "no coordinator: KV only" was logged already.
    pub(crate) announced: Cell<bool>,
    /// Keys whose MISS renders failed recently: their visitors get the recent error.
    pub failing_renders: backoff::FailingRenders,
    /// Counters of this isolate's answers and renders, written to KV once per interval.
    pub stats: stats::IsolateStats,
    /// Workers Cache purges this isolate has still to send (mode on, and no coordinator to
    /// plan them, or it could not record them).
    pub(crate) tier_planner: std::cell::RefCell<crate::tier::purge::PurgePlanner>,
    /// Whether the absence of `ctx.cache` was logged already.
    pub(crate) tier_said_unavailable: std::cell::Cell<bool>,
    /// Whether "Workers Cache keys by path, and CACHE_HOSTS is unset" was logged already.
    pub(crate) tier_said_any_host: std::cell::Cell<bool>,
    /// What the URLs seen last are (the webhook, the admin page, a page and its key).
    pub(crate) url_routes: RefCell<routes::UrlRoutes>,
    /// Stored pages' metadata as last decoded.
    pub(crate) decoded: RefCell<decoded::DecodedMeta>,
}


impl Isolate {
    /// A fresh isolate state.
    pub fn new() -> Rc<Self> {
        Rc::new(Isolate {
            regenerations: IsolateState::new(),
            renders: Default::default(),
            log: Default::default(),
            announced: Default::default(),
            failing_renders: Default::default(),
            stats: Default::default(),
            tier_planner: Default::default(),
            tier_said_unavailable: Default::default(),
            tier_said_any_host: Default::default(),
            url_routes: Default::default(),
            decoded: Default::default(),
        })
    }
}

thread_local! {
    /// The site of an engine given none (every path proxied to `ORIGIN_URL`), made on first
    /// use and shared: an engine is built per request, and a HIT should not allocate one.
    static DEFAULT_SITE: Rc<LazySite> = Rc::new(LazySite::new(|| Rc::new(Site::new())));
}

/// The engine, built per request from the isolate's shared state and the request's bindings.
pub struct Engine<S, O> {
    pub(crate) config: Rc<Config>,
    pub(crate) store: Rc<S>,
    pub(crate) origin: Rc<O>,
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) background: Rc<dyn Background>,
    pub(crate) logger: Rc<dyn Logger>,
    pub(crate) isolate: Rc<Isolate>,
    pub(crate) jobs: Option<Rc<dyn JobQueue>>,
    pub(crate) site: Rc<LazySite>,
    pub(crate) purger: Option<tier::SharedPurger>,
    pub(crate) coordinator: Option<Rc<dyn Coordinator>>,
}

impl<S, O> Clone for Engine<S, O> {
    fn clone(&self) -> Self {
        Engine {
            config: self.config.clone(),
            store: self.store.clone(),
            origin: self.origin.clone(),
            clock: self.clock.clone(),
            background: self.background.clone(),
            logger: self.logger.clone(),
            isolate: self.isolate.clone(),
            jobs: self.jobs.clone(),
            site: self.site.clone(),
            purger: self.purger.clone(),
            coordinator: self.coordinator.clone(),
        }
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Assembles an engine.
    pub fn new(
        config: Rc<Config>,
        store: Rc<S>,
        origin: Rc<O>,
        clock: Rc<dyn Clock>,
        background: Rc<dyn Background>,
        logger: Rc<dyn Logger>,
        isolate: Rc<Isolate>,
    ) -> Self {
        Engine {
            config,
            store,
            origin,
            clock,
            background,
            logger,
            isolate,
            jobs: None,
            // Made on first use: an engine is built per request, and a HIT needs no site.
            site: DEFAULT_SITE.with(Rc::clone),
            purger: None,
            coordinator: None,
        }
    }

    /// Renders pages with `site`'s routes (by default every path is proxied to `ORIGIN_URL`).
    pub fn with_site(mut self, site: Rc<Site>) -> Self {
        self.site = Rc::new(LazySite::ready(site));
        self
    }

    /// [`Engine::with_site`] with a site made on its first use (not by a HIT).
    pub fn with_lazy_site(mut self, site: Rc<LazySite>) -> Self {
        self.site = site;
        self
    }

    /// Purges Workers Cache with `purger` when `WORKERS_CACHE` is on (`ctx.cache`, or the e2e
    /// test double).
    pub fn with_purger(mut self, purger: Rc<dyn crate::tier::send::CachePurger>) -> Self {
        self.purger = Some(purger);
        self
    }

    /// Lets invalidations continue in later invocations through `jobs` (a queue).
    pub fn with_jobs(mut self, jobs: Rc<dyn JobQueue>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Records invalidations in `coordinator` and checks HITs against its log, so that an
    /// invalidation is live in every location within seconds; regenerations claim there.
    pub fn with_coordinator(mut self, coordinator: Rc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// [`Engine::render`], with the time this visitor waited for it (from `since`) in
    /// `Server-Timing`.
    async fn timed_render(&self, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>, since: u64, kv_ms: Option<u64>) -> Response {
        let resp = self.render(req, key, page_key, previous).await;
        let origin_ms = Some(self.clock.now_ms().saturating_sub(since));
        timing::add(resp, Timing { kv_ms, origin_ms })
    }

    /// Reads and decodes a stored page. A store error or unreadable metadata is logged and
    /// treated as "no page": the visitor still gets an answer from the origin.
    pub(crate) async fn read_page(&self, page_key: &str) -> Option<StoredPage> {
        self.decode_page(page_key, self.store.get(page_key).await)
    }

    pub(crate) fn decode_page(&self, page_key: &str, read: Result<Option<StoredValue>, StoreError>) -> Option<StoredPage> {
        match read {
            Ok(Some(v)) => match self.isolate.decoded.borrow_mut().decode(page_key, v.metadata.as_deref()) {
                Ok(meta) => Some(StoredPage { meta, body: v.value }),
                Err(e) => {
                    self.log_event(Level::Warn, "page_unreadable", page_key, &format!("ignoring it: {e}"));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.log_event(Level::Warn, "page_read_failed", page_key, &format!("{e}; asking the origin"));
                None
            }
        }
    }

    /// Builds the visitor's answer from a stored page.
    pub(crate) fn serve(&self, req: &Request, page: &StoredPage, state: CacheState) -> Response {
        let meta = &page.meta;
        let now = self.clock.now_ms();
        let mut headers = meta.headers();
        crate::rules::downstream::downstream_cache_headers(&mut headers);
        if self.config.workers_cache {
            self.tier_headers_for_stored(req, page, &state, &mut headers);
        }
        headers.set("etag", meta.etag.clone());
        if let Some(lm) = &meta.last_modified {
            headers.set("last-modified", lm.clone());
        }
        let mut age = String::with_capacity(8);
        timing::push_decimal(&mut age, meta.age_s(now));
        headers.set("age", age);
        headers.set(CACHE_STATE_HEADER, state.as_str());
        let not_modified = matches!(meta.status, 200 | 203)
            && req.headers.get("if-none-match").is_some_and(|v| if_none_match_matches(v, &meta.etag));
        if not_modified {
            headers.remove("content-type");
            headers.remove("content-language");
            return Response {
                status: 304,
                headers,
                body: Body::new(),
            };
        }
        Response {
            status: meta.status,
            headers,
            body: if req.method == "HEAD" { Body::new() } else { page.body.clone() },
        }
    }

    /// Sends a non-cacheable request to the origin as the visitor made it (or, on a route the
    /// worker renders, renders it without storing).
    async fn pass_through(&self, req: Request, reason: BypassReason) -> Response {
        let base = match crate::rules::key::normalise(&req.url, &self.config) {
            Ok(key) => match &self.site.route_for(&key.path).route.route.renderer {
                Renderer::Proxy(base) => base.clone(),
                Renderer::Render(_) => return bypass_response(self.render_uncached(&req, &key).await, &reason),
            },
            Err(_) => None,
        };
        // A Worker origin (ORIGIN_SERVICE) gets the visitor's URL as it is, like a Worker on the route.
        let raw = match &base {
            None if self.config.origin_service.is_some() => crate::rules::key::parse_url(&req.url).ok().map(|u| u.to_string()),
            _ => self.raw_origin_url(&req.url, base.as_ref().unwrap_or(&self.config.origin)),
        };
        let Some(url) = raw else {
            return Response::json_error(400, "malformed request URL");
        };
        let upstream_path = crate::rules::key::parse_url(&url).map(|u| u.path().to_string()).unwrap_or_default();
        let mut upstream = req;
        upstream.url = url;
        upstream.headers.remove("host");
        // Streamed both ways: the visitor's body (an upload) and the origin's (a download, an
        // event stream) are handed on as they arrive, never held in memory. The origin answers
        // an upload after receiving it, which takes as long as the visitor takes to send it: the
        // wait for its answer is bounded by the platform's own proxy limit instead.
        let timeout_ms = if upstream.body.as_streaming().is_some() {
            UPLOAD_ANSWER_TIMEOUT_MS.max(self.config.origin_timeout_ms)
        } else {
            self.config.origin_timeout_ms
        };
        let sent = match base {
            Some(_) => self.origin.fetch_to_serve(upstream, timeout_ms).await,
            None => self.origin.fetch_page_to_serve(upstream, timeout_ms).await,
        };
        match sent {
            Ok(resp) => bypass_response(resp, &reason),
            Err(e) => self.origin_error_response(&upstream_path, &e),
        }
    }

    /// The origin URL for a request that is not keyed: origin base plus the raw path and query.
    fn raw_origin_url(&self, url: &str, base: &url::Url) -> Option<String> {
        let parsed = crate::rules::key::parse_url(url).ok()?;
        let mut origin = base.clone();
        let base = origin.path().trim_end_matches('/').to_string();
        origin.set_path(&format!("{base}{}", parsed.path()));
        origin.set_query(parsed.query());
        Some(origin.to_string())
    }

    /// The base URL a page of the site's own origin is fetched from: `ORIGIN_URL`, or, for a
    /// Worker origin (`ORIGIN_SERVICE`), `https://` and the key's host, so that the Worker sees
    /// the page's public URL (whatever scheme or port the visitor used: they share the page).
    pub(crate) fn page_base(&self, key: &CacheKey) -> std::borrow::Cow<'_, url::Url> {
        if self.config.origin_service.is_some() {
            if let Ok(url) = url::Url::parse(&format!("https://{}/", key.host)) {
                return std::borrow::Cow::Owned(url);
            }
        }
        std::borrow::Cow::Borrowed(&self.config.origin)
    }

    /// The request sent to the origin to render `key`: its normalised URL, a fixed set of
    /// headers (nothing from the visitor, so unkeyed headers cannot change a stored page), and
    /// the stored page's validators when regenerating.
    pub(crate) fn origin_request(&self, key: &CacheKey, purpose: &str, previous: Option<&PageMeta>, base: &url::Url) -> Request {
        let mut req = Request::new("GET", &key.origin_url(base))
            .with_header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .with_header("user-agent", concat!("edge-isr/", env!("CARGO_PKG_VERSION")))
            .with_header("x-forwarded-host", &key.host)
            .with_header("x-isr-render", purpose);
        if let Some(meta) = previous {
            if let Some(etag) = &meta.origin_etag {
                req.headers.set("if-none-match", etag.clone());
            }
            if let Some(lm) = &meta.last_modified {
                req.headers.set("if-modified-since", lm.clone());
            }
        }
        req
    }

    /// `req` with its body in memory, if that body is within [`crate::webhook::MAX_BODY_BYTES`]
    /// (the webhook's and the admin page's bodies, which they parse and sign-check); else the
    /// `413` answer. A `Content-Length` over the limit is refused before a byte is read into
    /// memory; a body without one is read only up to the limit. The rest of a refused body is
    /// dropped as it arrives (for at most [`DISCARD_LIMIT_MS`]) before the 413 goes out, so
    /// that a client still sending gets the answer rather than a reset connection.
    async fn read_small_body(&self, mut req: Request) -> Result<Request, Response> {
        let limit = crate::webhook::MAX_BODY_BYTES;
        let declared = req.headers.get("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let refusal = if declared.is_some_and(|n| n > limit as u64) {
            Response::json_error(413, &format!("the body is over the limit of {limit} bytes"))
        } else {
            match req.body.read_capped(limit).await {
                Ok(body) => {
                    req.body = body;
                    return Ok(req);
                }
                Err(crate::http::ReadError::TooLarge) => Response::json_error(413, &format!("the body is over the limit of {limit} bytes")),
                Err(crate::http::ReadError::Failed(e)) => return Err(Response::json_error(400, &format!("the request body could not be read: {e}"))),
            }
        };
        let body = req.body.clone();
        let _ = futures_util::future::select(Box::pin(async move { body.discard().await }), self.clock.sleep(DISCARD_LIMIT_MS)).await;
        Err(refusal)
    }

    /// The answer when the origin gave no response and no stored page can stand in. The
    /// visitor gets a generic message; the detail (which may name internal hosts, addresses or
    /// TLS errors) goes to the log only.
    pub(crate) fn origin_error_response(&self, path: &str, e: &OriginError) -> Response {
        self.log_event(Level::Error, "origin_failed", path, &e.to_string());
        let (status, message) = match e {
            OriginError::Timeout(_) => (504, "the origin did not answer in time"),
            OriginError::Network(_) => (502, "the origin could not be reached"),
        };
        Response::json_error(status, message).with_header(CACHE_STATE_HEADER, CacheState::Miss.as_str())
    }

    /// Logs `event` (snake_case: what happened) about `key` (a KV key, path or route pattern;
    /// "" for none) with `reason` (the details), as one JSON line.
    pub(crate) fn log_event(&self, level: Level, event: &str, key: &str, reason: &str) {
        self.logger.event(level, event, key, reason);
    }
}

/// Marks an origin response as passed through, with the reason.
pub(crate) fn bypass_response(mut resp: Response, reason: &BypassReason) -> Response {
    resp.headers.set(CACHE_STATE_HEADER, "BYPASS");
    resp.headers.set(BYPASS_REASON_HEADER, reason.as_str());
    resp
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod invalidation_tests;
#[cfg(test)]
mod lost_invalidation_tests;
#[cfg(test)]
mod site_tests;
#[cfg(test)]
mod coordination_tests;
#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod front_tests;
#[cfg(test)]
mod tier_tests;
#[cfg(test)]
mod tier_coordinated_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod stream_tests;

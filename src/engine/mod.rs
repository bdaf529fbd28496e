//! The ISR engine: decides, for each request, between HIT, STALE, MISS and BYPASS.
//!
//! Life of a request (compare pingora-cache's phases):
//! 1. [`policy::classify_request`] — BYPASS (method, credentials, unkeyable URL) or a key.
//! 2. One KV read of the page ([`Engine::read_page`]).
//! 3. [`freshness`] of what was read:
//!    - fresh → HIT, answered from the stored page;
//!    - stale → STALE, answered from the stored page, and a regeneration is handed to background
//!      work (one per page per isolate, plus a best-effort lease across isolates);
//!    - none (or expired by a hard invalidation) → MISS: render from the origin while the visitor
//!      waits (one render per page per isolate, shared by concurrent visitors), answer, and write
//!      the page in the background.
//!
//! Every dependency is a trait, so the same code runs on Workers and in native tests.

mod admin;
pub mod backoff;
mod index;
mod invalidate;
pub mod jobs;
mod prerender;
mod produce;
mod revalidate;
mod regenerate;
mod render;
mod write;

use crate::runtime::background::Background;
use crate::runtime::clock::Clock;
use crate::rules::conditional::if_none_match_matches;
use crate::rules::config::Config;
use crate::rules::freshness::{freshness_within, Freshness};
use crate::http::{Body, Request, Response};
use crate::engine::jobs::JobQueue;
use crate::rules::key::CacheKey;
use crate::store::layout;
use crate::coordination::lease::IsolateState;
use crate::runtime::log::{Level, Logger};
use crate::rules::meta::{PageMeta, StoredPage};
use crate::runtime::origin::{Origin, OriginError};
use crate::rules::policy::{self, RequestDecision};
use crate::site::{LazySite, Renderer, Site};
use crate::rules::state::{BypassReason, CacheState};
use crate::store::{KvStore, StoreError, StoredValue};
use std::rc::Rc;

pub use invalidate::InvalidationOutcome;
pub use admin::{PageRow, ADMIN_PATH};
pub use produce::Hints;
pub use render::RenderOutcome;
pub use prerender::{params_from_listing, PrerenderJob, PrerenderReport, PRERENDER_BATCH};

/// Response header carrying the cache state.
pub const CACHE_STATE_HEADER: &str = "x-isr-cache";
/// Response header carrying the reason of a BYPASS.
pub const BYPASS_REASON_HEADER: &str = "x-isr-reason";
/// `Cache-Control` sent to browsers when the origin gave none: browsers revalidate every time
/// (cheaply, with `If-None-Match` → 304), so an invalidation reaches them at once.
pub const DEFAULT_BROWSER_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// Everything that lives as long as the isolate and is shared by its requests.
#[derive(Default)]
pub struct Isolate {
    /// Regeneration claims and back-off.
    pub regenerations: Rc<IsolateState>,
    /// MISS renders in flight, shared by concurrent visitors of the same page.
    pub(crate) renders: render::InFlightRenders,
    /// Keys whose MISS renders failed recently: their visitors get the recent error.
    pub failing_renders: backoff::FailingRenders,
}

impl Isolate {
    /// A fresh isolate state.
    pub fn new() -> Rc<Self> {
        Rc::new(Isolate {
            regenerations: IsolateState::new(),
            renders: Default::default(),
            failing_renders: Default::default(),
        })
    }
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
            site: Rc::new(LazySite::ready(Rc::new(Site::new()))),
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

    /// Lets invalidations continue in later invocations through `jobs` (a queue).
    pub fn with_jobs(mut self, jobs: Rc<dyn JobQueue>) -> Self {
        self.jobs = Some(jobs);
        self
    }

    /// Answers one visitor request.
    pub async fn handle(&self, req: Request) -> Response {
        // One parse of the URL routes the worker's own paths (webhook, admin page) and keys pages.
        let url = crate::rules::key::parse_url(&req.url).ok();
        if let Some(path) = url.as_ref().map(|u| u.path()) {
            if path == self.config.revalidate_path {
                return self.handle_revalidate(req).await;
            }
            if admin::is_admin_path(path) {
                return self.handle_admin(req).await;
            }
        }
        let key = match policy::classify_parsed(&req, url.as_ref(), &self.config) {
            RequestDecision::Cacheable(key) => key,
            RequestDecision::Bypass(reason) => return self.pass_through(req, reason).await,
        };
        let page_key = layout::page_key(&self.config.cache_version, &key.page_id());
        let stored = self.read_page_to_serve(&page_key).await;
        let now = self.clock.now_ms();
        match stored {
            Some(page) => match freshness_within(&page.meta, now, self.config.stale_if_error_s) {
                Freshness::Fresh => self.serve(&req, &page, CacheState::Hit),
                Freshness::Stale => {
                    self.start_regeneration(&key, &page_key, &page);
                    self.serve(&req, &page, CacheState::Stale)
                }
                Freshness::Expired => self.render(&req, &key, &page_key, Some(page.meta)).await,
            },
            None => match self.isolate.renders.pending_page(&page_key, now) {
                // Rendered here a moment ago; its KV write has not landed yet.
                Some(page) => self.serve(&req, &page, CacheState::Hit),
                None => self.render(&req, &key, &page_key, None).await,
            },
        }
    }

    /// Reads and decodes a stored page. A store error or unreadable metadata is logged and
    /// treated as "no page": the visitor still gets an answer from the origin.
    pub(crate) async fn read_page(&self, page_key: &str) -> Option<StoredPage> {
        self.decode_page(page_key, self.store.get(page_key).await)
    }

    /// [`Engine::read_page`] for the visitor's answer: the body may be one only the platform
    /// can read ([`KvStore::get_to_serve`]), so nothing but [`Engine::serve`] may touch it.
    async fn read_page_to_serve(&self, page_key: &str) -> Option<StoredPage> {
        self.decode_page(page_key, self.store.get_to_serve(page_key).await)
    }

    fn decode_page(&self, page_key: &str, read: Result<Option<StoredValue>, StoreError>) -> Option<StoredPage> {
        match read {
            Ok(Some(v)) => match PageMeta::decode(v.metadata.as_deref()) {
                Ok(meta) => Some(StoredPage { meta, body: v.value }),
                Err(e) => {
                    self.log(Level::Warn, &format!("ignoring {page_key}: {e}"));
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.log(Level::Warn, &format!("reading {page_key} failed: {e}; asking the origin"));
                None
            }
        }
    }

    /// Builds the visitor's answer from a stored page.
    pub(crate) fn serve(&self, req: &Request, page: &StoredPage, state: CacheState) -> Response {
        let meta = &page.meta;
        let now = self.clock.now_ms();
        let mut headers = meta.headers();
        if !headers.contains("cache-control") {
            headers.set("cache-control", DEFAULT_BROWSER_CACHE_CONTROL);
        }
        headers.set("etag", meta.etag.clone());
        if let Some(lm) = &meta.last_modified {
            headers.set("last-modified", lm.clone());
        }
        headers.set("age", meta.age_s(now).to_string());
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
        let Some(url) = self.raw_origin_url(&req.url, base.as_ref().unwrap_or(&self.config.origin)) else {
            return Response::json_error(400, "malformed request URL");
        };
        let upstream_path = crate::rules::key::parse_url(&url).map(|u| u.path().to_string()).unwrap_or_default();
        let mut upstream = req;
        upstream.url = url;
        upstream.headers.remove("host");
        match self.origin.fetch(upstream, self.config.origin_timeout_ms).await {
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

    /// The answer when the origin gave no response and no stored page can stand in.
    pub(crate) fn origin_error_response(&self, path: &str, e: &OriginError) -> Response {
        self.log(Level::Error, &format!("{path}: {e}"));
        let status = match e {
            OriginError::Timeout(_) => 504,
            OriginError::Network(_) => 502,
        };
        Response::json_error(status, &e.to_string()).with_header(CACHE_STATE_HEADER, CacheState::Miss.as_str())
    }

    pub(crate) fn log(&self, level: Level, message: &str) {
        self.logger.log(level, message);
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
mod invalidation_tests;
#[cfg(test)]
mod site_tests;
#[cfg(test)]
mod failure_tests;

//! A visitor request's way through the engine, split at its one KV read.
//!
//! Why split: on Workers every `await` in Rust goes through wasm-bindgen's executor (a promise
//! for the handler, a task, closures for the awaited promise, `queueMicrotask` to wake it),
//! which cost a 2 KiB HIT about as much CPU as the rest of its work together (BENCHMARKS.md,
//! "HIT path"). So the request is taken in two steps that never await:
//!
//! 1. [`Engine::begin`]: everything before the page's read (route the worker's own paths, the
//!    BYPASS rules, the key, the coordinator log's state);
//! 2. [`Engine::after_read`]: everything after it that needs no further I/O: a HIT, a STALE
//!    (its regeneration goes to background work), a 304.
//!
//! Whatever needs more (a MISS, an expired page, the webhook, a BYPASS, a log copy too old to
//! check against) becomes a [`Later`], answered by [`Engine::answer_later`] with awaits as
//! usual. The Workers adapter makes the read itself between the two steps (a `.then` in the
//! entry point, `src/cloudflare/shim.mjs`), so a HIT never enters the executor.
//! [`Engine::handle`] is the same steps with the read awaited in Rust: native tests and every
//! other entry point run the very code the fast path runs.

use super::routes::{PageAt, UrlRoute};
use super::{timing::Timing, Engine};
use crate::http::{Request, Response};
use crate::rules::freshness::{freshness_within, Freshness};
use crate::rules::invalidation::InvalidationMode;
use crate::rules::meta::PageMeta;
use crate::rules::policy;
use crate::rules::state::{BypassReason, CacheState};
use crate::runtime::origin::Origin;
use crate::store::{KvStore, StoreError, StoredValue};
use std::rc::Rc;

/// What [`Engine::begin`] found a request needs.
// `Read` is the HIT's way and stays unboxed (no allocation per HIT); `Later` is boxed.
#[allow(clippy::large_enum_variant)]
pub enum Begun {
    /// Read this page (with [`KvStore::get_to_serve`]), then call [`Engine::after_read`].
    Read(PendingRead),
    /// Answer it with [`Engine::answer_later`].
    Later(Later),
}

/// What [`Engine::after_read`] made of the page read.
pub enum AfterRead {
    /// The visitor's answer, complete (counted, with its headers).
    Answer(Response),
    /// Answer it with [`Engine::answer_later`] (a render is needed).
    Later(Later),
}

/// A cacheable request waiting for its page's read.
pub struct PendingRead {
    /// The request as the cache path sees it ([`policy::cache_view`]).
    pub(super) req: Request,
    /// The page's key and KV key, as [`Engine::route_of`] remembers them.
    at: Rc<PageAt>,
    /// When the read started (the engine's clock), for `Server-Timing`.
    started: u64,
}

impl PendingRead {
    /// The KV key to read.
    pub fn page_key(&self) -> &str {
        &self.at.page_key
    }
}

/// A request whose answer needs I/O beyond the page's read.
pub struct Later(Box<LaterKind>);

/// What [`Engine::begin`] or [`Engine::after_read`] decided the request needs: carried, so
/// that nothing is decided twice.
enum LaterKind {
    /// The revalidation webhook.
    Webhook(Request),
    /// The admin page.
    Admin(Request),
    /// The e2e-only route of the Workers Cache test double.
    TierTestRoute,
    /// Not for the cache: passed through to the origin.
    Bypass(Request, BypassReason),
    /// A page whose log copy is too old to check it against: read beside a refresh.
    ReadAfterLog(PendingRead),
    /// A page to render while the visitor waits (none stored, or expired).
    Render(Box<RenderNeeded>),
}

/// A page to render while its visitor waits, on top of `previous` (if any), with the time the
/// visitor has waited since `since` and the KV read's time for `Server-Timing`.
struct RenderNeeded {
    req: Request,
    at: Rc<PageAt>,
    previous: Option<PageMeta>,
    since: u64,
    kv_ms: Option<u64>,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Answers one visitor request (and counts the answer, see [`super::stats`]).
    pub async fn handle(&self, req: Request) -> Response {
        match self.begin(req) {
            Begun::Read(pending) => {
                let read = self.store.get_to_serve(pending.page_key()).await;
                match self.after_read(pending, read) {
                    AfterRead::Answer(resp) => resp,
                    AfterRead::Later(later) => self.answer_later(later).await,
                }
            }
            Begun::Later(later) => self.answer_later(later).await,
        }
    }

    /// Step 1 (no await): what `req` needs before anything can be answered.
    pub fn begin(&self, req: Request) -> Begun {
        self.begin_taken(req, true).expect("a whole request is always taken")
    }

    /// [`Engine::begin`] for a request of which only its method, URL and
    /// [`policy::CACHE_PATH_HEADERS`] were taken from the runtime (the Workers fast path): what
    /// a cacheable request needs, or `None` when it needs the whole request (the webhook, the
    /// admin page, a BYPASS: take it whole and call [`Engine::begin`]).
    pub fn begin_view(&self, view: Request) -> Option<Begun> {
        self.begin_taken(view, false)
    }

    fn begin_taken(&self, req: Request, whole: bool) -> Option<Begun> {
        self.announce_coordination();
        let later = |kind| whole.then(|| Begun::Later(Later(Box::new(kind))));
        // What the URL is (the worker's own paths, or a page and its key), remembered per isolate.
        let page = match &*self.route_of(&req.url) {
            UrlRoute::Webhook => return later(LaterKind::Webhook(req)),
            UrlRoute::Admin => return later(LaterKind::Admin(req)),
            UrlRoute::TierTestRoute => return later(LaterKind::TierTestRoute),
            UrlRoute::Page(page) => page.clone(),
        };
        if let Some(reason) = policy::bypass_reason(&req, &self.config) {
            return later(LaterKind::Bypass(req, reason));
        }
        let Some(at) = page else {
            return later(LaterKind::Bypass(req, BypassReason::Unkeyable));
        };
        // From here on only what decides a cached answer is kept (whole or not, the same view).
        let req = policy::cache_view(req);
        let pending = PendingRead { req, at, started: self.clock.now_ms() };
        // A log copy too old to check a page against is refreshed first, beside the read.
        Some(if self.log_usable_now() {
            Begun::Read(pending)
        } else {
            Begun::Later(Later(Box::new(LaterKind::ReadAfterLog(pending))))
        })
    }

    /// Step 2 (no await): the answer from the page `read` gave, when it needs no more I/O.
    pub fn after_read(&self, pending: PendingRead, read: Result<Option<StoredValue>, StoreError>) -> AfterRead {
        match self.outcome(pending, read) {
            Ok(resp) => AfterRead::Answer(self.conclude(resp)),
            Err(render) => AfterRead::Later(Later(Box::new(LaterKind::Render(render)))),
        }
    }

    /// [`Engine::after_read`] before [`Engine::conclude`]: the answer, or the render it needs.
    fn outcome(&self, pending: PendingRead, read: Result<Option<StoredValue>, StoreError>) -> Result<Response, Box<RenderNeeded>> {
        let PendingRead { req, at, started } = pending;
        let (key, page_key) = (&at.key, &at.page_key);
        let stored = self.decode_page(page_key, read);
        let now = self.clock.now_ms();
        let kv_ms = Some(now.saturating_sub(started));
        // Ok: served from what was read; Err: rendered, on top of this previous page (if any).
        let served: Result<Response, Option<PageMeta>> = match stored {
            Some(page) => match freshness_within(&page.meta, now, self.config.stale_if_error_s) {
                Freshness::Fresh => match self.log_verdict(key, &page.meta) {
                    None => Ok(self.serve(&req, &page, CacheState::Hit)),
                    // Invalidated, and KV's mark has not arrived here yet: do what the mark
                    // would do, on the version it would make (so that claims match).
                    Some((mode, at)) => {
                        let mut page = page;
                        page.meta.invalidated_at = Some(at);
                        page.meta.expired = mode == InvalidationMode::Expire;
                        if page.meta.expired {
                            Err(Some(page.meta))
                        } else {
                            self.start_regeneration(key, page_key, &page);
                            Ok(self.serve(&req, &page, CacheState::Stale))
                        }
                    }
                },
                Freshness::Stale => {
                    self.start_regeneration(key, page_key, &page);
                    Ok(self.serve(&req, &page, CacheState::Stale))
                }
                Freshness::Expired => Err(Some(page.meta)),
            },
            None => match self.isolate.renders.pending_page(page_key, now) {
                // Rendered here a moment ago; its KV write has not landed yet.
                Some(page) => Ok(self.serve(&req, &page, CacheState::Hit)),
                None => Err(None),
            },
        };
        match served {
            Ok(resp) => Ok(super::timing::add(resp, Timing { kv_ms, origin_ms: None })),
            Err(previous) => Err(Box::new(RenderNeeded { req, at: at.clone(), previous, since: now, kv_ms })),
        }
    }

    /// The answer of a request [`Engine::begin`] or [`Engine::after_read`] could not finish.
    pub async fn answer_later(&self, later: Later) -> Response {
        let resp = match *later.0 {
            LaterKind::Webhook(req) => {
                let answer = match self.read_small_body(req).await {
                    Ok(req) => self.handle_revalidate(req).await,
                    Err(refusal) => refusal,
                };
                super::timing::add(answer, Timing::default())
            }
            LaterKind::Admin(req) => {
                let answer = match self.read_small_body(req).await {
                    Ok(req) => self.handle_admin(req).await,
                    Err(refusal) => refusal.with_header("cache-control", "no-store"),
                };
                super::timing::add(answer, Timing::default())
            }
            LaterKind::TierTestRoute => self.handle_tier_test_route().await,
            LaterKind::Bypass(req, reason) => {
                let started = self.clock.now_ms();
                let resp = self.pass_through(req, reason).await;
                let origin_ms = Some(self.clock.now_ms().saturating_sub(started));
                super::timing::add(resp, Timing { kv_ms: None, origin_ms })
            }
            LaterKind::ReadAfterLog(pending) => {
                // The log refresh due before answering overlaps the page's KV read.
                let (read, ()) = futures_util::future::join(self.store.get_to_serve(pending.page_key()), self.sync_log()).await;
                match self.outcome(pending, read) {
                    Ok(resp) => resp,
                    Err(render) => self.render_needed(render).await,
                }
            }
            LaterKind::Render(render) => self.render_needed(render).await,
        };
        self.conclude(resp)
    }

    async fn render_needed(&self, r: Box<RenderNeeded>) -> Response {
        self.timed_render(&r.req, &r.at.key, &r.at.page_key, r.previous, r.since, r.kv_ms).await
    }

    /// What every answer gets last: it is counted, and (Workers Cache mode) kept out of the
    /// tier unless it was given the tier's fields.
    fn conclude(&self, mut resp: Response) -> Response {
        self.count_answer(&resp);
        if self.config.workers_cache {
            self.tier_no_store_unless_kept(&mut resp);
        }
        resp
    }
}

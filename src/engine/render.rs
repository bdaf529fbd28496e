//! MISS: render a page from the origin while the visitor waits, once per page per isolate.
//!
//! A proxied page streams: its storing is decided from the head (status and headers), and a
//! page to store is split ([`crate::http::Body::tee`]): the visitor who started the render gets
//! the head and then the body as it arrives, while the other branch is read whole in the
//! background and stored only if it arrived complete, in time and within KV's value limit.
//! Visitors sharing the render wait for that complete copy. Pages a route renders in the worker
//! come whole and are answered as before.

use super::{bypass_response, Engine};
use crate::http::{Body, ReadError, Request, Response};
use crate::rules::freshness::is_origin_failure;
use crate::rules::key::CacheKey;
use crate::runtime::log::Level;
use crate::rules::meta::{PageMeta, StoredPage};
use crate::runtime::origin::{Origin, OriginError};
use crate::rules::state::{BypassReason, CacheState};
use crate::store::KvStore;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::Poll;

/// What one origin render produced, shared by every visitor that waited for it.
#[derive(Clone, Debug)]
pub enum RenderOutcome {
    /// A cacheable page; it is being written to the store in the background.
    Stored(StoredPage),
    /// A response that must not be stored (or shared with other visitors).
    NotStored(Response, BypassReason),
    /// A response that went to the visitor who started the render as it arrived and is not
    /// stored (its head forbids it, or its body was over KV's limit): there is no copy to share,
    /// so the other visitors fetch their own.
    Streamed(BypassReason),
    /// No response at all.
    Failed(OriginError),
}

type SharedRender = Shared<LocalBoxFuture<'static, RenderOutcome>>;

/// Longest time a rendered page is served from isolate memory while its KV write is pending
/// (the `waitUntil` limit: a write that has not finished by then never will).
pub const MAX_PENDING_WRITE_MS: u64 = crate::rules::config::WAIT_UNTIL_LIMIT_MS;

/// Longest time a streamed MISS's body may take to arrive to be stored: what is left of the
/// `waitUntil` limit once the write's 429 retries are allowed for, with 3 s to spare. A body
/// still arriving then is not stored (its visitor keeps receiving it).
pub const STREAMED_BODY_LIMIT_MS: u64 = crate::rules::config::WAIT_UNTIL_LIMIT_MS - super::write::WRITE_RETRY_BACKOFF_MS - 3_000;

/// Where a render that streams leaves its first visitor's answer: set as soon as the head is in.
type EarlyAnswer = Rc<RefCell<Option<Response>>>;

/// How the leader's wait for its render ended.
enum Led {
    /// The render ended (a whole body, or no answer).
    Done(RenderOutcome),
    /// The answer streams; the render goes on (reading the body to store).
    Streaming(Response),
}

/// Why a body still arriving could not be read whole.
enum Unread {
    /// Over KV's value limit.
    TooLarge,
    /// The stream failed (the origin's connection broke off).
    Broken(String),
    /// Still arriving after [`STREAMED_BODY_LIMIT_MS`].
    TimedOut,
}

struct InFlight {
    id: u64,
    render: SharedRender,
}

/// Renders of this isolate, by page key: in flight, or done and waiting for their KV write.
///
/// Keeping a finished render until its background write lands closes a gap: without it, a
/// visitor arriving between the MISS response and the end of the write would find nothing in
/// KV and cause a second origin render.
#[derive(Default)]
pub(crate) struct InFlightRenders {
    entries: RefCell<HashMap<String, InFlight>>,
    next_id: std::cell::Cell<u64>,
}

impl InFlightRenders {
    /// Removes the entry of `page_key` if it is still render `id`.
    fn finish(&self, page_key: &str, id: u64) {
        let mut entries = self.entries.borrow_mut();
        if entries.get(page_key).is_some_and(|e| e.id == id) {
            entries.remove(page_key);
        }
    }

    /// A page rendered here whose KV write has not landed yet, if still usable at `now`.
    pub(crate) fn pending_page(&self, page_key: &str, now: u64) -> Option<StoredPage> {
        let entries = self.entries.borrow();
        match entries.get(page_key)?.render.peek()? {
            RenderOutcome::Stored(page) if now < pending_until(page) => Some(page.clone()),
            _ => None,
        }
    }
}

/// Waits for the leader's own render: until it ends, or until its answer streams (then the
/// render goes on in the background). When both happen in one step, a stored page wins (it is
/// whole, with its ETag; the streamed branch is cancelled); otherwise the streamed answer does,
/// since there is no other copy.
async fn lead(mut render: SharedRender, early: &EarlyAnswer) -> Led {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = render.poll_unpin(cx) {
            let streamed = early.borrow_mut().take();
            return Poll::Ready(match streamed {
                Some(answer) if !matches!(outcome, RenderOutcome::Stored(_)) => Led::Streaming(answer),
                Some(unused) => {
                    unused.body.cancel();
                    Led::Done(outcome)
                }
                None => Led::Done(outcome),
            });
        }
        match early.borrow_mut().take() {
            Some(answer) => Poll::Ready(Led::Streaming(answer)),
            None => Poll::Pending,
        }
    })
    .await
}

/// Until when a finished render may be served from memory: while fresh, and at most
/// [`MAX_PENDING_WRITE_MS`].
fn pending_until(page: &StoredPage) -> u64 {
    let fresh = u64::from(page.meta.revalidate_s) * 1000;
    page.meta.rendered_at.saturating_add(fresh.min(MAX_PENDING_WRITE_MS))
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Answers a MISS (or a page expired by a hard invalidation, whose metadata is `previous`).
    ///
    /// Concurrent visitors of the same page share one origin render. A shared render that is
    /// not cacheable and not an error is given only to the visitor who started it: it may carry
    /// per-visitor data (a fresh `Set-Cookie`), so the others fetch their own copy. An error
    /// answer (4xx, 5xx) is shared, without its cookie, and so is the lack of an answer.
    ///
    /// When the render fails (no answer, a 5xx or 429), the key backs off in this isolate
    /// ([`super::backoff`]): its visitors get that error again, without an origin call.
    ///
    /// A proxied page streams (see the module documentation): the visitor who started the
    /// render gets its answer with the head, and the render ends in the background (the read
    /// of the body for the store, then the write; or the back-off, when the body broke off or
    /// stalled). The others wait for the complete copy, or fetch their own when nothing is
    /// stored.
    pub(crate) async fn render(&self, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> Response {
        if let Some(recent) = self.isolate.failing_renders.answer(page_key, self.clock.now_ms()) {
            return strip_head(req, recent);
        }
        let early = EarlyAnswer::default();
        let (id, render, leader) = self.join_or_start_render(req, key, page_key, previous, &early);
        let outcome = if leader {
            match lead(render.clone(), &early).await {
                Led::Done(outcome) => outcome,
                Led::Streaming(answer) => {
                    // The visitor has the head and gets the body as it arrives; the rest of the
                    // render (reading the branch to store, the write) is background work.
                    let (this, page_key, path) = (self.clone(), page_key.to_string(), key.path.clone());
                    self.background.spawn(Box::pin(async move {
                        let outcome = render.await;
                        this.after_streamed(&page_key, &path, id, &outcome);
                    }));
                    return answer;
                }
            }
        } else {
            match self.wait_for(&render).await {
                Some(outcome) => outcome,
                None => {
                    return Response::json_error(504, "waited too long for a render started by another request")
                        .with_header(super::CACHE_STATE_HEADER, CacheState::Miss.as_str())
                }
            }
        };
        if !matches!(outcome, RenderOutcome::Stored(_)) {
            // Stored renders stay until their write lands (the write task removes them).
            self.isolate.renders.finish(page_key, id);
        }
        match outcome {
            RenderOutcome::Stored(page) => self.serve(req, &page, CacheState::Miss),
            RenderOutcome::NotStored(resp, reason) if leader => {
                let answer = bypass_response(resp, &reason);
                if is_origin_failure(answer.status) {
                    strip_head(req, self.back_off(page_key, answer))
                } else {
                    strip_head(req, answer)
                }
            }
            RenderOutcome::NotStored(resp, reason) if resp.status >= 400 => {
                let mut answer = bypass_response(resp, &reason);
                answer.headers.remove("set-cookie");
                strip_head(req, answer)
            }
            RenderOutcome::NotStored(_, reason) | RenderOutcome::Streamed(reason) => {
                match self.produce_streamed(key, "miss", self.config.origin_timeout_ms).await {
                    Ok(own) => strip_head(req, bypass_response(own.resp, &reason)),
                    Err(e) => self.origin_error_response(&key.path, &e),
                }
            }
            RenderOutcome::Failed(e) if leader => {
                let answer = self.origin_error_response(&key.path, &e);
                self.back_off(page_key, answer)
            }
            RenderOutcome::Failed(e) => self.origin_error_response(&key.path, &e),
        }
    }

    /// The end of a render whose first visitor's answer streamed (see [`Engine::render`]): what
    /// the leader does after an ended render, in the background. A body that broke off or
    /// stalled is a failed render: the key backs off as after any failure.
    fn after_streamed(&self, page_key: &str, path: &str, id: u64, outcome: &RenderOutcome) {
        if matches!(outcome, RenderOutcome::Stored(_)) {
            return; // stays until its write lands (the write task removes it)
        }
        self.isolate.renders.finish(page_key, id);
        if let RenderOutcome::Failed(e) = outcome {
            let answer = self.origin_error_response(path, e);
            self.back_off(page_key, answer);
        }
    }

    /// Starts (or lengthens) the back-off of `page_key` after a failed render whose visitor
    /// gets `answer`; returns that answer, with `Retry-After`.
    fn back_off(&self, page_key: &str, answer: Response) -> Response {
        let now = self.clock.now_ms();
        let answer = self.isolate.failing_renders.record(page_key, now, answer);
        let wait = answer.headers.get("retry-after").unwrap_or("?");
        self.log_event(Level::Warn, "miss_failed", page_key, &format!("status {}; its visitors get this error for {wait}s without asking the origin", answer.status));
        answer
    }

    /// Waits for a render another request started, by looking at it between short pauses of
    /// this request's own (never by awaiting it: see [`crate::runtime::clock::Clock::pause`]). Gives up
    /// a second after the origin timeout and the time a streamed body has to arrive, by which
    /// time the render has ended one way or another.
    async fn wait_for(&self, render: &SharedRender) -> Option<RenderOutcome> {
        let deadline = self.clock.now_ms() + self.config.origin_timeout_ms + STREAMED_BODY_LIMIT_MS + 1_000;
        loop {
            if let Some(outcome) = render.peek() {
                return Some(outcome.clone());
            }
            if self.clock.now_ms() >= deadline {
                return None;
            }
            self.clock.pause().await;
        }
    }

    fn join_or_start_render(&self, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>, early: &EarlyAnswer) -> (u64, SharedRender, bool) {
        let renders = &self.isolate.renders;
        let now = self.clock.now_ms();
        let mut entries = renders.entries.borrow_mut();
        if let Some(entry) = entries.get(page_key) {
            let usable = match entry.render.peek() {
                None => true, // still rendering: join it
                Some(RenderOutcome::Stored(page)) => now < pending_until(page),
                Some(_) => false,
            };
            if usable {
                return (entry.id, entry.render.clone(), false);
            }
        }
        let id = renders.next_id.get() + 1;
        renders.next_id.set(id);
        let this = self.clone();
        let (key, page_key_owned, early) = (key.clone(), page_key.to_string(), early.clone());
        // The leader's request, for its streamed answer (a GET or HEAD: no body to keep).
        let leader_req = Request { body: Body::new(), ..req.clone() };
        let render = async move { this.render_once(id, &leader_req, &key, &page_key_owned, previous, &early).await }
            .boxed_local()
            .shared();
        entries.insert(
            page_key.to_string(),
            InFlight {
                id,
                render: render.clone(),
            },
        );
        (id, render, true)
    }

    async fn render_once(&self, id: u64, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>, early: &EarlyAnswer) -> RenderOutcome {
        let started = self.clock.now_ms();
        let (resp, hints) = match self.produce_streamed(key, "miss", self.config.origin_timeout_ms).await {
            Ok(p) => (p.resp, p.hints),
            Err(e) => return RenderOutcome::Failed(e),
        };
        if resp.body.as_streaming().is_none() {
            return self.whole_render(id, page_key, previous, resp, &hints, started);
        }
        // Whether to store is decided from the head; the size again once the body is in.
        let declared = resp.headers.get("content-length").and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(0);
        let head = match self.prepare_head(&resp, declared, started, &hints) {
            Ok(head) => head,
            Err(_) if resp.status >= 400 => {
                // An error answer: shared with the visitors waiting for this render and answered
                // again during the back-off, so it is read whole (within KV's value limit).
                return match self.read_whole(&resp.body).await {
                    Ok(body) => self.whole_render(id, page_key, previous, Response { body, ..resp }, &hints, started),
                    Err(unread) => RenderOutcome::Failed(self.body_failure(page_key, &unread, "the origin's error answer")),
                };
            }
            Err(reason) => {
                // Not to be stored: to the visitor as it arrives, never held here.
                self.not_stored(page_key, previous.as_ref(), resp.status, &reason);
                *early.borrow_mut() = Some(strip_head(req, bypass_response(resp, &reason)));
                return RenderOutcome::Streamed(reason);
            }
        };
        let mut answer = self.streamed_answer(req, &head);
        let bodiless = answer.status == 304 || req.method == "HEAD";
        let split = if bodiless { None } else { resp.body.tee() };
        let to_store = match split {
            Some((visitor, to_store)) => {
                answer.body = visitor;
                *early.borrow_mut() = Some(answer);
                to_store
            }
            None => {
                if bodiless {
                    // The visitor needs no body: the origin's is read for the store alone.
                    *early.borrow_mut() = Some(answer);
                }
                // (A body that cannot be split is read whole, then answered as a whole page.)
                resp.body.clone()
            }
        };
        match self.read_whole(&to_store).await {
            Ok(body) => self.whole_render(id, page_key, previous, Response { body, ..resp }, &hints, started),
            Err(Unread::TooLarge) => {
                self.log_event(Level::Warn, "not_stored", page_key, &format!("{} (over {} bytes: streamed to its visitor, not stored)", BypassReason::TooLarge.as_str(), crate::store::limits::MAX_VALUE_BYTES));
                RenderOutcome::Streamed(BypassReason::TooLarge)
            }
            Err(unread) => RenderOutcome::Failed(self.body_failure(page_key, &unread, "the page")),
        }
    }

    /// Reads a body still arriving whole, within KV's value limit and [`STREAMED_BODY_LIMIT_MS`]
    /// (a body still arriving then is cancelled: nothing more is read or buffered for it).
    async fn read_whole(&self, body: &Body) -> Result<Body, Unread> {
        let read = body.read_capped(crate::store::limits::MAX_VALUE_BYTES);
        match futures_util::future::select(Box::pin(read), self.clock.deadline(STREAMED_BODY_LIMIT_MS)).await {
            futures_util::future::Either::Left((Ok(body), _)) => Ok(body),
            futures_util::future::Either::Left((Err(ReadError::TooLarge), _)) => Err(Unread::TooLarge),
            futures_util::future::Either::Left((Err(ReadError::Failed(e)), _)) => Err(Unread::Broken(e)),
            futures_util::future::Either::Right(((), _)) => {
                body.cancel();
                Err(Unread::TimedOut)
            }
        }
    }

    /// Logs why `what`'s body is not stored, and gives the origin error it amounts to.
    fn body_failure(&self, page_key: &str, unread: &Unread, what: &str) -> OriginError {
        let (error, why) = match unread {
            Unread::TooLarge => (OriginError::Network("body over the KV value limit".into()), format!("{what} is over {} bytes", crate::store::limits::MAX_VALUE_BYTES)),
            Unread::Broken(e) => (OriginError::Network(format!("body cut off: {e}")), format!("{what}'s body broke off ({e}); its visitor got what had arrived")),
            Unread::TimedOut => (OriginError::Timeout(STREAMED_BODY_LIMIT_MS), format!("{what}'s body did not end within {STREAMED_BODY_LIMIT_MS} ms; its visitor keeps what arrives")),
        };
        self.log_event(Level::Warn, "not_stored", page_key, &why);
        error
    }

    /// The first visitor's answer to a streamed page to store, from its head (the body is set
    /// by the caller). When the origin gave no ETag, the one stored is computed from the body,
    /// which has not arrived: this answer goes without one, and no `If-None-Match` is checked.
    fn streamed_answer(&self, req: &Request, head: &super::write::PreparedPage) -> Response {
        if head.page.meta.origin_etag.is_some() {
            return self.serve(req, &head.page, CacheState::Miss);
        }
        let mut plain = req.clone();
        plain.headers.remove("if-none-match");
        let mut answer = self.serve(&plain, &head.page, CacheState::Miss);
        answer.headers.remove("etag");
        answer
    }

    /// The outcome of a render whose response is whole (`resp`'s body in memory).
    fn whole_render(&self, id: u64, page_key: &str, previous: Option<PageMeta>, resp: Response, hints: &super::Hints, started: u64) -> RenderOutcome {
        match self.prepare_page(&resp, started, hints) {
            Ok(prepared) => {
                self.isolate.failing_renders.clear(page_key);
                let page = prepared.page.clone();
                let this = self.clone();
                let page_key = page_key.to_string();
                self.background.spawn(Box::pin(async move {
                    this.write_page(&page_key, prepared, previous.as_ref()).await;
                    this.isolate.renders.finish(&page_key, id);
                }));
                RenderOutcome::Stored(page)
            }
            Err(reason) => {
                self.not_stored(page_key, previous.as_ref(), resp.status, &reason);
                RenderOutcome::NotStored(resp, reason)
            }
        }
    }

    /// What follows an answer that is not stored: a log line when it could not be (too large),
    /// and the removal of the expired page it was to replace when the origin says that page is
    /// gone or no longer cacheable.
    fn not_stored(&self, page_key: &str, previous: Option<&PageMeta>, status: u16, reason: &BypassReason) {
        let unstorable = matches!(reason, BypassReason::TooLarge | BypassReason::HeadersTooLarge);
        if unstorable {
            self.log_event(Level::Warn, "not_stored", page_key, &format!("{} (served uncached)", reason.as_str()));
        }
        if previous.is_some() && !unstorable && !is_origin_failure(status) && status != 304 {
            // The stored page (expired, so not served) is one the origin says is gone
            // or no longer cacheable: remove it, as a regeneration would.
            let (this, page_key, answered) = (self.clone(), page_key.to_string(), answered_text(reason));
            self.background.spawn(Box::pin(async move {
                // With its tag index entries (a failure is logged there).
                if this.remove_page(&page_key).await {
                    this.log_event(Level::Info, "page_removed", &page_key, &format!("origin answered {answered} for the expired page; removed it"));
                }
            }));
        }
    }
}

fn answered_text(reason: &BypassReason) -> String {
    match reason {
        BypassReason::Status(status) => status.to_string(),
        other => format!("a page it does not allow caching ({})", other.as_str()),
    }
}

/// `resp` without its body for a `HEAD` request (a body still arriving is cancelled: nobody
/// will read it).
fn strip_head(req: &Request, mut resp: Response) -> Response {
    if req.method == "HEAD" {
        resp.body.cancel();
        resp.body = Default::default();
    }
    resp
}

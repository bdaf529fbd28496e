//! MISS: render a page from the origin while the visitor waits, once per page per isolate.

use super::{bypass_response, Engine};
use crate::http::{Request, Response};
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

/// What one origin render produced, shared by every visitor that waited for it.
#[derive(Clone, Debug)]
pub enum RenderOutcome {
    /// A cacheable page; it is being written to the store in the background.
    Stored(StoredPage),
    /// A response that must not be stored (or shared with other visitors).
    NotStored(Response, BypassReason),
    /// No response at all.
    Failed(OriginError),
}

type SharedRender = Shared<LocalBoxFuture<'static, RenderOutcome>>;

/// Longest time a rendered page is served from isolate memory while its KV write is pending
/// (the `waitUntil` limit: a write that has not finished by then never will).
pub const MAX_PENDING_WRITE_MS: u64 = crate::rules::config::WAIT_UNTIL_LIMIT_MS;

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
    pub(crate) async fn render(&self, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> Response {
        if let Some(recent) = self.isolate.failing_renders.answer(page_key, self.clock.now_ms()) {
            return strip_head(req, recent);
        }
        let (id, render, leader) = self.join_or_start_render(key, page_key, previous);
        let outcome = if leader {
            render.await
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
            RenderOutcome::NotStored(_, reason) => {
                match self.produce(key, "miss", None, self.config.origin_timeout_ms).await {
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
    /// a second after the origin timeout, by which time the render has ended one way or another.
    async fn wait_for(&self, render: &SharedRender) -> Option<RenderOutcome> {
        let deadline = self.clock.now_ms() + self.config.origin_timeout_ms + 1_000;
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

    fn join_or_start_render(&self, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> (u64, SharedRender, bool) {
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
        let (key, page_key_owned) = (key.clone(), page_key.to_string());
        let render = async move { this.render_once(id, &key, &page_key_owned, previous).await }
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

    async fn render_once(&self, id: u64, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> RenderOutcome {
        let started = self.clock.now_ms();
        let (resp, hints) = match self.produce(key, "miss", None, self.config.origin_timeout_ms).await {
            Ok(p) => (p.resp, p.hints),
            Err(e) => return RenderOutcome::Failed(e),
        };
        match self.prepare_page(&resp, started, &hints) {
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
                let unstorable = matches!(reason, BypassReason::TooLarge | BypassReason::HeadersTooLarge);
                if unstorable {
                    self.log_event(
                        Level::Warn,
                        "not_stored",
                        page_key,
                        &format!("{} (served uncached)", reason.as_str()),
                    );
                }
                if previous.is_some() && !unstorable && !is_origin_failure(resp.status) && resp.status != 304 {
                    // The stored page (expired, so not served) is one the origin says is gone
                    // or no longer cacheable: remove it, as a regeneration would.
                    let (this, page_key, answered) = (self.clone(), page_key.to_string(), answered_text(&reason));
                    self.background.spawn(Box::pin(async move {
                        // With its tag index entries (a failure is logged there).
                        if this.remove_page(&page_key).await {
                            this.log_event(Level::Info, "page_removed", &page_key, &format!("origin answered {answered} for the expired page; removed it"));
                        }
                    }));
                }
                RenderOutcome::NotStored(resp, reason)
            }
        }
    }
}

fn answered_text(reason: &BypassReason) -> String {
    match reason {
        BypassReason::Status(status) => status.to_string(),
        other => format!("a page it does not allow caching ({})", other.as_str()),
    }
}

fn strip_head(req: &Request, mut resp: Response) -> Response {
    if req.method == "HEAD" {
        resp.body = Default::default();
    }
    resp
}

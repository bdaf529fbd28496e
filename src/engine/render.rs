//! MISS: render a page from the origin while the visitor waits, once per page per isolate.

use super::{bypass_response, Engine};
use crate::http::{Request, Response};
use crate::key::CacheKey;
use crate::log::Level;
use crate::meta::{PageMeta, StoredPage};
use crate::origin::{Origin, OriginError};
use crate::state::{BypassReason, CacheState};
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

/// Renders in flight in this isolate, by page key.
#[derive(Default)]
pub(crate) struct InFlightRenders(RefCell<HashMap<String, SharedRender>>);

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Answers a MISS (or a page expired by a hard invalidation, whose metadata is `previous`).
    ///
    /// Concurrent visitors of the same page share one origin render. A shared render that is
    /// not cacheable is given only to the visitor who started it: it may carry per-visitor data
    /// (a fresh `Set-Cookie`), so the others fetch their own copy.
    pub(crate) async fn render(&self, req: &Request, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> Response {
        let (render, leader) = self.join_or_start_render(key, page_key, previous);
        let outcome = render.clone().await;
        {
            let mut in_flight = self.isolate.renders.0.borrow_mut();
            if in_flight.get(page_key).is_some_and(|r| r.ptr_eq(&render)) {
                in_flight.remove(page_key);
            }
        }
        match outcome {
            RenderOutcome::Stored(page) => self.serve(req, &page, CacheState::Miss),
            RenderOutcome::NotStored(resp, reason) if leader => strip_head(req, bypass_response(resp, &reason)),
            RenderOutcome::NotStored(_, reason) => {
                let own = self.origin_request(key, "miss", None);
                match self.origin.fetch(own, self.config.origin_timeout_ms).await {
                    Ok(resp) => strip_head(req, bypass_response(resp, &reason)),
                    Err(e) => self.origin_error_response(&e),
                }
            }
            RenderOutcome::Failed(e) => self.origin_error_response(&e),
        }
    }

    fn join_or_start_render(&self, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> (SharedRender, bool) {
        let mut in_flight = self.isolate.renders.0.borrow_mut();
        if let Some(render) = in_flight.get(page_key) {
            return (render.clone(), false);
        }
        let this = self.clone();
        let (key, page_key_owned) = (key.clone(), page_key.to_string());
        let render = async move { this.render_once(&key, &page_key_owned, previous).await }
            .boxed_local()
            .shared();
        in_flight.insert(page_key.to_string(), render.clone());
        (render, true)
    }

    async fn render_once(&self, key: &CacheKey, page_key: &str, previous: Option<PageMeta>) -> RenderOutcome {
        let started = self.clock.now_ms();
        let req = self.origin_request(key, "miss", None);
        let resp = match self.origin.fetch(req, self.config.origin_timeout_ms).await {
            Ok(resp) => resp,
            Err(e) => return RenderOutcome::Failed(e),
        };
        match self.prepare_page(&resp, started, previous.as_ref()) {
            Ok(prepared) => {
                let page = prepared.page.clone();
                let this = self.clone();
                let page_key = page_key.to_string();
                self.background.spawn(Box::pin(async move {
                    this.write_page(&page_key, prepared, previous.as_ref()).await;
                }));
                RenderOutcome::Stored(page)
            }
            Err(reason) => {
                if matches!(reason, BypassReason::TooLarge | BypassReason::HeadersTooLarge) {
                    self.log(
                        Level::Warn,
                        &format!("not storing {page_key}: {} (served uncached)", reason.as_str()),
                    );
                }
                RenderOutcome::NotStored(resp, reason)
            }
        }
    }
}

fn strip_head(req: &Request, mut resp: Response) -> Response {
    if req.method == "HEAD" {
        resp.body = Default::default();
    }
    resp
}

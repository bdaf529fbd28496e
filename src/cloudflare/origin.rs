//! The origin over `fetch`, with a time limit covering the whole response, body included (or,
//! for answers passed on or streamed to the visitor, the response's head).

use super::{convert, js};
use crate::http::{Request, Response};
use crate::runtime::origin::{Origin, OriginError};
use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::Delay;

/// Fetches pages from the configured `ORIGIN_URL`.
pub struct FetchOrigin;

impl Origin for FetchOrigin {
    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&js_sys::global(), req, timeout_ms, Answer::Whole).await
    }

    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&js_sys::global(), req, timeout_ms, Answer::Served).await
    }

    async fn fetch_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&js_sys::global(), req, timeout_ms, Answer::Streamed).await
    }
}

/// What the engine gets of an origin's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// The whole response (the time limit covers the body).
    Whole,
    /// The head, and the body as a stream only passed on ([`crate::http::Body::served`]).
    Served,
    /// The head, and the body still arriving, for the engine to split or pass on
    /// ([`crate::http::Body::streaming`], [`convert::JsStreamBody`]).
    Streamed,
}

/// One `target.fetch(url, init)` (the global `fetch`, or a service binding's): the whole
/// response, or its head with the body left as a stream (see [`Answer`]).
pub(super) async fn exchange(target: &JsValue, req: Request, timeout_ms: u64, answer: Answer) -> Result<Response, OriginError> {
    let network = |e: JsValue| OriginError::Network(js::error_message(&e));
    let controller = web_sys::AbortController::new().map_err(network)?;
    let init = convert::fetch_init(&req, &controller.signal()).map_err(network)?;
    let target = target.clone();
    let exchange = Box::pin(async move {
        let resp = js::call_async(&target, "fetch", &[req.url.as_str().into(), init.into()]).await?;
        match answer {
            Answer::Whole => convert::from_fetch_response(resp.dyn_into()?).await,
            Answer::Served => Ok(convert::from_fetch_response_to_serve(resp.dyn_into()?)),
            Answer::Streamed => Ok(convert::from_fetch_response_streamed(resp.dyn_into()?)),
        }
    });
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(exchange, timer).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(network(e)),
        Either::Right(((), _)) => {
            controller.abort();
            Err(OriginError::Timeout(timeout_ms))
        }
    }
}

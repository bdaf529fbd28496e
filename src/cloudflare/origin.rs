//! The origin over `fetch`, with a time limit covering the whole response, body included (or,
//! for answers only passed on, the response's head).

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
        exchange(&js_sys::global(), req, timeout_ms, false).await
    }

    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&js_sys::global(), req, timeout_ms, true).await
    }
}

/// One `target.fetch(url, init)` (the global `fetch`, or a service binding's): the whole
/// response, or (`to_serve`) its head with the body left as a stream.
pub(super) async fn exchange(target: &JsValue, req: Request, timeout_ms: u64, to_serve: bool) -> Result<Response, OriginError> {
    let network = |e: JsValue| OriginError::Network(js::error_message(&e));
    let controller = web_sys::AbortController::new().map_err(network)?;
    let init = convert::fetch_init(&req, &controller.signal()).map_err(network)?;
    let target = target.clone();
    let exchange = Box::pin(async move {
        let resp = js::call_async(&target, "fetch", &[req.url.as_str().into(), init.into()]).await?;
        if to_serve {
            return Ok(convert::from_fetch_response_to_serve(resp.dyn_into()?));
        }
        convert::from_fetch_response(resp.dyn_into()?).await
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

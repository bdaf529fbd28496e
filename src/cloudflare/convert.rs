//! Conversions between the runtime's requests/responses and the core's plain values.

use crate::http::{Body, Headers, Request as CoreRequest, Response as CoreResponse};
use super::js;
use super::kv::JsBytes;
use js_sys::Uint8Array;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use worker::{Request, Response, Result};

/// Reads a visitor request (its body only for methods that have one).
pub async fn from_worker_request(mut req: Request) -> std::result::Result<CoreRequest, String> {
    let method = req.method().to_string().to_ascii_uppercase();
    let url = req.url().map_err(|e| format!("bad request URL: {e}"))?.to_string();
    let headers: Headers = req.headers().entries().collect();
    let body = if method == "GET" || method == "HEAD" {
        Body::new()
    } else {
        Body::from(req.bytes().await.map_err(|e| format!("reading request body: {e}"))?)
    };
    Ok(CoreRequest { method, url, headers, body })
}

/// The options of a `fetch` to the origin. Redirects are not followed: a redirect is a page
/// like any other (cached if 301/308, passed on otherwise).
pub fn fetch_init(req: &CoreRequest, signal: &web_sys::AbortSignal) -> std::result::Result<js_sys::Object, JsValue> {
    let body = if req.body.is_empty() { JsValue::UNDEFINED } else { Uint8Array::from(&req.body[..]).into() };
    js::object(&[
        ("method", req.method.as_str().into()),
        ("headers", js::headers_to(&req.headers)?.into()),
        ("redirect", "manual".into()),
        ("body", body),
        ("signal", signal.into()),
    ])
}

/// Builds the response the runtime sends to the visitor. A body read from KV is still a
/// JavaScript buffer and is passed on as it is; other bodies are copied out of wasm once.
pub fn to_worker_response(resp: CoreResponse) -> Result<Response> {
    let headers = js::headers_to(&resp.headers)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&headers);
    // 204/304 must not have a body, and HEAD answers have none.
    let body: Option<Uint8Array> = if resp.body.is_empty() || matches!(resp.status, 204 | 304) {
        None
    } else if let Some(js) = resp.body.as_external().and_then(|e| e.as_any().downcast_ref::<JsBytes>()) {
        Some(js.0.clone())
    } else {
        Some(Uint8Array::from(&resp.body[..]))
    };
    let response = web_sys::Response::new_with_opt_buffer_source_and_init(body.as_ref().map(|b| b.as_ref()), &init)?;
    Ok(Response::from(response))
}

/// Reads an origin response whole. The body stays a JavaScript buffer: it is copied into wasm
/// memory only if the engine reads it (a render's JSON data, say), not to store it in KV or
/// send it on.
pub async fn from_fetch_response(resp: web_sys::Response) -> std::result::Result<CoreResponse, JsValue> {
    let status = resp.status();
    let headers = js::headers_from(&resp.headers());
    let body = if matches!(status, 204 | 304) {
        Body::new()
    } else {
        let buffer = JsFuture::from(resp.array_buffer()?).await?;
        Body::external(Rc::new(JsBytes(Uint8Array::new(&buffer))))
    };
    Ok(CoreResponse { status, headers, body })
}

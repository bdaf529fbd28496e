//! Conversions between the runtime's requests/responses and the core's plain values.

use crate::http::{Body, Request as CoreRequest, Response as CoreResponse};
use super::js;
use super::kv::JsBytes;
use js_sys::Uint8Array;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

/// Reads a visitor request (its body only for methods that have one).
pub async fn from_web_request(req: web_sys::Request) -> std::result::Result<CoreRequest, String> {
    let method = req.method().to_ascii_uppercase();
    let headers = js::headers_from(&req.headers());
    let body = if method == "GET" || method == "HEAD" {
        Body::new()
    } else {
        let read = |e: JsValue| format!("reading request body: {}", js::error_message(&e));
        let buffer = JsFuture::from(req.array_buffer().map_err(read)?).await.map_err(read)?;
        Body::from(Uint8Array::new(&buffer).to_vec())
    };
    Ok(CoreRequest { method, url: req.url(), headers, body })
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
///
/// It is returned as the runtime's own `Response`, not wrapped in `worker::Response`: that
/// wrapper would re-create it around its body stream, which costs a stream per request and
/// loses the length (the visitor would get a chunked answer without `Content-Length`).
pub fn to_web_response(resp: CoreResponse) -> std::result::Result<web_sys::Response, JsValue> {
    let headers = js::headers_to(&resp.headers)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&headers);
    // 204/304 must not have a body, and HEAD answers have none. A stored page read to be served
    // is KV's stream and goes on as it is (its length is not known here, nor needed).
    if let Some(stream) = resp.body.as_served().and_then(|s| s.downcast_ref::<web_sys::ReadableStream>()).filter(|_| !matches!(resp.status, 204 | 304)) {
        return web_sys::Response::new_with_opt_readable_stream_and_init(Some(stream), &init);
    }
    let body: Option<Uint8Array> = if matches!(resp.status, 204 | 304) || resp.body.is_empty() {
        None
    } else if let Some(js) = resp.body.as_external().and_then(|e| e.as_any().downcast_ref::<JsBytes>()) {
        Some(js.0.clone())
    } else {
        Some(Uint8Array::from(&resp.body[..]))
    };
web_sys::Response::new_with_opt_buffer_source_and_init(body.as_ref().map(|b| b.as_ref()), &init)
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

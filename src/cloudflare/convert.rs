//! Conversions between the runtime's requests/responses and the core's plain values.

use crate::http::{Body, ReadError, Request as CoreRequest, Response as CoreResponse, StreamingBody};
use super::js;
use super::kv::JsBytes;
use futures_util::future::LocalBoxFuture;
use js_sys::Uint8Array;
use std::any::Any;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Takes a visitor request. Its body (for methods that have one) is not read here: it stays
/// the runtime's stream ([`JsRequestBody`]), handed on to the origin as it arrives or read with
/// a cap by the engine.
pub async fn from_web_request(req: web_sys::Request) -> std::result::Result<CoreRequest, String> {
    let method = req.method().to_ascii_uppercase();
    let headers = js::headers_from(&req.headers());
    let body = match req.body() {
        Some(stream) if method != "GET" && method != "HEAD" => Body::streaming(Rc::new(JsRequestBody(stream))),
        _ => Body::new(),
    };
    Ok(CoreRequest { method, url: req.url(), headers, body })
}

/// A visitor's request body: the runtime's `ReadableStream`.
pub struct JsRequestBody(pub web_sys::ReadableStream);

impl StreamingBody for JsRequestBody {
    fn read_capped(&self, limit: usize) -> LocalBoxFuture<'_, Result<bytes::Bytes, ReadError>> {
        Box::pin(async move {
            let failed = |e: JsValue| ReadError::Failed(js::error_message(&e));
            let get_reader: js_sys::Function = js::get(&self.0, "getReader").map_err(failed)?.dyn_into().map_err(failed)?;
            let reader = get_reader.call0(&self.0).map_err(failed)?;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let chunk = js::call_async(&reader, "read", &[]).await.map_err(failed)?;
                if js::get(&chunk, "done").map_err(failed)?.is_truthy() {
                    return Ok(out.into());
                }
                let value: Uint8Array = js::get(&chunk, "value").map_err(failed)?.dyn_into().map_err(failed)?;
                if out.len() + value.length() as usize > limit {
                    // Stop reading here: the rest is never read into memory (the runtime
                    // discards it once the answer is sent).
                    return Err(ReadError::TooLarge);
                }
                out.extend_from_slice(&value.to_vec());
            }
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The options of a `fetch` to the origin. Redirects are not followed: a redirect is a page
/// like any other (cached if 301/308, passed on otherwise).
pub fn fetch_init(req: &CoreRequest, signal: &web_sys::AbortSignal) -> std::result::Result<js_sys::Object, JsValue> {
    let body = if let Some(stream) = req.body.as_streaming().and_then(|s| s.as_any().downcast_ref::<JsRequestBody>()) {
        // The visitor's upload goes on as it arrives.
        stream.0.clone().into()
    } else if req.body.is_empty() {
        JsValue::UNDEFINED
    } else {
        Uint8Array::from(&req.body[..]).into()
    };
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

/// Takes an origin response whose body is only passed on: the body stays the runtime's stream
/// ([`Body::served`]), read by nobody but the visitor's connection (downloads of any size,
/// server-sent events, long polls).
pub fn from_fetch_response_to_serve(resp: web_sys::Response) -> CoreResponse {
    let status = resp.status();
    let headers = js::headers_from(&resp.headers());
    let body = match resp.body() {
        Some(stream) if !matches!(status, 204 | 304) => Body::served(Rc::new(stream)),
        _ => Body::new(),
    };
    CoreResponse { status, headers, body }
}

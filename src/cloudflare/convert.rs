//! Conversions between the runtime's requests/responses and the core's plain values.

use crate::http::header_text::{self, Kept, KeptHeaders};
use crate::http::{Body, ReadError, Request as CoreRequest, Response as CoreResponse, StreamingBody};
use super::js;
use super::kv::JsBytes;
use futures_util::future::LocalBoxFuture;
use js_sys::Uint8Array;
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// Takes a visitor request. Its body (for methods that have one) is not read here: it stays
/// the runtime's ([`JsRequestBody`]), handed on to the origin as it arrives or read with a cap
/// by the engine.
pub fn from_web_request(req: web_sys::Request) -> CoreRequest {
    // One call for the method, the URL and the headers (see `js::request_text`).
    let CoreRequest { method, url, headers, .. } = request_of_text(&js::request_text(&req));
    let body = if method != "GET" && method != "HEAD" && req.body().is_some() {
        Body::streaming(Rc::new(JsRequestBody(req)))
    } else {
        Body::new()
    };
    CoreRequest { method, url, headers, body }
}

/// What the cache path needs of a visitor request (see [`crate::engine::Engine::begin_view`]):
/// its method, URL and [`crate::rules::policy::CACHE_PATH_HEADERS`], no body; `req` stays
/// whole, for [`from_web_request`] when the engine needs more.
pub fn from_web_request_view(req: &web_sys::Request) -> CoreRequest {
    request_of_text(&js::request_view_text(req))
}

/// The bodiless request `text` describes (`method\nurl\n` and headers, as `js::request_text`).
fn request_of_text(text: &str) -> CoreRequest {
    let mut parts = text.splitn(3, '\n');
    let method = parts.next().unwrap_or_default().to_ascii_uppercase();
    let url = parts.next().unwrap_or_default().to_string();
    let headers = header_text::of_text(parts.next().unwrap_or_default());
    CoreRequest { method, url, headers, body: Body::new() }
}

/// Starts reading what is left of `req`'s body when nobody consumed it (a webhook body refused
/// from its `Content-Length`, a POST to a route the worker renders): the first read happens
/// now, the rest in the returned task, each chunk dropped as it arrives (nothing is kept). A
/// body already consumed, or being handed on (to the origin), is left alone (`None`).
pub fn discard_unread_body(req: &web_sys::Request) -> Option<impl std::future::Future<Output = ()>> {
    drain(&req.body()?)
}

/// Starts reading `stream` to its end, dropping every chunk: the first read now (so the stream
/// counts as used at once), the rest in the returned task. `None` when the stream is locked.
fn drain(stream: &web_sys::ReadableStream) -> Option<impl std::future::Future<Output = ()>> {
    let get_reader: js_sys::Function = js::get(stream, "getReader").ok()?.dyn_into().ok()?;
    let reader = get_reader.call0(stream).ok()?; // fails when the stream is locked (in use or consumed)
    let read: js_sys::Function = js::get(&reader, "read").ok()?.dyn_into().ok()?;
    let first: js_sys::Promise = read.call0(&reader).ok()?.dyn_into().ok()?;
    Some(async move {
        let mut next = first;
        loop {
            let Ok(chunk) = JsFuture::from(next).await else { return };
            if js::get(&chunk, "done").map(|d| d.is_truthy()).unwrap_or(true) {
                return;
            }
            match read.call0(&reader).ok().and_then(|p| p.dyn_into::<js_sys::Promise>().ok()) {
                Some(p) => next = p,
                None => return,
            }
        }
    })
}

/// A visitor's request body, still the runtime's (the request it came with).
pub struct JsRequestBody(web_sys::Request);

impl JsRequestBody {
    /// The body as the runtime's stream, to hand on.
    pub fn stream(&self) -> Option<web_sys::ReadableStream> {
        self.0.body()
    }
}

impl StreamingBody for JsRequestBody {
    fn read_capped(&self, limit: usize) -> LocalBoxFuture<'_, Result<Body, ReadError>> {
        Box::pin(async move {
            let failed = |e: JsValue| ReadError::Failed(js::error_message(&e));
            let declared = self.0.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n <= limit as u64) {
                // The runtime holds the request to its declared length: read it whole.
                let buffer = JsFuture::from(self.0.array_buffer().map_err(failed)?).await.map_err(failed)?;
                return Ok(Body::external(Rc::new(JsBytes(Uint8Array::new(&buffer)))));
            }
            // No (or a larger) declared length: read chunk by chunk, stopping past the limit.
            let Some(stream) = self.0.body() else {
                return Ok(Body::new());
            };
            let get_reader: js_sys::Function = js::get(&stream, "getReader").map_err(failed)?.dyn_into().map_err(failed)?;
            let reader = get_reader.call0(&stream).map_err(failed)?;
            let mut out: Vec<u8> = Vec::new();
            let result = loop {
                let chunk = match js::call_async(&reader, "read", &[]).await {
                    Ok(chunk) => chunk,
                    Err(e) => break Err(failed(e)),
                };
                if js::get(&chunk, "done").map(|d| d.is_truthy()).unwrap_or(true) {
                    break Ok(Body::from(out));
                }
                let Ok(value) = js::get(&chunk, "value").and_then(|v| v.dyn_into::<Uint8Array>()) else {
                    break Err(ReadError::Failed("the request body stream gave a chunk that is not bytes".into()));
                };
                if out.len() + value.length() as usize > limit {
                    // Stop reading here: the rest is never read into memory.
                    break Err(ReadError::TooLarge);
                }
                out.extend_from_slice(&value.to_vec());
            };
            if let Ok(release) = js::get(&reader, "releaseLock").and_then(|f| f.dyn_into::<js_sys::Function>()) {
                let _ = release.call0(&reader);
            }
            result
        })
    }

    fn discard(&self) -> LocalBoxFuture<'_, ()> {
        let rest = self.0.body().and_then(|stream| drain(&stream));
        Box::pin(async move {
            if let Some(rest) = rest {
                rest.await;
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
    let body = if let Some(upload) = req.body.as_streaming().and_then(|s| s.as_any().downcast_ref::<JsRequestBody>()) {
        // The visitor's upload goes on as it arrives.
        upload.stream().map_or(JsValue::UNDEFINED, JsValue::from)
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
    // Err: the `Error` saying why the runtime refused the answer's headers.
    to_answer(resp).dyn_into::<web_sys::Response>()
}

/// [`to_web_response`] without the type check the fast path need not make here: the
/// `Response`, or the `Error` saying why it could not be made (the entry point, `shim.mjs`,
/// throws an `Error` it is handed).
pub fn to_answer(resp: CoreResponse) -> JsValue {
    let body = answer_body(&resp);
    match header_text::as_text(&resp.headers) {
        Ok(text) => js::response_of(&body, resp.status, &text),
        Err(why) => js_sys::Error::new(&why).into(),
    }
}

thread_local! {
    /// The shared header sets of stored pages' answers the JavaScript side keeps
    /// ([`header_text::KeptHeaders`]).
    static KEPT: RefCell<KeptHeaders> = RefCell::new(KeptHeaders::default());
}

/// [`to_answer`] for an answer made from a stored page (a HIT, a STALE, a 304): its headers,
/// but for the numbers in `age` and `server-timing`, are the same for every answer of that page,
/// and are made a `Headers` object once and kept by the JavaScript side ([`header_text`] says
/// why).
pub fn to_answer_from_store(resp: CoreResponse) -> JsValue {
    let split = match header_text::split(&resp.headers) {
        Ok(Some(split)) => split,
        Ok(None) => return to_answer(resp),
        Err(why) => return js_sys::Error::new(&why).into(),
    };
    let kept = KEPT.with(|k| k.borrow_mut().number(&split.kept));
    let number = match kept {
        Kept::Known(number) => number,
        Kept::New(number) if js::keep_headers(number, &split.kept) => number,
        Kept::New(_) => {
            // Refused (a header the runtime does not allow): forgotten, and the answer made as
            // any other, which gives the runtime's `Error`.
            KEPT.with(|k| k.borrow_mut().forget(&split.kept));
            return to_answer(resp);
        }
        Kept::NotKept => return to_answer(resp),
    };
    let [first, second] = split.numbers.map(|n| n.map_or(-1.0, |n| n as f64));
    js::response_from_kept(&answer_body(&resp), resp.status, number, first, second)
}

/// What `new Response` gets as the body of `resp`.
fn answer_body(resp: &CoreResponse) -> JsValue {
    // 204/304 must not have a body, and HEAD answers have none. A stored page read to be served
    // is KV's stream and goes on as it is (its length is not known here, nor needed); so does an
    // origin's body still arriving (a MISS: the visitor's branch, or an answer not to store).
    let no_body = matches!(resp.status, 204 | 304);
    let stream = resp
        .body
        .as_served()
        .and_then(|s| s.downcast_ref::<web_sys::ReadableStream>())
        .or_else(|| resp.body.as_streaming().and_then(|s| s.as_any().downcast_ref::<JsStreamBody>()).map(|s| &s.stream));
    if no_body {
        JsValue::NULL
    } else if let Some(stream) = stream {
        stream.into()
    } else if resp.body.is_empty() {
        JsValue::NULL
    } else if let Some(js) = resp.body.as_external().and_then(|e| e.as_any().downcast_ref::<JsBytes>()) {
        js.0.clone().into()
    } else {
        Uint8Array::from(&resp.body[..]).into()
    }
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

/// Takes an origin response whose body streams to the visitor of a MISS: the body stays the
/// runtime's stream ([`JsStreamBody`]), which the engine splits (one branch to the visitor, one
/// read whole for the store) or passes on as it is.
pub fn from_fetch_response_streamed(resp: web_sys::Response) -> CoreResponse {
    let status = resp.status();
    let headers = js::headers_from(&resp.headers());
    let body = match resp.body() {
        Some(stream) if !matches!(status, 204 | 304) => Body::streaming(Rc::new(JsStreamBody::new(stream))),
        _ => Body::new(),
    };
    CoreResponse { status, headers, body }
}

/// An origin's response body still arriving (a MISS's page), as the runtime's `ReadableStream`.
pub struct JsStreamBody {
    stream: web_sys::ReadableStream,
    /// The reader while [`StreamingBody::read_capped`] reads it (a locked stream is cancelled
    /// through its reader).
    reader: std::cell::RefCell<Option<JsValue>>,
}

impl JsStreamBody {
    fn new(stream: web_sys::ReadableStream) -> JsStreamBody {
        JsStreamBody { stream, reader: Default::default() }
    }
}

/// Ignores the promise `cancel()` returns (it rejects when the stream has already failed): a
/// rejection nobody handles would be reported as an error of the request.
fn ignore_rejection(promise: JsValue) {
    if promise.is_instance_of::<js_sys::Promise>() {
        let _ = js::call_sync(&promise, "catch", &[wasm_bindgen::closure::Closure::once_into_js(|_: JsValue| {})]);
    }
}

impl StreamingBody for JsStreamBody {
    /// Reads chunk by chunk, keeping the chunks in JavaScript memory, and joins them into one
    /// buffer at the end ([`JsBytes`]: written to KV without a copy into wasm memory). Past
    /// `limit` bytes the stream is cancelled.
    fn read_capped(&self, limit: usize) -> LocalBoxFuture<'_, Result<Body, ReadError>> {
        Box::pin(async move {
            let failed = |e: JsValue| ReadError::Failed(js::error_message(&e));
            let reader = js::call_sync(&self.stream, "getReader", &[]).map_err(failed)?;
            *self.reader.borrow_mut() = Some(reader.clone());
            let chunks = js_sys::Array::new();
            let mut total = 0usize;
            loop {
                let chunk = js::call_async(&reader, "read", &[]).await.map_err(failed)?;
                if js::get(&chunk, "done").map(|d| d.is_truthy()).unwrap_or(true) {
                    break;
                }
                let Ok(value) = js::get(&chunk, "value").and_then(|v| v.dyn_into::<Uint8Array>()) else {
                    return Err(ReadError::Failed("the origin's body gave a chunk that is not bytes".into()));
                };
                total += value.length() as usize;
                if total > limit {
                    self.cancel();
                    return Err(ReadError::TooLarge);
                }
                chunks.push(&value);
            }
            let whole = Uint8Array::new_with_length(total as u32);
            let mut at = 0u32;
            for chunk in chunks.iter() {
                let chunk: Uint8Array = chunk.unchecked_into();
                whole.set(&chunk, at);
                at += chunk.length();
            }
            Ok(Body::external(Rc::new(JsBytes(whole))))
        })
    }

    fn discard(&self) -> LocalBoxFuture<'_, ()> {
        let rest = drain(&self.stream);
        Box::pin(async move {
            if let Some(rest) = rest {
                rest.await;
            }
        })
    }

    /// `ReadableStream.tee()`: the first branch goes to the visitor as it is
    /// ([`to_web_response`]).
    fn tee(&self) -> Option<(Body, Body)> {
        let pair: js_sys::Array = js::call_sync(&self.stream, "tee", &[]).ok()?.dyn_into().ok()?;
        let visitor: web_sys::ReadableStream = pair.get(0).dyn_into().ok()?;
        let to_read: web_sys::ReadableStream = pair.get(1).dyn_into().ok()?;
        Some((Body::streaming(Rc::new(JsStreamBody::new(visitor))), Body::streaming(Rc::new(JsStreamBody::new(to_read)))))
    }

    fn cancel(&self) {
        let cancelled = match self.reader.borrow().as_ref() {
            Some(reader) => js::call_sync(reader, "cancel", &[]),
            None => js::call_sync(&self.stream, "cancel", &[]),
        };
        if let Ok(promise) = cancelled {
            ignore_rejection(promise);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

//! Conversions between `worker` requests/responses and the core's plain values.

use crate::http::{Body, Headers, Request as CoreRequest, Response as CoreResponse};
use super::kv::JsBytes;
use js_sys::Uint8Array;
use worker::{Method, Request, RequestInit, Response, Result};

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

/// Builds a `fetch` request to the origin. Redirects are not followed: a redirect is a page
/// like any other (cached if 301/308, passed on otherwise).
pub fn to_worker_request(req: &CoreRequest) -> Result<Request> {
    let headers = worker::Headers::new();
    for (name, value) in req.headers.iter() {
        headers.append(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(req.method.clone()))
        .with_headers(headers)
        .with_redirect(worker::RequestRedirect::Manual);
    if !req.body.is_empty() {
        init.with_body(Some(Uint8Array::from(&req.body[..]).into()));
    }
    Request::new_with_init(&req.url, &init)
}

/// Builds the response the runtime sends to the visitor. A body read from KV is still a
/// JavaScript buffer and is passed on as it is; other bodies are copied out of wasm once.
pub fn to_worker_response(resp: CoreResponse) -> Result<Response> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in resp.headers.iter() {
        headers.append(name, value)?;
    }
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

/// Reads an origin response whole.
pub async fn from_worker_response(mut resp: Response) -> Result<CoreResponse> {
    let status = resp.status_code();
    let headers: Headers = resp.headers().entries().collect();
    let body = if matches!(status, 204 | 304) {
        Body::new()
    } else {
        Body::from(resp.bytes().await?)
    };
    Ok(CoreResponse { status, headers, body })
}

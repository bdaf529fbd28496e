//! Conversions between `worker` requests/responses and the core's plain values.

use crate::http::{Body, Headers, Request as CoreRequest, Response as CoreResponse};
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

/// Builds the response the runtime sends to the visitor.
pub fn to_worker_response(resp: CoreResponse) -> Result<Response> {
    let headers = worker::Headers::new();
    for (name, value) in resp.headers.iter() {
        headers.append(name, value)?;
    }
    // 204/304 must not have a body, and HEAD answers have none.
    let base = if resp.body.is_empty() || matches!(resp.status, 204 | 304) {
        Response::empty()?
    } else {
        Response::from_bytes(resp.body.to_vec())?
    };
    Ok(base.with_status(resp.status).with_headers(headers))
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

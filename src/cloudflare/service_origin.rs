//! A Worker as the origin (`ORIGIN_SERVICE`): the pages no route renders come from another
//! Worker's `fetch` through a service binding, with the same requests, time limit and failure
//! handling as an `ORIGIN_URL` fetched over HTTP.

use super::js;
use super::origin::{exchange, Answer, FetchOrigin};
use crate::http::{Request, Response};
use crate::runtime::origin::{Origin, OriginError};
use wasm_bindgen::JsValue;

/// A service binding (`[[services]]` in `wrangler.toml`): its `fetch` runs the bound Worker.
pub struct ServiceOrigin {
    fetcher: JsValue,
}

impl ServiceOrigin {
    /// The binding named `name` on `env`, or why it cannot be used.
    pub fn from_env(env: &worker::Env, name: &str) -> Result<ServiceOrigin, String> {
        let fetcher = js::get(env.as_ref(), name).unwrap_or(JsValue::UNDEFINED);
        let has_fetch = js::get(&fetcher, "fetch").is_ok_and(|f| f.is_function());
        if !fetcher.is_object() || !has_fetch {
            return Err(format!(
                "ORIGIN_SERVICE is {name:?}, but this Worker has no service binding of that name: add [[services]] binding = {name:?}, service = \"<your app Worker>\" to wrangler.toml"
            ));
        }
        Ok(ServiceOrigin { fetcher })
    }
}

impl Origin for ServiceOrigin {
    /// `binding.fetch(url, init)`: the bound Worker sees `req.url` (for pages, the page's public
    /// URL), the engine's headers and an abort signal; the time limit covers the body, as for
    /// [`FetchOrigin`]. A Worker that throws answers 500 (or rejects): either is a failure.
    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&self.fetcher, req, timeout_ms, Answer::Whole).await
    }

    /// Passed-through requests and answers stream through the binding as over HTTP.
    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&self.fetcher, req, timeout_ms, Answer::Served).await
    }

    /// A MISS's page streams through the binding as over HTTP.
    async fn fetch_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        exchange(&self.fetcher, req, timeout_ms, Answer::Streamed).await
    }
}

/// The engine's origin: HTTP `fetch` for every request, except the site's own pages when
/// `ORIGIN_SERVICE` names a Worker (CMS data and routes with another base stay on HTTP).
pub struct SiteOrigin {
    service: Option<ServiceOrigin>,
}

impl SiteOrigin {
    /// Pages from `service` if given, else from `ORIGIN_URL`.
    pub fn new(service: Option<ServiceOrigin>) -> SiteOrigin {
        SiteOrigin { service }
    }
}

impl Origin for SiteOrigin {
    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        FetchOrigin.fetch(req, timeout_ms).await
    }

    async fn fetch_page(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        match &self.service {
            Some(service) => service.fetch(req, timeout_ms).await,
            None => FetchOrigin.fetch(req, timeout_ms).await,
        }
    }

    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        FetchOrigin.fetch_to_serve(req, timeout_ms).await
    }

    async fn fetch_page_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        match &self.service {
            Some(service) => service.fetch_to_serve(req, timeout_ms).await,
            None => FetchOrigin.fetch_to_serve(req, timeout_ms).await,
        }
    }

    async fn fetch_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        FetchOrigin.fetch_streamed(req, timeout_ms).await
    }

    async fn fetch_page_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        match &self.service {
            Some(service) => service.fetch_streamed(req, timeout_ms).await,
            None => FetchOrigin.fetch_streamed(req, timeout_ms).await,
        }
    }
}

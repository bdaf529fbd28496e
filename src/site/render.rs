//! What a route's render function receives and returns.
//!
//! A render function gets a [`RenderContext`] (the route's parameters, and a `fetch` for the
//! CMS that records tags and revalidate times like Next.js's `fetch(url, { next: { tags } })`)
//! and returns a [`Page`]. The engine decides everything else: when to call it, where the page
//! is stored, when it goes stale.

use super::pattern::Params;
use crate::http::{Body, Headers, Request, Response};
use crate::runtime::origin::{Origin, OriginError};
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// An HTTP client that can be shared as a trait object (the engine's origin `fetch`).
pub trait Fetcher {
    /// Sends `req`, giving up after `timeout_ms`.
    fn send(&self, req: Request, timeout_ms: u64) -> LocalBoxFuture<'_, Result<Response, OriginError>>;
}

impl<O: Origin> Fetcher for O {
    fn send(&self, req: Request, timeout_ms: u64) -> LocalBoxFuture<'_, Result<Response, OriginError>> {
        Box::pin(self.fetch(req, timeout_ms))
    }
}

/// Why a render produced no page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The content does not exist (the CMS answered 404): a 404 page is stored, like Next.js's
    /// `notFound()`, and re-checked after `NOT_FOUND_REVALIDATE`.
    NotFound,
    /// The data could not be used: the CMS answered an error, or sent something that is not
    /// the expected JSON. Answered with an error page that is never stored.
    Data(String),
    /// The template failed to render. Answered with an error page that is never stored.
    Template(String),
    /// The CMS or origin could not be reached at all.
    Upstream(OriginError),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::NotFound => f.write_str("not found"),
            RenderError::Data(m) => write!(f, "data error: {m}"),
            RenderError::Template(m) => write!(f, "template error: {m}"),
            RenderError::Upstream(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RenderError {}

impl From<OriginError> for RenderError {
    fn from(e: OriginError) -> Self {
        RenderError::Upstream(e)
    }
}

/// A rendered page, before the engine stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// HTTP status (200, or 404 for a not-found page).
    pub status: u16,
    /// Response headers (`content-type` at least).
    pub headers: Headers,
    /// The body.
    pub body: Body,
    /// Seconds the page stays fresh; `None`: the route's (or the deployment's default).
    pub revalidate: Option<u32>,
    /// Tags of this page, in addition to the route's and those of its fetches.
    pub tags: Vec<String>,
}

impl Page {
    /// A 200 HTML page.
    pub fn html(body: impl Into<String>) -> Page {
        Page::with_type("text/html; charset=utf-8", Body::from(body.into()))
    }

    /// A 200 JSON page.
    pub fn json(value: &serde_json::Value) -> Page {
        Page::with_type("application/json", Body::from(value.to_string()))
    }

    /// A 200 page of `content_type`.
    pub fn with_type(content_type: &str, body: Body) -> Page {
        let mut headers = Headers::new();
        headers.set("content-type", content_type);
        Page {
            status: 200,
            headers,
            body,
            revalidate: None,
            tags: Vec::new(),
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Page {
        self.status = status;
        self
    }

    /// Sets a header.
    pub fn header(mut self, name: &str, value: &str) -> Page {
        self.headers.set(name, value);
        self
    }

    /// Sets the page's own revalidate time (seconds), overriding the route's.
    pub fn revalidate(mut self, seconds: u32) -> Page {
        self.revalidate = Some(seconds);
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Page {
        self.tags.push(tag.into());
        self
    }
}

/// Options of one data fetch: the tags it gives the page, and how long its data is good for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Tags added to the page that used this data (`next: { tags }`).
    pub tags: Vec<String>,
    /// Seconds this data stays fresh (`next: { revalidate }`): the page's revalidate time is the
    /// smallest of its route's and its fetches'.
    pub revalidate: Option<u32>,
}

impl FetchOptions {
    /// Options with these tags.
    pub fn tags<T: Into<String>>(tags: impl IntoIterator<Item = T>) -> FetchOptions {
        FetchOptions {
            tags: tags.into_iter().map(Into::into).collect(),
            revalidate: None,
        }
    }
}

/// Tags and revalidate times gathered from a render's fetches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Tags of every fetch, in order, without repeats.
    pub tags: Vec<String>,
    /// Smallest revalidate time of any fetch.
    pub revalidate: Option<u32>,
}

impl Collected {
    fn add(&mut self, opts: &FetchOptions) {
        for t in &opts.tags {
            if !self.tags.contains(t) {
                self.tags.push(t.clone());
            }
        }
        if let Some(r) = opts.revalidate {
            self.revalidate = Some(self.revalidate.map_or(r, |c| c.min(r)));
        }
    }
}

/// Everything a render function may use.
#[derive(Clone)]
pub struct RenderContext {
    /// The normalised path being rendered.
    pub path: String,
    /// The route's parameters.
    pub params: Params,
    fetcher: Rc<dyn Fetcher>,
    data_base: Option<url::Url>,
    timeout_ms: u64,
    collected: Rc<RefCell<Collected>>,
}

impl RenderContext {
    /// A context for rendering `path`. `data_base` resolves data URLs that start with `/`
    /// (the `CMS_URL`); `timeout_ms` bounds each fetch.
    pub fn new(path: String, params: Params, fetcher: Rc<dyn Fetcher>, data_base: Option<url::Url>, timeout_ms: u64) -> Self {
        RenderContext {
            path,
            params,
            fetcher,
            data_base,
            timeout_ms,
            collected: Rc::default(),
        }
    }

    /// The value of parameter `name` (empty if the route has none of that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).unwrap_or_default()
    }

    /// A data URL built from `template` and this page's parameters, safely: `{name}` holes are
    /// filled percent-encoded, so a value cannot add a path segment, a query or a fragment
    /// (`cx.url("/api/posts/{slug}?lang={lang}")`). Prefer it to `format!` with
    /// [`RenderContext::param`], which puts a value in the URL as it is. An unknown `{name}` is
    /// a [`RenderError::Data`].
    pub fn url(&self, template: &str) -> Result<String, RenderError> {
        let names: Vec<String> = self.params.iter().map(|(name, _)| name.to_string()).collect();
        super::pattern::Template::parse(template, &names)
            .and_then(|t| t.fill_url(&self.params))
            .map_err(|e| RenderError::Data(e.0))
    }

    /// What the fetches so far have recorded.
    pub fn collected(&self) -> Collected {
        self.collected.borrow().clone()
    }

    /// An absolute URL for `url`: as it is when absolute, else joined to `CMS_URL`.
    pub fn resolve(&self, url: &str) -> Result<String, RenderError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(url.to_string());
        }
        let base = self
            .data_base
            .as_ref()
            .ok_or_else(|| RenderError::Data(format!("relative data URL {url:?} but CMS_URL is not set")))?;
        let base = base.as_str().trim_end_matches('/');
        Ok(format!("{base}/{}", url.trim_start_matches('/')))
    }

    /// GETs `url` (absolute, or relative to `CMS_URL`) and records `opts` for the page.
    /// Any answer is returned, error statuses included.
    pub async fn fetch(&self, url: &str, opts: FetchOptions) -> Result<Response, RenderError> {
        let url = self.resolve(url)?;
        let req = Request::new("GET", &url)
            .with_header("accept", "application/json")
            .with_header("user-agent", concat!("edge-isr/", env!("CARGO_PKG_VERSION")));
        let resp = self.fetcher.send(req, self.timeout_ms).await?;
        self.collected.borrow_mut().add(&opts);
        Ok(resp)
    }

    /// GETs JSON. A 404 becomes [`RenderError::NotFound`]; any other non-2xx answer or a body
    /// that is not JSON becomes [`RenderError::Data`].
    pub async fn fetch_json(&self, url: &str, opts: FetchOptions) -> Result<serde_json::Value, RenderError> {
        let resp = self.fetch(url, opts).await?;
        match resp.status {
            200..=299 => serde_json::from_slice(&resp.body)
                .map_err(|e| RenderError::Data(format!("{url} did not answer JSON: {e}"))),
            404 | 410 => Err(RenderError::NotFound),
            status => Err(RenderError::Data(format!("{url} answered {status}"))),
        }
    }
}

/// A route's render function, boxed.
pub type RenderFn = Rc<dyn Fn(RenderContext) -> LocalBoxFuture<'static, Result<Page, RenderError>>>;

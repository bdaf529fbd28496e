//! The upstream that renders pages: an HTTP origin in proxy mode, or anything else that can
//! turn a request into a response.

use crate::http::{Request, Response};
use std::fmt;

/// Why the origin produced no response at all. (An origin 5xx is a response, not an error.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginError {
    /// No complete response within the time limit (ms).
    Timeout(u64),
    /// Connection refused, reset, DNS failure, truncated body, ...
    Network(String),
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginError::Timeout(ms) => write!(f, "origin did not answer within {ms} ms"),
            OriginError::Network(m) => write!(f, "origin unreachable: {m}"),
        }
    }
}

impl std::error::Error for OriginError {}

/// Something that renders pages.
#[allow(async_fn_in_trait)]
pub trait Origin {
    /// Sends `req` and returns the whole response, or an error after `timeout_ms`.
    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError>;

    /// Sends a request for one of the site's own pages: a path no route renders (the default
    /// proxy), or a request passed through to it. Same contract as [`Origin::fetch`], which it
    /// is unless the pages come from elsewhere than the other requests (`ORIGIN_SERVICE`: a
    /// Worker behind a service binding, while CMS data still comes over HTTP).
    async fn fetch_page(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.fetch(req, timeout_ms).await
    }

    /// Sends `req` for an answer that is only passed on to the visitor (BYPASS): `timeout_ms`
    /// bounds the wait for the response's head, and the body is handed on as it arrives
    /// ([`crate::http::Body::served`]: never buffered, so downloads of any size, server-sent
    /// events and long polls go through). `req`'s body may be a visitor's stream
    /// ([`crate::http::Body::streaming`]), handed on the same way. By default, [`Origin::fetch`].
    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.fetch(req, timeout_ms).await
    }

    /// [`Origin::fetch_to_serve`] for one of the site's own pages (see [`Origin::fetch_page`]).
    /// By default, [`Origin::fetch_page`].
    async fn fetch_page_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.fetch_page(req, timeout_ms).await
    }

    /// Sends `req` for a page to store whose answer may stream to the visitor meanwhile (a MISS
    /// render): `timeout_ms` bounds the wait for the response's head, and the body may be one
    /// still arriving ([`crate::http::Body::streaming`]) that the engine splits
    /// ([`crate::http::Body::tee`]): one branch to the visitor, one read whole for the store.
    /// By default, [`Origin::fetch`] (a whole body, which the engine answers and stores as it is).
    async fn fetch_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.fetch(req, timeout_ms).await
    }

    /// [`Origin::fetch_streamed`] for one of the site's own pages (see [`Origin::fetch_page`]).
    /// By default, [`Origin::fetch_page`].
    async fn fetch_page_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.fetch_page(req, timeout_ms).await
    }
}

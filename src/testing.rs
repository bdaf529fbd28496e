//! Test doubles for driving the engine natively: a scriptable origin that counts renders and
//! can fail, stall or hold requests, and a bench that wires an engine to the in-memory store.

use crate::runtime::background::TaskQueue;
use crate::runtime::clock::{Clock, ManualClock};
use crate::rules::config::Config;
use crate::engine::{Engine, Isolate};
use crate::http::{Headers, Request, Response};
use crate::runtime::log::MemoryLogger;
use crate::store::memory::MemoryKv;
use crate::runtime::origin::{Origin, OriginError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What the fake origin answers for a path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A rendered page: the body gets ` render=N` appended. An `etag` header makes the origin
    /// answer a matching `If-None-Match` with 304 (not counted as a render).
    Page {
        /// Status code.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body text before the render counter.
        body: String,
    },
    /// A JSON document (a CMS answer), sent as it is and counted as a render.
    Json(String),
    /// A bare status (e.g. 500) with no body, counted as a failure.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// Connection failure.
    Network,
    /// A page whose body arrives as the test sends it ([`BodyFeed`]), counted as a render when
    /// its head is sent. Through [`Origin::fetch_streamed`] the engine gets the head at once and
    /// the body as a stream ([`StreamBranch`]); through the other methods, the whole body once
    /// the test has finished it (an error if the test cut it), as `fetch` reads it on Workers.
    Streamed {
        /// Status code.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// The body, sent by the test.
        feed: BodyFeed,
    },
}

impl Reply {
    /// A 200 page with the given headers.
    pub fn page(body: &str, headers: &[(&str, &str)]) -> Reply {
        Reply::Page {
            status: 200,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.to_string(),
        }
    }

    /// A 200 page with the given headers whose body the test sends through `feed`.
    pub fn streamed(feed: &BodyFeed, headers: &[(&str, &str)]) -> Reply {
        Reply::Streamed {
            status: 200,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            feed: feed.clone(),
        }
    }

    /// A page with a status.
    pub fn status_page(status: u16, body: &str, headers: &[(&str, &str)]) -> Reply {
        match Reply::page(body, headers) {
            Reply::Page { headers, body, .. } => Reply::Page { status, headers, body },
            other => other,
        }
    }
}

#[derive(Default)]
struct GateState {
    open: bool,
    wakers: Vec<Waker>,
}

/// Holds origin requests until opened, to make concurrent visitors overlap deterministically.
#[derive(Clone, Default)]
pub struct Gate(Rc<RefCell<GateState>>);

impl Gate {
    /// Lets every held request (and later ones) through.
    pub fn open(&self) {
        let mut s = self.0.borrow_mut();
        s.open = true;
        for w in s.wakers.drain(..) {
            w.wake();
        }
    }

    fn wait(&self) -> GateWait {
        GateWait(self.clone())
    }
}

struct GateWait(Gate);

impl Future for GateWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0 .0.borrow_mut();
        if s.open {
            Poll::Ready(())
        } else {
            s.wakers.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A scriptable origin. Paths without a script answer a plain 200 page.
#[derive(Default)]
pub struct FakeOrigin {
    replies: RefCell<HashMap<String, Reply>>,
    renders: RefCell<HashMap<String, u32>>,
    not_modified: RefCell<HashMap<String, u32>>,
    requests: RefCell<Vec<Request>>,
    page_requests: RefCell<Vec<String>>,
    gate: RefCell<Option<Gate>>,
    latency: RefCell<Option<(ManualClock, u64)>>,
    to_serve: std::cell::Cell<u32>,
}

impl FakeOrigin {
    /// A new origin.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// Scripts the answer for `path` (path and query, as the origin sees it).
    pub fn reply(&self, path: &str, reply: Reply) {
        self.replies.borrow_mut().insert(path.to_string(), reply);
    }

    /// Holds every request until the returned gate opens.
    pub fn hold(&self) -> Gate {
        let gate = Gate::default();
        *self.gate.borrow_mut() = Some(gate.clone());
        gate
    }

    /// Full renders of `path` so far.
    pub fn renders(&self, path: &str) -> u32 {
        self.renders.borrow().get(path).copied().unwrap_or(0)
    }

    /// 304 answers for `path` so far.
    pub fn not_modified(&self, path: &str) -> u32 {
        self.not_modified.borrow().get(path).copied().unwrap_or(0)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.borrow().clone()
    }

    /// URLs of the requests received through [`Origin::fetch_page`] (pages of the site's own
    /// origin, as opposed to a route's other base or CMS data), in order.
    pub fn page_requests(&self) -> Vec<String> {
        self.page_requests.borrow().clone()
    }

    /// Makes every answer take `ms` on `clock` (which just moves on).
    pub fn set_latency(&self, clock: &ManualClock, ms: u64) {
        *self.latency.borrow_mut() = Some((clock.clone(), ms));
    }

    /// Number of requests received.
    pub fn request_count(&self) -> usize {
        self.requests.borrow().len()
    }

    /// Answers given through [`Origin::fetch_to_serve`] (passed on, never read by the engine).
    pub fn answers_to_serve(&self) -> u32 {
        self.to_serve.get()
    }
}

/// A visitor's upload arriving in chunks: a test double for the runtime's request body stream
/// (a JavaScript `ReadableStream` on Workers, which native tests do not have). Counts the bytes
/// read out of it.
pub struct Upload {
    chunk: bytes::Bytes,
    chunks: usize,
    read: std::cell::Cell<usize>,
    discarded: std::cell::Cell<usize>,
}

impl Upload {
    /// `chunks` chunks of `chunk_len` bytes.
    pub fn new(chunk_len: usize, chunks: usize) -> Rc<Upload> {
        Rc::new(Upload {
            chunk: bytes::Bytes::from(vec![b'u'; chunk_len]),
            chunks,
            read: Default::default(),
            discarded: Default::default(),
        })
    }

    /// Bytes read into memory out of the stream so far.
    pub fn bytes_read(&self) -> usize {
        self.read.get()
    }

    /// Bytes read and dropped ([`crate::http::StreamingBody::discard`]).
    pub fn bytes_discarded(&self) -> usize {
        self.discarded.get()
    }
}

impl crate::http::StreamingBody for Upload {
    fn read_capped(&self, limit: usize) -> futures_util::future::LocalBoxFuture<'_, Result<crate::http::Body, crate::http::ReadError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for _ in 0..self.chunks {
                self.read.set(self.read.get() + self.chunk.len());
                out.extend_from_slice(&self.chunk);
                if out.len() > limit {
                    return Err(crate::http::ReadError::TooLarge);
                }
            }
            Ok(out.into())
        })
    }

    fn discard(&self) -> futures_util::future::LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let total = self.chunk.len() * self.chunks;
            self.discarded.set(total.saturating_sub(self.read.get()));
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[derive(Default)]
struct FeedState {
    chunks: Vec<bytes::Bytes>,
    /// `Some(Ok)` once finished, `Some(Err)` once cut off.
    end: Option<Result<(), String>>,
    wakers: Vec<Waker>,
    branches: u32,
    cancelled: u32,
}

/// An origin body the test sends chunk by chunk: a test double for the origin's response
/// stream (a JavaScript `ReadableStream` on Workers, which native tests do not have). Its
/// branches ([`StreamBranch`]) each get every chunk, like the branches of `ReadableStream.tee()`.
#[derive(Clone, Default)]
pub struct BodyFeed(Rc<RefCell<FeedState>>);

impl std::fmt::Debug for BodyFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.borrow();
        write!(f, "BodyFeed({} chunks, ended: {:?})", s.chunks.len(), s.end)
    }
}

impl BodyFeed {
    /// A feed with nothing sent yet.
    pub fn new() -> BodyFeed {
        BodyFeed::default()
    }

    fn update(&self, change: impl FnOnce(&mut FeedState)) {
        let mut s = self.0.borrow_mut();
        change(&mut s);
        s.wakers.drain(..).for_each(Waker::wake);
    }

    /// Sends a chunk.
    pub fn send(&self, chunk: impl Into<bytes::Bytes>) {
        self.update(|s| s.chunks.push(chunk.into()));
    }

    /// Ends the body normally.
    pub fn finish(&self) {
        self.update(|s| s.end = Some(Ok(())));
    }

    /// Cuts the body off (the connection breaks): readers get an error after what was sent.
    pub fn cut(&self) {
        self.update(|s| s.end = Some(Err("the origin's connection closed mid-body".into())));
    }

    /// Whether the test has ended the body (finished or cut).
    pub fn ended(&self) -> bool {
        self.0.borrow().end.is_some()
    }

    /// Readers made so far (the first stream, and each branch of a tee).
    pub fn branches(&self) -> u32 {
        self.0.borrow().branches
    }

    /// Readers that were cancelled ([`crate::http::StreamingBody::cancel`], or a read over its cap).
    pub fn cancelled(&self) -> u32 {
        self.0.borrow().cancelled
    }

    /// A reader from the first chunk.
    pub fn stream(&self) -> Rc<StreamBranch> {
        self.branch_at(0)
    }

    fn branch_at(&self, at: usize) -> Rc<StreamBranch> {
        self.0.borrow_mut().branches += 1;
        Rc::new(StreamBranch { feed: self.clone(), at: std::cell::Cell::new(at), cancelled: Default::default() })
    }

    /// The whole body once ended (`Err` if cut off).
    async fn whole(&self) -> Result<Vec<u8>, String> {
        let reader = self.stream();
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// One reader of a [`BodyFeed`] (a test double, see there).
pub struct StreamBranch {
    feed: BodyFeed,
    at: std::cell::Cell<usize>,
    cancelled: std::cell::Cell<bool>,
}

impl StreamBranch {
    /// The next chunk: `None` at the end, an error where the body was cut off.
    pub async fn next(&self) -> Option<Result<bytes::Bytes, String>> {
        std::future::poll_fn(|cx| {
            let mut s = self.feed.0.borrow_mut();
            if self.cancelled.get() {
                return Poll::Ready(Some(Err("read after cancel".to_string())));
            }
            if let Some(chunk) = s.chunks.get(self.at.get()).cloned() {
                self.at.set(self.at.get() + 1);
                return Poll::Ready(Some(Ok(chunk)));
            }
            match &s.end {
                Some(Ok(())) => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(e.clone()))),
                None => {
                    s.wakers.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// What is left to read, once the body has ended (`None` while it has not).
    pub fn rest_if_ended(&self) -> Option<Result<Vec<u8>, String>> {
        let s = self.feed.0.borrow();
        let end = s.end.clone()?;
        let rest = s.chunks[self.at.get().min(s.chunks.len())..].concat();
        Some(end.map(|()| rest))
    }
}

impl crate::http::StreamingBody for StreamBranch {
    fn read_capped(&self, limit: usize) -> futures_util::future::LocalBoxFuture<'_, Result<crate::http::Body, crate::http::ReadError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            while let Some(chunk) = self.next().await {
                let chunk = chunk.map_err(crate::http::ReadError::Failed)?;
                if out.len() + chunk.len() > limit {
                    crate::http::StreamingBody::cancel(self);
                    return Err(crate::http::ReadError::TooLarge);
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out.into())
        })
    }

    fn discard(&self) -> futures_util::future::LocalBoxFuture<'_, ()> {
        Box::pin(async move { while let Some(Ok(_)) = self.next().await {} })
    }

    fn tee(&self) -> Option<(crate::http::Body, crate::http::Body)> {
        let at = self.at.get();
        let served = crate::http::Body::streaming(self.feed.branch_at(at));
        let read = crate::http::Body::streaming(self.feed.branch_at(at));
        crate::http::StreamingBody::cancel(self); // a teed stream is locked to its branches
        Some((served, read))
    }

    fn cancel(&self) {
        if !self.cancelled.replace(true) {
            self.feed.0.borrow_mut().cancelled += 1;
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The branch of a streamed answer ([`Reply::Streamed`]) that `body` hands on or reads, if it
/// is one.
pub fn stream_of(body: &crate::http::Body) -> Option<&StreamBranch> {
    body.as_served()
        .and_then(|h| h.downcast_ref::<StreamBranch>())
        .or_else(|| body.as_streaming().and_then(|s| s.as_any().downcast_ref::<StreamBranch>()))
}

/// Reads a response body to its end, as the visitor's connection would (a streamed one as it
/// arrives): `Err` where it was cut off.
pub async fn read_body(body: &crate::http::Body) -> Result<Vec<u8>, String> {
    let Some(stream) = stream_of(body) else {
        return Ok(crate::store::memory::served_bytes(body));
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn path_and_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{}", u.path(), q),
            None => u.path().to_string(),
        },
        Err(_) => url.to_string(),
    }
}

impl Origin for FakeOrigin {
    async fn fetch_page(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.page_requests.borrow_mut().push(req.url.clone());
        self.fetch(req, timeout_ms).await
    }

    /// A [`Reply::Streamed`] comes with its body still arriving; other replies come whole.
    async fn fetch_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.answer(req, timeout_ms, true).await
    }

    async fn fetch_page_streamed(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.page_requests.borrow_mut().push(req.url.clone());
        self.fetch_streamed(req, timeout_ms).await
    }

    /// As on Workers, the answer's body is one the engine cannot read ([`crate::http::Body::served`];
    /// [`body`] reads it for tests).
    async fn fetch_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        let mut resp = self.fetch(req, timeout_ms).await?;
        self.to_serve.set(self.to_serve.get() + 1);
        resp.body = crate::http::Body::served(Rc::new(resp.body));
        Ok(resp)
    }

    async fn fetch_page_to_serve(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.page_requests.borrow_mut().push(req.url.clone());
        self.fetch_to_serve(req, timeout_ms).await
    }

    async fn fetch(&self, req: Request, timeout_ms: u64) -> Result<Response, OriginError> {
        self.answer(req, timeout_ms, false).await
    }
}

impl FakeOrigin {
    async fn answer(&self, req: Request, timeout_ms: u64, streamed: bool) -> Result<Response, OriginError> {
        self.requests.borrow_mut().push(req.clone());
        if let Some((clock, ms)) = self.latency.borrow().clone() {
            clock.advance(ms);
        }
        let gate = self.gate.borrow().clone();
        if let Some(gate) = gate {
            gate.wait().await;
        }
        let path = path_and_query(&req.url);
        let reply = self
            .replies
            .borrow()
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Reply::page(&format!("page {path}"), &[]));
        match reply {
            Reply::Timeout => Err(OriginError::Timeout(timeout_ms)),
            Reply::Network => Err(OriginError::Network("connection refused".into())),
            Reply::Status(status) => Ok(Response::new(status)),
            Reply::Json(text) => {
                *self.renders.borrow_mut().entry(path).or_default() += 1;
                Ok(Response::new(200).with_header("content-type", "application/json").with_body(text))
            }
            Reply::Page { status, headers, body } => {
                let headers: Headers = headers.into_iter().collect();
                if let (Some(etag), Some(inm)) = (headers.get("etag"), req.headers.get("if-none-match")) {
                    if etag == inm {
                        *self.not_modified.borrow_mut().entry(path).or_default() += 1;
                        return Ok(Response {
                            status: 304,
                            headers,
                            body: Default::default(),
                        });
                    }
                }
                let n = {
                    let mut renders = self.renders.borrow_mut();
                    let n = renders.entry(path).or_default();
                    *n += 1;
                    *n
                };
                let mut headers = headers;
                if req.method != "GET" && req.method != "HEAD" {
                    headers.set("x-echo-method", req.method.clone());
                }
                Ok(Response {
                    status,
                    headers,
                    body: format!("{body} render={n}").into(),
                })
            }
            Reply::Streamed { status, headers, feed } => {
                *self.renders.borrow_mut().entry(path).or_default() += 1;
                let body = if streamed {
                    crate::http::Body::streaming(feed.stream())
                } else {
                    feed.whole().await.map_err(OriginError::Network)?.into()
                };
                Ok(Response { status, headers: headers.into_iter().collect(), body })
            }
        }
    }
}

/// An engine on the in-memory store, a manual clock, a fake origin and a task queue.
pub struct Bench {
    /// The clock (starts at 1,000,000,000 ms).
    pub clock: ManualClock,
    /// The store, at location 0.
    pub kv: MemoryKv,
    /// The origin.
    pub origin: Rc<FakeOrigin>,
    /// Background work, run with `run_background`.
    pub queue: Rc<TaskQueue>,
    /// Log lines.
    pub logger: Rc<MemoryLogger>,
    /// The isolate's shared state.
    pub isolate: Rc<Isolate>,
    /// Configuration.
    pub config: Rc<Config>,
    /// The site's routes (by default: everything proxied to the origin).
    pub site: Rc<crate::site::Site>,
    /// The coordinator (the Durable Object's model), if the engine has one.
    pub coordinator: Option<crate::coordination::coordinator::MemoryCoordinator>,
}

impl Bench {
    /// A bench with the default configuration and origin `http://origin.test`.
    pub fn new() -> Bench {
        Bench::with_config(Config::for_origin("http://origin.test"))
    }

    /// A bench with the given configuration.
    pub fn with_config(config: Config) -> Bench {
        let clock = ManualClock::new(1_000_000_000);
        let kv = MemoryKv::new(Rc::new(clock.clone()));
        Bench {
            clock,
            kv,
            origin: FakeOrigin::new(),
            queue: Rc::new(TaskQueue::new()),
            logger: Rc::new(MemoryLogger::new()),
            isolate: Isolate::new(),
            config: Rc::new(config),
            site: Rc::new(crate::site::Site::new()),
            coordinator: None,
        }
    }

    /// The same bench with a coordinator (shared by the isolates made from it).
    pub fn with_coordinator(mut self) -> Bench {
        let clock: Rc<dyn Clock> = Rc::new(self.clock.clone());
        self.coordinator = Some(crate::coordination::coordinator::MemoryCoordinator::new(clock));
        self
    }

    /// The same bench, rendering with `site`.
    pub fn with_site(mut self, site: crate::site::Site) -> Bench {
        self.site = Rc::new(site);
        self
    }

    /// Another isolate (separate in-memory state) on the same store, seen from `location`.
    pub fn other_isolate(&self, location: u32) -> Bench {
        Bench {
            clock: self.clock.clone(),
            kv: self.kv.location(location),
            origin: self.origin.clone(),
            queue: Rc::new(TaskQueue::new()),
            logger: self.logger.clone(),
            isolate: Isolate::new(),
            config: self.config.clone(),
            site: self.site.clone(),
            coordinator: self.coordinator.clone(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> Engine<MemoryKv, FakeOrigin> {
        let clock: Rc<dyn Clock> = Rc::new(self.clock.clone());
        let engine = Engine::new(
            self.config.clone(),
            Rc::new(self.kv.clone()),
            self.origin.clone(),
            clock,
            self.queue.clone(),
            self.logger.clone(),
            self.isolate.clone(),
        )
        .with_site(self.site.clone());
        match &self.coordinator {
            Some(c) => engine.with_coordinator(Rc::new(c.clone())),
            None => engine,
        }
    }

    /// Handles one request as a new invocation.
    pub async fn send(&self, req: Request) -> Response {
        self.kv.begin_invocation();
        self.engine().handle(req).await
    }

    /// A GET of `https://site.test{path}`.
    pub async fn get(&self, path: &str) -> Response {
        self.send(Request::new("GET", &format!("https://site.test{path}"))).await
    }

    /// A GET of `https://site.test{path}` with credentials (never cached: BYPASS).
    pub async fn get_with_auth(&self, path: &str) -> Response {
        self.send(Request::new("GET", &format!("https://site.test{path}")).with_header("authorization", "Bearer visitor")).await
    }

    /// Runs queued background work to completion (as `waitUntil` would).
    pub async fn run_background(&self) {
        self.queue.run_all().await;
    }
}

impl Default for Bench {
    fn default() -> Self {
        Bench::new()
    }
}

/// A stored page's metadata, rendered at `rendered_at` and fresh for `revalidate_s`, with no
/// headers, validators, tags or invalidation: tests change the fields they are about.
pub fn page_meta(rendered_at: u64, revalidate_s: u32) -> crate::rules::meta::PageMeta {
    crate::rules::meta::PageMeta {
        version: crate::rules::meta::META_VERSION,
        rendered_at,
        revalidate_s,
        status: 200,
        etag: "\"e\"".into(),
        origin_etag: None,
        last_modified: None,
        invalidated_at: None,
        expired: false,
        stale_if_error_s: None,
        tags_digest: None,
        tier_tags: None,
        tag_hashes: None,
        headers: vec![],
    }
}

/// The `x-isr-cache` header of a response.
pub fn cache_state(resp: &Response) -> &str {
    resp.headers.get("x-isr-cache").unwrap_or("")
}

/// The body as text (a stored page's too, which the engine itself may not read: see
/// [`crate::http::Body::served`]).
pub fn body(resp: &Response) -> String {
    if let Some(stream) = stream_of(&resp.body) {
        let rest = stream.rest_if_ended().expect("testing::body of a streamed answer whose body has not ended: use read_body");
        return String::from_utf8_lossy(&rest.expect("a body cut off")).into_owned();
    }
    String::from_utf8_lossy(&crate::store::memory::served_bytes(&resp.body)).into_owned()
}

/// The test configuration (`ORIGIN_URL` = `http://origin.test`, `REVALIDATE_SECRET` =
/// `s3cret`) with `vars` set on top.
pub fn config_with(vars: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = vars.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    Config::from_vars(move |name| match name {
        "ORIGIN_URL" => Some("http://origin.test".to_string()),
        "REVALIDATE_SECRET" => Some("s3cret".to_string()),
        _ => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
    })
    .expect("valid test configuration")
}

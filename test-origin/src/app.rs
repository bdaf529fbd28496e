//! What the origin answers: per-path behaviour and counters, the rendered pages, the POST echo
//! and the control API under `/__origin/`.

use crate::http::{self, Request, Response};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest stall a behaviour can ask for; larger `stall_ms` values are capped to it.
pub const MAX_STALL_MS: u64 = 120_000;
/// The largest `size` (padded page size, bytes) a behaviour may ask for.
pub const MAX_SIZE: usize = 64 * 1024 * 1024;
/// How many requests per path [`crate::TestOrigin::requests`] remembers.
pub const REQUEST_LOG_LEN: usize = 20;
/// Paths under this prefix are the control API, not pages.
pub const CONTROL_PREFIX: &str = "/__origin";

/// How the origin answers requests for one path. Every field is optional in JSON; unknown
/// fields are rejected so that a typo in a test fails loudly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Status of the response (200..=599; default 200). 204 and 304 are sent without a body.
    pub status: u16,
    /// Headers added to the response (names case-insensitive), replacing the origin's own
    /// header of the same name (e.g. `content-type`, `etag`). Framing headers
    /// (`content-length`, `transfer-encoding`, `connection`) are not allowed.
    pub headers: BTreeMap<String, String>,
    /// The string shown in the page (`content=...`), default `"v1"`. Part of the ETag.
    pub content: String,
    /// Answer 500 with a small plain-text body; counted in `failures`, not `renders`.
    pub fail: bool,
    /// Sleep this long before answering (capped at [`MAX_STALL_MS`]).
    pub stall_ms: u64,
    /// Send `ETag: "<hash of path, content and status>"` and answer a matching
    /// `If-None-Match` with 304 (default true).
    pub etag: bool,
    /// Send `Last-Modified` (when the content was last set) and answer `If-Modified-Since`
    /// with 304 when it is not older (default false). A content change always moves it at
    /// least one second past the previous value, so it may lead the `Date` header by up to 1 s.
    pub last_modified: bool,
    /// Pad the HTML body with a comment to at least this many bytes.
    pub size: usize,
    /// Declare a Content-Length larger than the body, send the body, then close the
    /// connection: a truncated response (still counted as a render).
    pub truncate: bool,
    /// Alternate a good answer and a 500 failure on successive GET/HEAD requests, starting
    /// with a good one after the behaviour is set.
    pub flip: bool,
    /// Send the page's first `hold_at` bytes (its head at once), then nothing until
    /// `POST /__origin/events/release` (or 15 s), then the rest (0: no hold). For the tests of a
    /// MISS that streams.
    pub hold_at: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            headers: BTreeMap::new(),
            content: "v1".to_string(),
            fail: false,
            stall_ms: 0,
            etag: true,
            last_modified: false,
            size: 0,
            truncate: false,
            flip: false,
            hold_at: 0,
        }
    }
}

impl Behaviour {
    /// Checks that the origin can send what this behaviour describes.
    pub fn validate(&self) -> Result<(), String> {
        if !(200..=599).contains(&self.status) {
            return Err(format!("status {} is not in 200..=599", self.status));
        }
        for (name, value) in &self.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(format!("header name {name:?} is not a valid HTTP token"));
            }
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "date"
            ) {
                return Err(format!("header {name:?} is set by the origin itself"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!("value of header {name:?} contains CR, LF or NUL"));
            }
        }
        if self.size > MAX_SIZE {
            return Err(format!("size {} exceeds {MAX_SIZE}", self.size));
        }
        Ok(())
    }
}

/// Counters for one path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The path these counters are for.
    pub path: String,
    /// Full pages rendered (GET/HEAD answered with a body, whatever the status).
    pub renders: u64,
    /// GET/HEAD answered 304 Not Modified.
    pub not_modified: u64,
    /// Configured failures answered 500 (`fail`, or the failing half of `flip`).
    pub failures: u64,
    /// Every request to the path, any method, counted when it arrives (before a stall).
    pub requests: u64,
}

/// One request as the origin received it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path as received (no percent-decoding).
    pub path: String,
    /// The raw query string without `?` (`""` when there was none).
    pub query: String,
    /// Headers by lower-cased name; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
}

/// Per-path state.
struct PathState {
    behaviour: Option<Behaviour>,
    /// When the content was last set (unix seconds): the `Last-Modified` time.
    content_since: u64,
    renders: u64,
    not_modified: u64,
    failures: u64,
    requests: u64,
    /// GET/HEAD requests seen since `flip` was (re)configured.
    flips: u64,
    log: VecDeque<RecordedRequest>,
}

impl PathState {
    fn new() -> Self {
        PathState {
            behaviour: None,
            content_since: unix_secs(),
            renders: 0,
            not_modified: 0,
            failures: 0,
            requests: 0,
            flips: 0,
            log: VecDeque::new(),
        }
    }

    fn stats(&self, path: &str) -> Stats {
        Stats {
            path: path.to_string(),
            renders: self.renders,
            not_modified: self.not_modified,
            failures: self.failures,
            requests: self.requests,
        }
    }
}

/// All paths' behaviour and counters.
#[derive(Default)]
pub(crate) struct State {
    paths: BTreeMap<String, PathState>,
}

impl State {
    fn entry(&mut self, path: &str) -> &mut PathState {
        self.paths
            .entry(path.to_string())
            .or_insert_with(PathState::new)
    }

    pub fn stats(&self, path: &str) -> Stats {
        self.paths
            .get(path)
            .map(|p| p.stats(path))
            .unwrap_or_else(|| Stats {
                path: path.to_string(),
                ..Stats::default()
            })
    }

    pub fn all_stats(&self) -> BTreeMap<String, Stats> {
        self.paths
            .iter()
            .map(|(path, p)| (path.clone(), p.stats(path)))
            .collect()
    }

    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.paths
            .get(path)
            .map(|p| p.log.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn all_requests(&self) -> BTreeMap<String, Vec<RecordedRequest>> {
        self.paths
            .iter()
            .filter(|(_, p)| !p.log.is_empty())
            .map(|(path, p)| (path.clone(), p.log.iter().cloned().collect()))
            .collect()
    }

    pub fn behaviour(&self, path: &str) -> Behaviour {
        self.paths
            .get(path)
            .and_then(|p| p.behaviour.clone())
            .unwrap_or_default()
    }

    pub fn set_behaviour(&mut self, path: &str, behaviour: Behaviour) {
        let known = self.paths.contains_key(path);
        let p = self.entry(path);
        let old_content = p
            .behaviour
            .as_ref()
            .map(|b| b.content.as_str())
            .unwrap_or("v1");
        if known && old_content != behaviour.content {
            // Strictly later than the Last-Modified already sent (1 s resolution), so that
            // If-Modified-Since sees every change, even if that is up to 1 s in the future.
            p.content_since = unix_secs().max(p.content_since + 1);
        }
        p.flips = 0;
        p.behaviour = Some(behaviour);
    }

    pub fn clear_behaviour(&mut self, path: &str) {
        if let Some(p) = self.paths.get_mut(path) {
            if let Some(old) = p.behaviour.take() {
                if old.content != Behaviour::default().content {
                    p.content_since = unix_secs().max(p.content_since + 1);
                }
                p.flips = 0;
            }
        }
    }

    pub fn reset(&mut self) {
        self.paths.clear();
    }
}

/// What the server threads share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub stopped: AtomicBool,
    pub logging: AtomicBool,
    /// Open connections (clones of their sockets) so that stopping can close them.
    pub conns: Mutex<HashMap<u64, TcpStream>>,
    pub next_conn: AtomicU64,
    /// `http://127.0.0.1:PORT`, for the demo index.
    pub url: String,
    /// Where `/api/...` JSON content is read from (see `content.rs`), if anywhere.
    pub content_dir: Mutex<Option<std::path::PathBuf>>,
    /// `POST /__origin/events/release` was called (see `streams`).
    pub events_released: AtomicBool,
    /// Event streams (and held downloads) waiting to be released.
    pub events_open: AtomicU64,
    /// Bytes of the upload in progress received so far (see `streams`).
    pub upload_progress: AtomicU64,
}

impl Shared {
    pub fn new(url: String) -> Self {
        Shared {
            url,
            state: Mutex::new(State::default()),
            stopped: AtomicBool::new(false),
            logging: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            content_dir: Mutex::new(None),
            events_released: AtomicBool::new(false),
            events_open: AtomicU64::new(0),
            upload_progress: AtomicU64::new(0),
        }
    }

    /// The state; a panic in another thread does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn conns(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn log(&self, req: &Request, status: u16, note: &str) {
        if self.logging.load(Ordering::Relaxed) {
            let q = if req.query.is_empty() { "" } else { "?" };
            eprintln!(
                "{} {}{q}{} -> {status}{note}",
                req.method, req.path, req.query
            );
        }
    }
}

/// What to do with a request.
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Response),
    /// Send this head, then a body written as it is produced (see `streams`), then close.
    Stream(Response, crate::streams::Streamed),
    /// The server is stopping: close the connection without an answer.
    Abort,
}

/// Answers one request.
pub(crate) fn handle(shared: &Shared, req: &Request) -> Outcome {
    if let Some(outcome) = crate::streams::route(shared, req) {
        shared.log(req, 200, " (stream)");
        return outcome;
    }
    if req.path == CONTROL_PREFIX || req.path.starts_with("/__origin/") {
        let resp = control(shared, req);
        shared.log(req, resp.status, " (control)");
        return Outcome::Respond(resp);
    }
    page_or_echo(shared, req)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Sleeps `ms` (capped) in small steps; false if the server stopped meanwhile.
fn stall(shared: &Shared, ms: u64) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms.min(MAX_STALL_MS));
    loop {
        if shared.stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

/// What was decided when the request arrived.
struct Plan {
    behaviour: Behaviour,
    configured: bool,
    flip_fail: bool,
    content_since: u64,
}

fn page_or_echo(shared: &Shared, req: &Request) -> Outcome {
    let is_page = req.method == "GET" || req.method == "HEAD";
    let plan = {
        let mut state = shared.lock();
        let p = state.entry(&req.path);
        p.requests += 1;
        if p.log.len() >= REQUEST_LOG_LEN {
            p.log.pop_front();
        }
        let mut headers = BTreeMap::new();
        for (name, value) in &req.headers {
            headers
                .entry(name.clone())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        p.log.push_back(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers,
        });
        let configured = p.behaviour.is_some();
        let behaviour = p.behaviour.clone().unwrap_or_default();
        let flip_fail = if is_page && behaviour.flip {
            p.flips += 1;
            p.flips.is_multiple_of(2)
        } else {
            false
        };
        Plan {
            behaviour,
            configured,
            flip_fail,
            content_since: p.content_since,
        }
    };
    if plan.behaviour.stall_ms > 0 && !stall(shared, plan.behaviour.stall_ms) {
        shared.log(req, 0, " (aborted: server stopped during stall)");
        return Outcome::Abort;
    }
    if plan.behaviour.fail || plan.flip_fail {
        shared.lock().entry(&req.path).failures += 1;
        let mut resp = Response::new(
            500,
            "text/plain; charset=utf-8",
            b"500 origin failure (test-origin: configured)\n".to_vec(),
        );
        resp.set_header("cache-control", "no-store");
        shared.log(req, 500, " (configured failure)");
        return Outcome::Respond(resp);
    }
    let content_dir = shared.content_dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(resp) = content_dir.filter(|_| is_page).and_then(|dir| crate::content::answer(&dir, &req.path)) {
        shared.lock().entry(&req.path).renders += 1;
        shared.log(req, resp.status, " (content)");
        return Outcome::Respond(resp);
    }
    let resp = if is_page {
        page(shared, req, &plan)
    } else {
        echo(shared, req, &plan)
    };
    if is_page && plan.behaviour.hold_at > 0 && resp.status != 304 {
        shared.events_released.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut head = resp;
        let body = std::mem::take(&mut head.body);
        return Outcome::Stream(head, crate::streams::Streamed::Held(body, plan.behaviour.hold_at));
    }
    Outcome::Respond(resp)
}

/// The configured headers, lower-cased names.
fn apply_headers(resp: &mut Response, b: &Behaviour) {
    for (name, value) in &b.headers {
        resp.set_header(&name.to_ascii_lowercase(), value);
    }
}

fn echo(shared: &Shared, req: &Request, plan: &Plan) -> Response {
    #[derive(Serialize)]
    struct Echo<'a> {
        method: &'a str,
        path: &'a str,
        body_len: usize,
    }
    let body = serde_json::to_vec(&Echo {
        method: &req.method,
        path: &req.path,
        body_len: req.body.len(),
    })
    .unwrap_or_default();
    let mut resp = Response::new(plan.behaviour.status, "application/json", body);
    apply_headers(&mut resp, &plan.behaviour);
    shared.log(req, resp.status, " (echo)");
    resp
}

/// FNV-1a, 64 bits: a stable hash for ETags.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(b"\0") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The ETag the origin sends for `path` with behaviour `b` (`None` when `etag` is off).
pub(crate) fn etag_for(path: &str, b: &Behaviour) -> Option<String> {
    b.etag.then(|| {
        let status = b.status.to_string();
        format!(
            "\"{:016x}\"",
            fnv1a(&[path.as_bytes(), b.content.as_bytes(), status.as_bytes()])
        )
    })
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether the request's validators match (RFC 9110 section 13.2.2: If-None-Match first).
fn not_modified(req: &Request, etag: Option<&str>, last_modified: Option<u64>) -> bool {
    if let Some(inm) = req.header("if-none-match") {
        let Some(etag) = etag else { return false };
        let etag = strip_weak(etag);
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || strip_weak(t) == etag);
    }
    match (req.header("if-modified-since"), last_modified) {
        (Some(ims), Some(lm)) => match httpdate::parse_http_date(ims.trim()) {
            Ok(t) => {
                lm <= t
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            }
            Err(_) => false,
        },
        _ => false,
    }
}

fn page(shared: &Shared, req: &Request, plan: &Plan) -> Response {
    let b = &plan.behaviour;
    let etag = b
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone())
        .or_else(|| etag_for(&req.path, b));
    let configured_lm = b
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("last-modified"));
    let last_modified = match configured_lm {
        Some((_, v)) => httpdate::parse_http_date(v)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        None => b.last_modified.then_some(plan.content_since),
    };
    let mut validators = Vec::new();
    if let Some(etag) = &etag {
        validators.push(("etag", etag.clone()));
    }
    if let Some(lm) = last_modified {
        let when = UNIX_EPOCH + Duration::from_secs(lm);
        validators.push(("last-modified", httpdate::fmt_http_date(when)));
    }

    if (200..300).contains(&b.status) && not_modified(req, etag.as_deref(), last_modified) {
        shared.lock().entry(&req.path).not_modified += 1;
        let mut resp = Response {
            status: 304,
            headers: Vec::new(),
            body: Vec::new(),
            truncate: false,
        };
        for (name, value) in &validators {
            resp.set_header(name, value);
        }
        apply_headers(&mut resp, b);
        resp.headers.retain(|(n, _)| n != "content-type");
        shared.log(req, 304, "");
        return resp;
    }

    let render = {
        let mut state = shared.lock();
        let p = state.entry(&req.path);
        p.renders += 1;
        p.renders
    };
    let demo_index = (req.path == "/" && !plan.configured).then_some(shared.url.as_str());
    let mut body = render_html(
        &req.path,
        &req.query,
        &b.content,
        render,
        unix_ms(),
        demo_index,
    );
    pad(&mut body, b.size);
    let mut resp = Response::new(b.status, "text/html; charset=utf-8", body.into_bytes());
    for (name, value) in &validators {
        resp.set_header(name, value);
    }
    resp.set_header("x-origin-render", &render.to_string());
    apply_headers(&mut resp, b);
    resp.truncate = b.truncate;
    shared.log(
        req,
        b.status,
        &format!(
            " render #{render}{}",
            if b.truncate { " (truncated)" } else { "" }
        ),
    );
    resp
}

/// Escapes text for HTML element content and attribute values.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes only `<` and `>`: enough to keep a value from becoming markup, while leaving
/// query strings such as `a=1&b=2` verbatim for tests to read back.
fn escape_angles(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

fn render_html(
    path: &str,
    query: &str,
    content: &str,
    render: u64,
    time_ms: u128,
    demo_index: Option<&str>,
) -> String {
    let title = escape_html(path);
    let raw_path = escape_angles(path);
    let content = escape_angles(content);
    let query = escape_angles(query);
    let help = match demo_index {
        Some(origin_url) => DEMO_HELP.replace("http://ORIGIN", &escape_html(origin_url)),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}code,pre{{background:#f3f3f3;border-radius:3px}}code{{padding:0 .25rem}}pre{{padding:.6rem;overflow-x:auto}}.meta{{color:#555}}</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Rendered by the edge-isr test origin: render #{render} at {time_ms} (unix ms).</p>
<p id="path">path={raw_path}</p>
<p id="render">render={render}</p>
<p id="time">time={time_ms}</p>
<p id="content">content={content}</p>
<p id="query">query={query}</p>
{help}</body>
</html>
"#
    )
}

/// Pads `body` with an HTML comment (or newlines) to at least `size` bytes.
fn pad(body: &mut String, size: usize) {
    let missing = size.saturating_sub(body.len());
    const OVERHEAD: usize = "<!--".len() + "-->\n".len();
    if missing == 0 {
    } else if missing <= OVERHEAD {
        body.push_str(&"\n".repeat(missing));
    } else {
        body.push_str("<!--");
        body.push_str(&"x".repeat(missing - OVERHEAD));
        body.push_str("-->\n");
    }
}

const DEMO_HELP: &str = r#"<h2>What this is</h2>
<p>This is the <strong>test origin</strong> of edge-isr: a tiny HTTP server that renders a page for
any path and counts its renders. Put the worker in front of it (<code>scripts/dev.sh</code> does)
and reload a page: while the page is cached, the render number above stays the same; after
regeneration it goes up.</p>
<p>Try some pages: <a href="/about">/about</a>, <a href="/blog/hello">/blog/hello</a>,
<a href="/products?page=2">/products?page=2</a>.</p>
<h2>Control API (JSON)</h2>
<p>Talk to the origin directly (not through the worker) to change how a path answers:</p>
<pre>
# make /about cacheable for 10 s, with new content
curl -X PUT 'http://ORIGIN/__origin/behaviour?path=/about' \
     -d '{"content":"v2","headers":{"cache-control":"s-maxage=10"}}'
curl 'http://ORIGIN/__origin/behaviour?path=/about'        # show it
curl -X DELETE 'http://ORIGIN/__origin/behaviour?path=/about'  # back to defaults
curl 'http://ORIGIN/__origin/stats?path=/about'   # renders, not_modified, failures, requests
curl 'http://ORIGIN/__origin/stats'               # every path
curl 'http://ORIGIN/__origin/requests?path=/about' # last 20 requests, with their headers
curl -X POST 'http://ORIGIN/__origin/reset'        # forget all behaviour and counters
</pre>
<p>Behaviour fields (all optional): <code>status</code> (default 200), <code>headers</code>
(object, e.g. <code>{"cache-control":"s-maxage=2","cache-tag":"a,b"}</code>), <code>content</code>
(default "v1"), <code>fail</code> (answer 500), <code>stall_ms</code> (wait before answering, at most
120000), <code>etag</code> (default true; 304 on a matching If-None-Match), <code>last_modified</code>
(default false; 304 on If-Modified-Since), <code>size</code> (pad the page to this many bytes),
<code>truncate</code> (send fewer bytes than Content-Length says), <code>flip</code> (alternate a
good page and a 500), <code>hold_at</code> (send that many bytes, then the rest only after
<code>POST /__origin/events/release</code>).</p>
<p>On the origin itself: <a href="http://ORIGIN/__origin/stats">stats of every path</a>,
<a href="http://ORIGIN/__origin/requests">recent requests</a>,
<a href="http://ORIGIN/__origin/">the control API's endpoints</a>.</p>
"#;

fn json_response<T: Serialize>(status: u16, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(status, "application/json", body);
    resp.set_header("cache-control", "no-store");
    resp
}

fn json_error(status: u16, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

fn method_not_allowed(allow: &str) -> Response {
    let mut resp = json_error(405, &format!("method not allowed; use {allow}"));
    resp.set_header("allow", allow);
    resp
}

fn control(shared: &Shared, req: &Request) -> Response {
    let endpoint = req.path.strip_prefix(CONTROL_PREFIX).unwrap_or_default();
    let path = match http::query_param(&req.query, "path") {
        Ok(p) => p,
        Err(e) => return json_error(400, &e),
    };
    if let Some(p) = &path {
        if !p.starts_with('/') {
            return json_error(400, "the path parameter must start with '/'");
        }
    }
    let method = req.method.as_str();
    let read = method == "GET" || method == "HEAD";
    match endpoint {
        "" | "/" => {
            if !read {
                return method_not_allowed("GET");
            }
            json_response(
                200,
                &serde_json::json!({
                    "endpoints": {
                        "PUT|GET|DELETE /__origin/behaviour?path=/x": "set (JSON body) / show / reset the behaviour of /x",
                        "GET /__origin/stats[?path=/x]": "counters of /x, or of every path",
                        "GET /__origin/requests[?path=/x]": "the last 20 requests to /x, or to every path",
                        "POST /__origin/reset": "forget all behaviour and counters",
                        "GET /__origin/download?bytes=N": "N bytes, streamed",
                        "POST /__origin/upload": "counts the bytes of the body",
                        "GET /__origin/events": "server-sent events: one at once, one after POST /__origin/events/release",
                    },
                    "behaviour_defaults": Behaviour::default(),
                }),
            )
        }
        "/behaviour" => {
            let Some(path) = path else {
                return json_error(400, "missing ?path=/some/page");
            };
            match method {
                "GET" | "HEAD" => json_response(200, &shared.lock().behaviour(&path)),
                "PUT" | "POST" => {
                    let behaviour = if req.body.iter().all(u8::is_ascii_whitespace) {
                        Behaviour::default()
                    } else {
                        match serde_json::from_slice::<Behaviour>(&req.body) {
                            Ok(b) => b,
                            Err(e) => {
                                return json_error(400, &format!("invalid behaviour JSON: {e}"))
                            }
                        }
                    };
                    if let Err(e) = behaviour.validate() {
                        return json_error(400, &format!("invalid behaviour: {e}"));
                    }
                    shared.lock().set_behaviour(&path, behaviour.clone());
                    json_response(200, &behaviour)
                }
                "DELETE" => {
                    shared.lock().clear_behaviour(&path);
                    json_response(200, &Behaviour::default())
                }
                _ => method_not_allowed("GET, PUT, DELETE"),
            }
        }
        "/stats" => {
            if !read {
                return method_not_allowed("GET");
            }
            let state = shared.lock();
            match path {
                Some(p) => json_response(200, &state.stats(&p)),
                None => json_response(200, &state.all_stats()),
            }
        }
        "/requests" => {
            if !read {
                return method_not_allowed("GET");
            }
            let state = shared.lock();
            match path {
                Some(p) => json_response(200, &state.requests(&p)),
                None => json_response(200, &state.all_requests()),
            }
        }
        "/reset" => {
            if method != "POST" {
                return method_not_allowed("POST");
            }
            shared.lock().reset();
            json_response(200, &serde_json::json!({ "reset": true }))
        }
        _ => json_error(404, "no such control endpoint; GET /__origin/ lists them"),
    }
}

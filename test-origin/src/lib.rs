//! `test-origin`: a small, scriptable HTTP origin server for testing and demonstrating
//! edge-isr.
//!
//! It is used in two ways:
//!
//! * **In-process by integration tests**: [`TestOrigin::start`]`("127.0.0.1:0")` binds an
//!   ephemeral loopback port and serves from background threads until [`TestOrigin::stop`]
//!   (or drop). Tests point the worker at [`TestOrigin::url`] and then check what the origin
//!   saw with [`TestOrigin::stats`] / [`TestOrigin::requests`] or over the control API.
//! * **As the demo origin** beside `wrangler dev` (`scripts/dev.sh` runs the `test-origin`
//!   binary on `127.0.0.1:8788`).
//!
//! # Pages
//!
//! Every GET/HEAD to a path outside `/__origin/` renders an HTML page whose title and `<h1>`
//! are the path, and whose body has one line per fact, easy to parse (see [`page_field`]):
//!
//! ```text
//! <p id="path">path=/x</p>
//! <p id="render">render=3</p>          per-path render counter (1 for the first render)
//! <p id="time">time=1700000000000</p>  render time, unix ms
//! <p id="content">content=v1</p>       the path's `content` (default "v1")
//! <p id="query">query=a=1&b=2</p>      the raw query string received ("" if none)
//! ```
//!
//! The `render=` line is the first occurrence of `render=` in the body. Values are verbatim
//! except that `<` and `>` are escaped (`&lt;`, `&gt;`). `/`, unless given a behaviour, is the
//! same page plus a short guide to the control API. Responses carry `ETag` (a hash of path,
//! content and status, so it changes exactly when the content changes) and `x-origin-render`.
//!
//! Any other method (e.g. `POST /form`) is answered `{"method":..,"path":..,"body_len":..}`
//! (JSON) with the configured `status` and `headers` (`stall_ms` and `fail` apply too); it
//! counts in `requests`, not `renders`.
//!
//! # Behaviour
//!
//! Each path can be given a [`Behaviour`] (status, extra headers, content, failure, stall,
//! ETag / Last-Modified handling, padding, truncation, flip-flopping): see its fields.
//!
//! # Control API (JSON)
//!
//! * `PUT /__origin/behaviour?path=/x` with a behaviour as the body replaces that path's
//!   behaviour (answers it back); `GET` shows it; `DELETE` resets it to the defaults.
//! * `GET /__origin/stats?path=/x` → `{"path":"/x","renders":N,"not_modified":M,"failures":F,"requests":R}`;
//!   without `path`: an object of every path's stats, keyed by path.
//! * `GET /__origin/requests?path=/x` → the last 20 requests to `/x`, oldest first:
//!   `[{"method","path","query","headers":{lower-cased name: value}}]`; without `path`: all
//!   paths' lists, keyed by path.
//! * `POST /__origin/reset` forgets all behaviour and counters.
//! * Streams, for pass-through tests (see `streams.rs`): `GET /__origin/download?bytes=N`
//!   (N bytes, written as produced), `POST /__origin/upload` (counts the body's bytes),
//!   `GET /__origin/events` (server-sent events: one at once, the last after
//!   `POST /__origin/events/release`; `GET /__origin/events/open` counts those waiting).
//!
//! The `path` parameter is form-decoded (`%2F` or `/`; `+` is a space) and compared exactly
//! with request paths as they arrive on the request line (which are not decoded).
//! Malformed requests get a 400, unknown endpoints a 404.
//!
//! The server only listens on loopback addresses. It speaks HTTP/1.1 (keep-alive,
//! Content-Length and chunked request bodies), one thread per connection, so a stalled
//! request never holds up requests on other connections.

mod app;
mod content;
mod streams;
mod http;

pub use app::{Behaviour, RecordedRequest, Stats, MAX_SIZE, MAX_STALL_MS, REQUEST_LOG_LEN};

use app::{Outcome, Shared};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The address the `test-origin` binary listens on by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8788";

/// A connection idle this long (or stuck mid-request) is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A response write blocked this long gives up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running test origin. Stops (and frees its port) on [`TestOrigin::stop`] or when dropped.
pub struct TestOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for TestOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestOrigin")
            .field("addr", &self.addr)
            .field("running", &self.accept.is_some())
            .finish()
    }
}

impl TestOrigin {
    /// Binds `addr` (e.g. `"127.0.0.1:0"` for an ephemeral port, or `"localhost:8788"`) and
    /// starts serving in background threads. Only loopback addresses are accepted
    /// (`InvalidInput` otherwise).
    pub fn start(addr: &str) -> io::Result<TestOrigin> {
        let candidates: Vec<SocketAddr> = addr
            .to_socket_addrs()?
            .filter(|a| a.ip().is_loopback())
            .collect();
        if candidates.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the test origin only listens on loopback addresses (e.g. 127.0.0.1:0)",
            ));
        }
        let listener = TcpListener::bind(&candidates[..])?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{local}")));
        let inner = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("test-origin-accept".into())
            .spawn(move || accept_loop(listener, inner))?;
        Ok(TestOrigin {
            addr: local,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the origin listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters of `path` (all zero if it was never requested).
    pub fn stats(&self, path: &str) -> Stats {
        self.shared.lock().stats(path)
    }

    /// The counters of every path the origin knows, keyed by path.
    pub fn all_stats(&self) -> BTreeMap<String, Stats> {
        self.shared.lock().all_stats()
    }

    /// The last [`REQUEST_LOG_LEN`] requests to `path`, oldest first.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.shared.lock().requests(path)
    }

    /// The behaviour `path` currently has (the default if none was set).
    pub fn behaviour(&self, path: &str) -> Behaviour {
        self.shared.lock().behaviour(path)
    }

    /// Replaces the behaviour of `path` (like `PUT /__origin/behaviour?path=...`).
    ///
    /// # Panics
    ///
    /// If the behaviour is invalid (see [`Behaviour::validate`]): a test's mistake.
    pub fn set_behaviour(&self, path: &str, behaviour: Behaviour) {
        if let Err(e) = behaviour.validate() {
            panic!("invalid behaviour for {path}: {e}");
        }
        self.shared.lock().set_behaviour(path, behaviour);
    }

    /// Resets the behaviour of `path` to the defaults, keeping its counters.
    pub fn clear_behaviour(&self, path: &str) {
        self.shared.lock().clear_behaviour(path);
    }

    /// Forgets every behaviour, counter and recorded request.
    pub fn reset(&self) {
        self.shared.lock().reset();
    }

    /// Logs one line per request to stderr when on (off by default; the binary turns it on).
    pub fn set_logging(&self, on: bool) {
        self.shared.logging.store(on, Ordering::Relaxed);
    }

    /// Serves JSON content from `dir` under `/api/` (a small headless CMS; see `content.rs`).
    pub fn set_content_dir(&self, dir: impl Into<std::path::PathBuf>) {
        *self.shared.content_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.into());
    }

    /// Stops the server: closes the listening socket (the port is free when this returns)
    /// and every open connection. Requests in the middle of a stall are dropped unanswered.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept thread, blocked in accept(), with a connection of our own.
        let woken =
            (0..3).any(|_| TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok());
        if woken || accept.is_finished() {
            let _ = accept.join();
        }
        for (_, conn) in self.shared.conns().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The value of one of the page's `<p id="NAME">NAME=VALUE</p>` lines (`render`, `content`,
/// `query`, `path`, `time`), as the origin wrote it.
///
/// ```
/// let body = "<p id=\"render\">render=7</p>\n<p id=\"query\">query=a=1&b=2</p>";
/// assert_eq!(test_origin::page_field(body, "render"), Some("7"));
/// assert_eq!(test_origin::page_field(body, "query"), Some("a=1&b=2"));
/// assert_eq!(test_origin::page_field(body, "content"), None);
/// ```
pub fn page_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let start_tag = format!("<p id=\"{name}\">{name}=");
    let start = body.find(&start_tag)? + start_tag.len();
    let len = body[start..].find("</p>")?;
    Some(&body[start..start + len])
}

/// The render counter of a page (its `render=N` line), if the body is a test-origin page.
pub fn page_render(body: &str) -> Option<u64> {
    page_field(body, "render")?.parse().ok()
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                if shared.stopped() {
                    return;
                }
                // E.g. out of file descriptors: back off briefly.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.stopped() {
            return;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared.conns().insert(id, clone);
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("test-origin-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                conn_shared.conns().remove(&id);
            });
        if spawned.is_err() {
            shared.conns().remove(&id);
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while !shared.stopped() {
        let req = match http::read_request(&mut reader, &mut writer, &shared.upload_progress) {
            Ok(req) => req,
            Err(http::ReadError::Bad(status, msg)) => {
                let body = format!("{status} {msg}\n").into_bytes();
                let resp = http::Response::new(status, "text/plain; charset=utf-8", body);
                let _ = http::write_response(&mut writer, &resp, false, true);
                break;
            }
            Err(_) => break,
        };
        let resp = match app::handle(shared, &req) {
            Outcome::Respond(resp) => resp,
            Outcome::Stream(head, body) => {
                let _ = streams::write(&mut writer, shared, &head, body, req.method == "HEAD");
                break;
            }
            Outcome::Abort => break,
        };
        let close = !req.keep_alive() || shared.stopped();
        let head_only = req.method == "HEAD";
        // A truncated response closes the connection without announcing it.
        let sent = http::write_response(&mut writer, &resp, head_only, close && !resp.truncate);
        if sent.is_err() || close || resp.truncate {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests;

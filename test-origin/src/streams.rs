//! Streamed answers, for the pass-through (BYPASS) tests: a large download written as it is
//! produced, a server-sent event stream that sends one event and then waits to be released, and
//! an upload sink that counts the bytes it received.
//!
//! * `GET /__origin/download?bytes=N` → `N` bytes of `x` (`application/octet-stream`, with
//!   `Content-Length`), written 64 KiB at a time; with `&hold_at=M`, the first `M` bytes, then
//!   nothing until `POST /__origin/events/release` (or 15 s), then the rest.
//! * `POST|PUT /__origin/upload` → `{"bytes": N, "content_length": "..."|null, "chunked": bool}`;
//!   `GET /__origin/upload/progress` → `{"received": N}`, bytes of the last upload received so
//!   far (it grows while the upload arrives).
//! * `GET /__origin/events` → `text/event-stream`: `data: first` at once, then nothing until
//!   `POST /__origin/events/release` (or 15 s), then `data: last`, then the connection closes
//!   (close-delimited). `GET /__origin/events/open` → `{"open": N}`, streams still waiting.
//! * A page whose behaviour has `hold_at` (see `app::Behaviour`) is sent the same way: its first
//!   bytes, then nothing until released, then the rest (with its `Content-Length`).

use crate::app::{Outcome, Shared};
use crate::http::{Request, Response};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// A body written while it is produced.
pub(crate) enum Streamed {
    /// This many bytes of `x`, holding after the second number of them until released.
    Download(u64, Option<u64>),
    /// The event stream.
    Events,
    /// A page (`hold_at`, see `app::Behaviour`): these bytes, holding after the number given
    /// until released.
    Held(Vec<u8>, usize),
}

const CHUNK: usize = 64 * 1024;
/// Longest an event stream waits to be released.
const EVENTS_HOLD: Duration = Duration::from_secs(15);

/// The answer of a streaming endpoint, or `None` when `req` is not for one.
pub(crate) fn route(shared: &Shared, req: &Request) -> Option<Outcome> {
    let json = |value: serde_json::Value| {
        Outcome::Respond(Response::new(200, "application/json", value.to_string().into_bytes()))
    };
    Some(match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/__origin/download") => {
            let number = |name: &str| crate::http::query_param(&req.query, name).ok().flatten().and_then(|b| b.parse::<u64>().ok());
            let hold_at = number("hold_at");
            if hold_at.is_some() {
                shared.events_released.store(false, Ordering::SeqCst);
            }
            let mut head = Response::new(200, "application/octet-stream", Vec::new());
            head.set_header("cache-control", "no-store");
            Outcome::Stream(head, Streamed::Download(number("bytes").unwrap_or(0), hold_at))
        }
        ("GET", "/__origin/upload/progress") => json(serde_json::json!({"received": shared.upload_progress.load(Ordering::SeqCst)})),
        ("POST" | "PUT", "/__origin/upload") => json(serde_json::json!({
            "bytes": req.body.len(),
            "content_length": req.header("content-length"),
            "chunked": req.header("transfer-encoding").is_some_and(|t| t.contains("chunked")),
        })),
        ("GET", "/__origin/events") => {
            shared.events_released.store(false, Ordering::SeqCst);
            let mut head = Response::new(200, "text/event-stream", Vec::new());
            head.set_header("cache-control", "no-cache");
            Outcome::Stream(head, Streamed::Events)
        }
        ("POST", "/__origin/events/release") => {
            shared.events_released.store(true, Ordering::SeqCst);
            json(serde_json::json!({"released": true}))
        }
        ("GET", "/__origin/events/open") => json(serde_json::json!({"open": shared.events_open.load(Ordering::SeqCst)})),
        _ => return None,
    })
}

/// Writes `head` then the streamed body; the connection closes afterwards.
pub(crate) fn write<W: Write>(w: &mut W, shared: &Shared, head: &Response, body: Streamed, head_only: bool) -> io::Result<()> {
    let mut out = Vec::new();
    write!(out, "HTTP/1.1 {} {}\r\n", head.status, crate::http::reason(head.status))?;
    write!(out, "date: {}\r\n", httpdate::fmt_http_date(SystemTime::now()))?;
    for (name, value) in &head.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    match &body {
        Streamed::Download(bytes, _) => write!(out, "content-length: {bytes}\r\n")?,
        Streamed::Held(page, _) => write!(out, "content-length: {}\r\n", page.len())?,
        Streamed::Events => {}
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    w.write_all(&out)?;
    w.flush()?;
    if head_only {
        return Ok(());
    }
    // Counted as open from before its first byte until its hold ends.
    let held = matches!(body, Streamed::Events | Streamed::Download(_, Some(_)) | Streamed::Held(..));
    if held {
        shared.events_open.fetch_add(1, Ordering::SeqCst);
    }
    let mut open = held;
    let mut release = |shared: &Shared| {
        hold(shared);
        if std::mem::take(&mut open) {
            shared.events_open.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let result = match body {
        Streamed::Download(bytes, hold_at) => (|| {
            let chunk = vec![b'x'; CHUNK];
            let mut sent = 0;
            while sent < bytes {
                if hold_at == Some(sent) {
                    w.flush()?;
                    release(shared);
                }
                let mut n = (bytes - sent).min(CHUNK as u64);
                if let Some(at) = hold_at.filter(|at| *at > sent) {
                    n = n.min(at - sent);
                }
                w.write_all(&chunk[..n as usize])?;
                sent += n;
            }
            w.flush()
        })(),
        Streamed::Held(page, at) => (|| {
            let at = at.min(page.len());
            w.write_all(&page[..at])?;
            w.flush()?;
            release(shared);
            w.write_all(&page[at..])?;
            w.flush()
        })(),
        Streamed::Events => (|| {
            w.write_all(b"data: first\n\n")?;
            w.flush()?;
            release(shared);
            w.write_all(b"data: last\n\n")?;
            w.flush()
        })(),
    };
    if open {
        shared.events_open.fetch_sub(1, Ordering::SeqCst);
    }
    result
}

/// Waits until `POST /__origin/events/release`, the server stops, or 15 s.
fn hold(shared: &Shared) {
    let deadline = Instant::now() + EVENTS_HOLD;
    while !shared.events_released.load(Ordering::SeqCst) && !shared.stopped() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

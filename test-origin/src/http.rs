//! Just enough HTTP/1.1 for the test origin: reading requests (Content-Length and chunked
//! bodies, `Expect: 100-continue`, keep-alive) and writing responses, including deliberately
//! broken ones (a Content-Length larger than the body).
//!
//! Written on `std` rather than an HTTP library so that the origin controls the socket: it can
//! close a connection in the middle of a body, and `stop()` can close every open connection.

use std::io::{self, BufRead, Read, Write};
use std::time::SystemTime;

/// The request line plus headers may not exceed this many bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Request bodies may not exceed this many bytes.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// At most this many header lines per request.
const MAX_HEADERS: usize = 200;
/// How many bytes a truncated response claims beyond the body it actually sends.
pub(crate) const TRUNCATE_EXTRA: usize = 1024;

/// A parsed request.
pub(crate) struct Request {
    pub method: String,
    /// The path part of the request target, exactly as received (no percent-decoding).
    pub path: String,
    /// The query string without the `?`, exactly as received ("" when absent).
    pub query: String,
    /// The `y` of `HTTP/1.y`.
    pub minor: u8,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// All values of header `name` (lower-case), joined with ", "; `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_string(), |acc, v| acc + ", " + v))
    }

    /// Whether the connection may be reused after this request.
    pub fn keep_alive(&self) -> bool {
        let connection = self
            .header("connection")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let has = |token: &str| connection.split(',').any(|t| t.trim() == token);
        if has("close") {
            false
        } else if self.minor == 0 {
            has("keep-alive")
        } else {
            true
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection cleanly between requests.
    Eof,
    /// The socket failed, timed out or closed mid-request: drop the connection silently.
    Io,
    /// A malformed request: answer with this status and message, then close.
    Bad(u16, String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

fn bad(status: u16, msg: impl Into<String>) -> ReadError {
    ReadError::Bad(status, msg.into())
}

/// Reads one line (up to `limit` bytes including the line end) into `buf` without its CRLF/LF.
/// Returns the raw byte count, or `None` at EOF before any byte.
fn read_line<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<Option<usize>, ReadError> {
    buf.clear();
    let n = r.by_ref().take(limit as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if n >= limit {
            return Err(bad(431, "request line or header too long"));
        }
        return Err(ReadError::Io);
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(n))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reads the next request from `reader`. `writer` is used only for `100 Continue`. The body
/// of a request to `/__origin/upload` counts its bytes in `upload_progress` as they arrive.
pub(crate) fn read_request<R: BufRead, W: Write>(
    reader: &mut R,
    writer: &mut W,
    upload_progress: &std::sync::atomic::AtomicU64,
) -> Result<Request, ReadError> {
    let mut line = Vec::new();
    let mut budget = MAX_HEAD;
    // The request line; empty lines before it are ignored (RFC 9112 section 2.2).
    loop {
        let n = match read_line(reader, &mut line, budget)? {
            None => return Err(ReadError::Eof),
            Some(n) => n,
        };
        budget = budget.saturating_sub(n);
        if !line.is_empty() {
            break;
        }
        if budget == 0 {
            return Err(bad(400, "no request line"));
        }
    }
    let request_line =
        String::from_utf8(line.clone()).map_err(|_| bad(400, "request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad(400, "malformed request line")),
    };
    if !is_token(method) {
        return Err(bad(400, "malformed method"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => {
            return Err(bad(505, "only HTTP/1.0 and HTTP/1.1 are supported"))
        }
        _ => return Err(bad(400, "malformed HTTP version")),
    };
    let origin_form = if target.starts_with('/') {
        target
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        // absolute-form: drop the authority.
        rest.find(['/', '?']).map(|i| &rest[i..]).unwrap_or("/")
    } else if target == "*" {
        "*"
    } else {
        return Err(bad(400, "malformed request target"));
    };
    if origin_form
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err(bad(400, "malformed request target"));
    }
    let (path, query) = match origin_form.split_once('?') {
        Some((p, q)) => (p, q),
        None => (origin_form, ""),
    };
    let path = if path.is_empty() { "/" } else { path };

    let mut headers = Vec::new();
    loop {
        let n = match read_line(reader, &mut line, budget.max(1))? {
            None => return Err(ReadError::Io),
            Some(n) => n,
        };
        budget = budget.saturating_sub(n);
        if line.is_empty() {
            break;
        }
        if budget == 0 {
            return Err(bad(431, "request headers too large"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(bad(431, "too many request headers"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(bad(400, "obsolete header line folding"));
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad(400, "malformed header line"))?;
        if !is_token(name) {
            return Err(bad(400, "malformed header name"));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }

    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor,
        headers,
        body: Vec::new(),
    };

    let chunked = match request.header("transfer-encoding") {
        None => false,
        Some(te) => {
            let last = te
                .rsplit(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if last != "chunked" {
                return Err(bad(400, "unsupported transfer-encoding"));
            }
            true
        }
    };
    let length = if chunked {
        None
    } else {
        match request.header("content-length") {
            None => Some(0),
            Some(values) => {
                let parse = |v: &str| {
                    let v = v.trim();
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    v.parse::<u64>().ok()
                };
                let mut lengths = values.split(',').map(parse);
                let first = match lengths.next() {
                    Some(Some(n)) => n,
                    _ => return Err(bad(400, "malformed content-length")),
                };
                if !lengths.all(|l| l == Some(first)) {
                    return Err(bad(400, "conflicting or malformed content-length"));
                }
                if first > MAX_BODY {
                    return Err(bad(413, "request body too large"));
                }
                Some(first)
            }
        }
    };
    let expects_body = chunked || length.unwrap_or(0) > 0;
    let expect = request.header("expect").unwrap_or_default();
    if expects_body && minor == 1 && expect.eq_ignore_ascii_case("100-continue") {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let progress = (request.path == "/__origin/upload").then_some(upload_progress);
    if let Some(p) = progress {
        p.store(0, std::sync::atomic::Ordering::SeqCst);
    }
    match length {
        Some(n) => {
            read_counted(reader, n, &mut request.body, progress)?;
            if request.body.len() as u64 != n {
                return Err(ReadError::Io);
            }
        }
        None => read_chunked(reader, &mut request.body, progress)?,
    }
    Ok(request)
}

/// Reads up to `n` bytes into `body`, 64 KiB at a time, counting them in `progress`.
fn read_counted<R: BufRead>(reader: &mut R, n: u64, body: &mut Vec<u8>, progress: Option<&std::sync::atomic::AtomicU64>) -> io::Result<()> {
    let mut left = n;
    while left > 0 {
        let got = reader.by_ref().take(left.min(64 * 1024)).read_to_end(body)? as u64;
        if got == 0 {
            break;
        }
        left -= got;
        if let Some(p) = progress {
            p.fetch_add(got, std::sync::atomic::Ordering::SeqCst);
        }
    }
    Ok(())
}

fn read_chunked<R: BufRead>(reader: &mut R, body: &mut Vec<u8>, progress: Option<&std::sync::atomic::AtomicU64>) -> Result<(), ReadError> {
    let mut line = Vec::new();
    let eof = || ReadError::Io;
    loop {
        read_line(reader, &mut line, 4096)?.ok_or_else(eof)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(400, "malformed chunk size"));
        }
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| bad(400, "malformed chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            let mut trailer_budget = MAX_HEAD;
            loop {
                let n = read_line(reader, &mut line, trailer_budget.max(1))?.ok_or_else(eof)?;
                if line.is_empty() {
                    return Ok(());
                }
                trailer_budget = trailer_budget.saturating_sub(n);
                if trailer_budget == 0 {
                    return Err(bad(431, "trailers too large"));
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(bad(413, "request body too large"));
        }
        let before = body.len();
        read_counted(reader, size, body, progress)?;
        if (body.len() - before) as u64 != size {
            return Err(eof());
        }
        read_line(reader, &mut line, 2)?.ok_or_else(eof)?;
        if !line.is_empty() {
            return Err(bad(400, "chunk not followed by CRLF"));
        }
    }
}

/// A response to write.
pub(crate) struct Response {
    pub status: u16,
    /// Headers in order; must not include framing headers (Content-Length etc.).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Claim `TRUNCATE_EXTRA` more bytes than the body has (the caller then closes).
    pub truncate: bool,
}

impl Response {
    /// A response with a body and a content type.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            truncate: false,
        }
    }

    /// Sets header `name` (lower-case), replacing any existing value.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }
}

/// The reason phrase for common statuses.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Whether a response with this status never has a body.
pub(crate) fn bodiless(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// Writes `resp`; `head_only` for HEAD requests; `close` adds `Connection: close`.
pub(crate) fn write_response<W: Write>(
    w: &mut W,
    resp: &Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let no_body = bodiless(resp.status);
    let mut out = Vec::with_capacity(resp.body.len() + 512);
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    write!(
        out,
        "date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )?;
    for (name, value) in &resp.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    if !no_body {
        let declared = resp.body.len() + if resp.truncate { TRUNCATE_EXTRA } else { 0 };
        write!(out, "content-length: {declared}\r\n")?;
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !no_body && !head_only {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// Decodes `%XX` escapes and `+` (as a space) in a query component; `None` if malformed.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of the first query parameter `name`: `Ok(None)` if absent, `Err` if
/// the query is malformed.
pub(crate) fn query_param(query: &str, name: &str) -> Result<Option<String>, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| format!("malformed query parameter name {k:?}"))?;
        if k == name {
            let v = percent_decode(v)
                .ok_or_else(|| format!("malformed value of query parameter {name:?}"))?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

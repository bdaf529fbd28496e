//! Plain request and response values the core works on, independent of the Workers runtime.
//!
//! The adapter converts `worker::Request`/`worker::Response` to and from these at the edge,
//! so every rule in the core can be unit-tested natively without a JavaScript engine.

pub mod body;
pub mod header_text;

pub use crate::http::body::{Body, ReadError, StreamingBody};

/// An ordered list of header fields with lower-cased names.
///
/// A `Vec` rather than a map: header counts are small, order is kept, and repeated fields
/// (`Set-Cookie`, `Link`) survive untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The first value of `name` (case-insensitive), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present at all.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a value of `name`, keeping existing ones.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Keeps only the fields whose (lower-cased) name `keep` accepts, in their order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// Iterates over `(name, value)` pairs, names lower-cased.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of header fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Consumes the list into its pairs.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.append(n.as_ref(), v);
        }
        h
    }
}

/// An HTTP request as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method name, e.g. `GET`.
    pub method: String,
    /// The absolute URL the visitor asked for.
    pub url: String,
    /// Request headers.
    pub headers: Headers,
    /// Request body (empty for GET/HEAD).
    pub body: Body,
}

impl Request {
    /// A bodiless request, mostly for tests and for requests the engine makes to the origin.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Headers::new(),
            body: Body::new(),
        }
    }

    /// Builder-style header setter.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// An HTTP response as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Headers,
    /// Response body (already empty for HEAD and 304 answers).
    pub body: Body,
}

impl Response {
    /// A response with the given status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Headers::new(),
            body: Body::new(),
        }
    }

    /// Builder-style header setter.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder-style body setter.
    pub fn with_body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON error answer: `{"error": message}` with the given status.
    ///
    /// Used for every error the worker itself produces, so clients can always parse it.
    pub fn json_error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::new(status)
            .with_header("content-type", "application/json; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_body(body)
    }

    /// A JSON answer with status 200-599 and the given value as body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::new(status)
            .with_header("content-type", "application/json; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_body(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_is_case_insensitive_and_keeps_repeats() {
        let mut h: Headers = [("Set-Cookie", "a=1"), ("set-cookie", "b=2")].into_iter().collect();
        assert_eq!(h.get("SET-COOKIE"), Some("a=1"));
        assert_eq!(h.get_all("set-cookie").count(), 2);
        h.set("Set-Cookie", "c=3");
        assert_eq!(h.get_all("set-cookie").collect::<Vec<_>>(), vec!["c=3"]);
        h.remove("set-cookie");
        assert!(!h.contains("set-cookie"));
    }

    #[test]
    fn json_error_is_json() {
        let r = Response::json_error(400, "bad \"thing\"");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "bad \"thing\"");
        assert_eq!(r.status, 400);
    }
}

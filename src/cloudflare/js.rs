//! Small helpers for calling the runtime's JavaScript APIs (KV and queue bindings, `fetch`)
//! directly.
//!
//! Why not through the `worker` crate's wrappers: those build their option objects with
//! `serde-wasm-bindgen` and carry every `fetch` option Cloudflare has (image resizing, Polish,
//! ...), which cost about 29 KB of the gzipped bundle for the four calls edge-isr makes (these
//! helpers in their place saved 18 KB; BENCHMARKS.md has the history). A plain object with two
//! or three fields, set with `Reflect`, does the same job.

use crate::http::{header_text, Headers};
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// `object[name]`.
pub fn get(object: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    Reflect::get(object, &JsValue::from_str(name))
}

/// A plain object with the given fields (`undefined` values are left out, as JavaScript
/// options objects expect).
pub fn object(fields: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (name, value) in fields {
        if !value.is_undefined() {
            Reflect::set(&o, &JsValue::from_str(name), value)?;
        }
    }
    Ok(o)
}

/// Calls `object.method(...args)` and awaits the promise it returns.
pub async fn call_async(object: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let function: Function = get(object, method)?.dyn_into().map_err(|_| JsValue::from_str(&format!("{method} is not a function")))?;
    let promise: Promise = match args {
        [a] => function.call1(object, a),
        [a, b] => function.call2(object, a, b),
        [a, b, c] => function.call3(object, a, b, c),
        _ => function.apply(object, &args.iter().collect::<Array>()),
    }?
    .dyn_into()?;
    JsFuture::from(promise).await
}

/// Calls `object.method(...args)` and returns what it returns (no promise).
pub fn call_sync(object: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let function: Function = get(object, method)?.dyn_into().map_err(|_| JsValue::from_str(&format!("{method} is not a function")))?;
    function.apply(object, &args.iter().collect::<Array>())
}

/// An error thrown by JavaScript, as text.
pub fn error_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

// Headers cross between wasm and JavaScript as one string (`crate::http::header_text`).
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function headers_text(headers) {
  let text = "";
  for (const [name, value] of headers) text += name + "\n" + value + "\n";
  return text;
}
export function request_text(request) {
  return request.method + "\n" + request.url + "\n" + headers_text(request.headers);
}
const CACHE_PATH_HEADERS = ["authorization", "cookie", "accept", "if-none-match"];
export function request_view_text(request) {
  const headers = request.headers;
  let text = request.method + "\n" + request.url + "\n";
  for (const name of CACHE_PATH_HEADERS) {
    const value = headers.get(name);
    if (value !== null) text += name + "\n" + value + "\n";
  }
  return text;
}
function headers_of(text) {
  const headers = new Headers();
  const parts = text.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  return headers;
}
export function response_of(body, status, text) {
  try {
    return new Response(body, { status, headers: headers_of(text) });
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}
const KEPT = [];
export function keep_headers(number, text) {
  try {
    const at = text.indexOf("\0");
    KEPT[number] = { headers: headers_of(text.slice(0, at)), tail: text.slice(at + 1).split("\n") };
    return true;
  } catch (e) {
    return false;
  }
}
export function response_from_kept(body, status, number, first, second) {
  try {
    const kept = KEPT[number];
    const response = new Response(body, { status, headers: kept.headers });
    const tail = kept.tail;
    if (tail.length > 2) {
      const headers = response.headers;
      headers.append(tail[0], first < 0 ? tail[1] : tail[1] + first);
      if (tail.length > 4) headers.append(tail[2], second < 0 ? tail[3] : tail[3] + second);
    }
    return response;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}
const STREAM = { type: "stream" };
export function kv_get_to_serve(namespace, key) {
  try {
    return namespace.getWithMetadata(key, STREAM);
  } catch (e) {
    return Promise.reject(e);
  }
}
"#)]
extern "C" {
    fn headers_text(headers: &web_sys::Headers) -> String;
    /// A request's method, URL and headers in one string: `method\nurl\n` then as [`headers_from`].
    pub fn request_text(request: &web_sys::Request) -> String;
    /// [`request_text`] with only the headers the cache path reads
    /// ([`crate::rules::policy::CACHE_PATH_HEADERS`], which the snippet's list must equal: a
    /// test in `rules::policy` checks): four `get`s rather than a walk over every header.
    pub fn request_view_text(request: &web_sys::Request) -> String;
    /// `new Response(body, {status, headers})`, the headers given as [`header_text::as_text`] gives
    /// them; the `Error` instead when `Response` refuses them. The snippets catch their own
    /// exceptions (rather than wasm-bindgen's `catch`, a wrapper with `apply` around every
    /// call, and a JavaScript exception must never unwind through wasm frames).
    pub fn response_of(body: &JsValue, status: u16, text: &str) -> JsValue;
    /// Keeps the set `text` ([`header_text::Split::kept`]) under `number`, replacing what was
    /// kept there, for [`response_from_kept`]; `false` when `Headers` refuses its entries.
    pub fn keep_headers(number: u32, text: &str) -> bool;
    /// [`response_of`] with the set kept under `number`, its per-answer entries completed with
    /// `first` and `second` (negative: no number), as [`header_text::Split::headers`] does.
    pub fn response_from_kept(body: &JsValue, status: u16, number: u32, first: f64, second: f64) -> JsValue;
    /// `namespace.getWithMetadata(key, {type: "stream"})`: KV's promise, or a rejected one when
    /// the call throws.
    pub fn kv_get_to_serve(namespace: &JsValue, key: &JsValue) -> js_sys::Promise;
}

/// The name/value pairs of a `Headers` object, in its order (names lower-case, as `fetch`
/// gives them).
pub fn headers_from(headers: &web_sys::Headers) -> Headers {
    header_text::of_text(&headers_text(headers))
}

/// A `Headers` object holding the core's headers.
pub fn headers_to(headers: &Headers) -> Result<web_sys::Headers, JsValue> {
    let out = web_sys::Headers::new()?;
    for (name, value) in headers.iter() {
        out.append(name, value)?;
    }
    Ok(out)
}

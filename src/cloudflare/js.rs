//! Small helpers for calling the runtime's JavaScript APIs (KV and queue bindings, `fetch`)
//! directly.
//!
//! Why not through the `worker` crate's wrappers: those build their option objects with
//! `serde-wasm-bindgen` and carry every `fetch` option Cloudflare has (image resizing, Polish,
//! ...), which cost about 29 KB of the gzipped bundle for the four calls edge-isr makes (these
//! helpers in their place saved 18 KB; BENCHMARKS.md has the history). A plain object with two
//! or three fields, set with `Reflect`, does the same job.

use crate::http::Headers;
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

/// The name/value pairs of a `Headers` object, in its order (names lower-case, as `fetch`
/// gives them).
pub fn headers_from(headers: &web_sys::Headers) -> Headers {
    let Ok(Some(entries)) = js_sys::try_iter(headers) else {
        return Headers::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pair: Array = entry.unchecked_into();
            Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
        })
        .collect()
}

/// A `Headers` object holding the core's headers.
pub fn headers_to(headers: &Headers) -> Result<web_sys::Headers, JsValue> {
    let out = web_sys::Headers::new()?;
    for (name, value) in headers.iter() {
        out.append(name, value)?;
    }
    Ok(out)
}

//! Workers Cache purges through `ctx.cache.purge({ tags, pathPrefixes, purgeEverything })`,
//! feature-detected: `ctx.cache` is absent in `wrangler dev` / miniflare and on older
//! compatibility dates, and then nothing is purged and nothing fails ([`CachePurger::available`]
//! is false; the header rule then keeps tier copies short, see [`crate::tier::headers`]).
//!
//! What Cloudflare's "Purging the cache" page says (checked 2026-12-03): `pathPrefixes` are
//! paths without scheme or host (the host is not part of the cache key), which is what the
//! planner sends; and `purge()` *resolves* to `{ success, errors: [{ code, message }] }`: a
//! refused purge (the rate limit included) is `success: false`, not a rejected promise. So the
//! result is read, and only `success: true` (or no result object at all) counts as purged.

use crate::cloudflare::js;
use crate::tier::purge::{PurgeError, PurgeRequest};
use crate::tier::send::CachePurger;
use futures_util::future::LocalBoxFuture;
use js_sys::{Array, Function};
use wasm_bindgen::{JsCast, JsValue};
use worker::Context;

/// `ctx.cache`, if this invocation has one with a `purge` method.
pub struct WorkersCachePurger {
    cache: Option<JsValue>,
}

impl WorkersCachePurger {
    /// Looks for `ctx.cache.purge` on an invocation's context.
    pub fn detect(ctx: &Context) -> Self {
        let ctx: &JsValue = ctx.as_ref().as_ref();
        let cache = js::get(ctx, "cache")
            .ok()
            .filter(|c| !c.is_undefined() && !c.is_null())
            .filter(|c| js::get(c, "purge").ok().is_some_and(|p| p.is_instance_of::<Function>()));
        WorkersCachePurger { cache }
    }
}

fn classify(message: String) -> PurgeError {
    if message.to_ascii_lowercase().contains("rate") {
        PurgeError::RateLimited
    } else {
        PurgeError::Failed(message)
    }
}

/// The outcome `purge()` resolved to: `{ success: false, errors }` is a failure.
fn outcome(result: &JsValue) -> Result<(), PurgeError> {
    if !result.is_object() {
        return Ok(());
    }
    let success = js::get(result, "success").unwrap_or(JsValue::UNDEFINED);
    if success.is_undefined() || success.as_bool() == Some(true) {
        return Ok(());
    }
    let errors = js::get(result, "errors").ok().filter(Array::is_array).map(|e| Array::from(&e));
    let message = errors
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = js::get(&e, "code").ok().and_then(|c| c.as_f64()).map(|c| format!("{c} ")).unwrap_or_default();
                    let text = js::get(&e, "message").ok().and_then(|m| m.as_string()).unwrap_or_default();
                    format!("{code}{text}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "purge() answered success: false".to_string());
    Err(classify(message))
}

fn strings(values: &[String]) -> JsValue {
    values.iter().map(|v| JsValue::from_str(v)).collect::<Array>().into()
}

impl CachePurger for WorkersCachePurger {
    fn available(&self) -> bool {
        self.cache.is_some()
    }

    fn purge<'a>(&'a self, request: &'a PurgeRequest) -> LocalBoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let Some(cache) = &self.cache else {
                return Ok(());
            };
            let tags = if request.tags.is_empty() { JsValue::UNDEFINED } else { strings(&request.tags) };
            let prefixes = if request.path_prefixes.is_empty() { JsValue::UNDEFINED } else { strings(&request.path_prefixes) };
            let everything = if request.purge_everything { JsValue::TRUE } else { JsValue::UNDEFINED };
            let options = js::object(&[("tags", tags), ("pathPrefixes", prefixes), ("purgeEverything", everything)])
                .map_err(|e| PurgeError::Failed(js::error_message(&e)))?;
            match js::call_async(cache, "purge", &[options.into()]).await {
                Ok(result) => outcome(&result),
                Err(e) => Err(classify(js::error_message(&e))),
            }
        })
    }
}

//! The visitor's request without Rust's async executor, wherever it can be: edge-isr's entry
//! point (`src/cloudflare/shim.mjs`) calls [`begin`] for every request, chains the page's KV
//! read with `.then`, and hands what it read to [`after_read`] (or [`read_failed`]). A HIT, a
//! STALE or a 304 is then answered by two plain calls into wasm and one promise.
//!
//! Why: each `await` of a Rust future on Workers goes through wasm-bindgen's executor: a
//! promise for the handler's result, a task, two closures per awaited promise (kept alive by a
//! `FinalizationRegistry`), `queueMicrotask` to wake the task. For a 2 KiB HIT that was about
//! as much CPU as the rest of its work (BENCHMARKS.md, "HIT path"). The engine's two steps
//! ([`crate::engine::Engine::begin`], [`crate::engine::Engine::after_read`]) never await;
//! everything that needs more I/O (a MISS, the webhook, a BYPASS) is answered by
//! [`crate::engine::Engine::answer_later`] through the executor, as before.
//!
//! Between the two calls the request waits in [`WAITING`], under a number the entry point
//! hands back with the request. A panic gives the next request a new wasm instance, and the
//! requests waiting in the old one are lost with it: [`after_read`] answers `undefined` for a
//! number it does not know, or that a request of the new instance now waits under
//! ([`Waiting`]), and the entry point then takes the request again through the `fetch` export.
//!
//! The exports take only JavaScript values and numbers and return one JavaScript value: no
//! `Result`, no `String` argument. wasm-bindgen (0.2.130) gives such exports a return area on
//! the wasm stack, and copies string arguments into wasm memory, *before* its reinit check: on
//! the first call after a crash both land in the old instance's memory while the call runs in
//! the new one, whose stack pointer the wrapper then moves past the top of its stack (seen
//! here: every later request read a corrupted key). Plain values avoid both.

use super::convert;
use super::kv::WorkersKv;
use super::runtime::WaitUntil;
use super::service_origin::SiteOrigin;
use crate::engine::waiting::Waiting;
use crate::engine::{AfterRead, Begun, Engine, PendingRead};
use crate::site::Site;
use crate::store::{StoreError, StoredValue};
use std::cell::RefCell;
use wasm_bindgen::JsValue;
use worker::{Context, Env};

type WorkersEngine = Engine<WorkersKv, SiteOrigin>;

thread_local! {
    /// Requests whose page read is in flight in JavaScript (see [`Waiting`] for why each is
    /// kept with the runtime's request object).
    static WAITING: RefCell<Waiting<(WorkersEngine, PendingRead), JsValue>> = RefCell::new(Waiting::default());
}

/// Step 1. Returns either `[number, promise of the KV read]` (the entry point then calls
/// [`after_read`] with what the promise gives, or [`read_failed`]), or the answer itself: a
/// promise of the `Response` for requests that need more than one read, or (a configuration
/// error) the `Response` or the `Error` of [`convert::to_answer`].
pub fn begin<E: std::fmt::Display + 'static>(req: web_sys::Request, env: Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> JsValue {
    let engine = match super::build_engine(&env, WaitUntil::Request(ctx), make_site) {
        Ok(engine) => engine,
        Err(e) => return convert::to_answer(super::configuration_error(&e)),
    };
    if super::PANIC_ROUTE.get() && req.url().ends_with(super::E2E_PANIC_PATH) {
        super::panic_now();
    }
    let raw = Clone::clone(&req); // the same JavaScript object
    // What the cache path reads first; the whole request only when that is not enough.
    let begun = match engine.begin_view(convert::from_web_request_view(&req)) {
        Some(begun) => begun,
        None => engine.begin(convert::from_web_request(req)),
    };
    match begun {
        Begun::Read(pending) => match engine.store.start_get_to_serve(pending.page_key()) {
            Ok(read) => {
                let number = WAITING.with(|w| w.borrow_mut().park(raw.into(), (engine, pending)));
                js_sys::Array::of2(&JsValue::from(number), &read.into()).into()
            }
            Err(e) => finish(engine, pending, Err(e)),
        },
        Begun::Later(later) => wasm_bindgen_futures::future_to_promise(async move {
            let resp = engine.answer_later(later).await;
            super::discard_after(&engine, &raw);
            Ok(convert::to_web_response(resp)?.into())
        })
        .into(),
    }
}

/// Step 2 of `request`, with what KV's `getWithMetadata` gave: `value` (a stream, or `null`)
/// and its metadata as JSON text (or `undefined`). `undefined` when `request` is not waiting
/// here under `number` (see the module's doc).
pub fn after_read(number: u32, request: JsValue, value: JsValue, metadata: JsValue) -> JsValue {
    let Some((engine, pending)) = WAITING.with(|w| w.borrow_mut().take(number, &request)) else {
        return JsValue::UNDEFINED;
    };
    let metadata = metadata.as_string();
    let read = if value.is_null() || value.is_undefined() {
        Ok(None)
    } else {
        Ok(Some(StoredValue { value: super::kv::served_body(value), metadata }))
    };
    finish(engine, pending, read)
}

/// Step 2 when the KV read failed (`error` is what it threw).
pub fn read_failed(number: u32, request: JsValue, error: JsValue) -> JsValue {
    let Some((engine, pending)) = WAITING.with(|w| w.borrow_mut().take(number, &request)) else {
        return JsValue::UNDEFINED;
    };
    finish(engine, pending, Err(super::kv::classify_js(error)))
}

fn finish(engine: WorkersEngine, pending: PendingRead, read: Result<Option<StoredValue>, StoreError>) -> JsValue {
    match engine.after_read(pending, read) {
        AfterRead::Answer(resp) => convert::to_answer_from_store(resp),
        AfterRead::Later(later) => wasm_bindgen_futures::future_to_promise(async move {
            let resp = engine.answer_later(later).await;
            Ok(convert::to_web_response(resp)?.into())
        })
        .into(),
    }
}

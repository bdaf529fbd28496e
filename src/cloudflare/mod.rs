//! The Cloudflare Workers adapter: glue from the runtime to the core, nothing else.
//!
//! Route → service → core: the fetch handler reads configuration, builds an [`Engine`] on
//! Workers KV, `fetch`, `Date.now()` and `ctx.waitUntil`, and converts requests and responses.
//! No cache rule lives here.

mod convert;
mod kv;
mod origin;
mod runtime;

use crate::config::Config;
use crate::engine::{Engine, Isolate};
use crate::http::Response as CoreResponse;
use std::rc::Rc;
use worker::{event, Context, Env, Request, Response, Result};

/// Name of the KV namespace binding that holds pages (see `wrangler.toml`).
pub const PAGES_BINDING: &str = "PAGES";

thread_local! {
    /// State shared by every request this isolate serves: renders and regenerations in flight.
    static ISOLATE: Rc<Isolate> = Isolate::new();
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let answer = match handle(req, &env, ctx).await {
        Ok(resp) => resp,
        Err(e) => {
            worker::console_error!("edge-isr: {e}");
            CoreResponse::json_error(500, &e)
        }
    };
    convert::to_worker_response(answer)
}

async fn handle(req: Request, env: &Env, ctx: Context) -> std::result::Result<CoreResponse, String> {
    let config = Config::from_vars(|name| env.var(name).ok().map(|v| v.to_string())).map_err(|e| e.to_string())?;
    let kv = env
        .kv(PAGES_BINDING)
        .map_err(|e| format!("KV binding {PAGES_BINDING} is missing: {e}"))?;
    let request = convert::from_worker_request(req).await?;
    let engine = Engine::new(
        Rc::new(config),
        Rc::new(kv::WorkersKv::new(kv)),
        Rc::new(origin::FetchOrigin),
        Rc::new(runtime::WorkersClock),
        Rc::new(runtime::WaitUntil::new(ctx)),
        Rc::new(runtime::ConsoleLogger),
        ISOLATE.with(Rc::clone),
    );
    Ok(engine.handle(request).await)
}

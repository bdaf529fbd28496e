//! The Cloudflare Workers adapter: glue from the runtime to the core, nothing else.
//!
//! Route → service → core: the fetch handler reads configuration, builds an [`Engine`] on
//! Workers KV, `fetch`, `Date.now()` and `ctx.waitUntil`, and converts requests and responses.
//! No cache rule lives here.

mod convert;
mod jobs;
mod kv;
mod origin;
mod runtime;

use crate::config::Config;
use crate::engine::{Engine, Isolate};
use crate::http::Response as CoreResponse;
use std::rc::Rc;
use crate::invalidation::SweepJob;
use worker::{event, Context, Env, MessageBatch, Request, Response, Result};

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
    let engine = build_engine(env, ctx)?;
    let request = convert::from_worker_request(req).await?;
    Ok(engine.handle(request).await)
}

/// Queue consumer: continues invalidations (one job per message, one message per invocation).
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
    let engine = build_engine(&env, ctx).map_err(worker::Error::RustError)?;
    for message in batch.messages()? {
        match serde_json::from_str::<SweepJob>(message.body()) {
            Ok(job) => {
                let report = engine.run_job(job).await;
                worker::console_log!("edge-isr: invalidation job reached {} page(s), marked {}", report.pages, report.marked);
            }
            // A message we cannot read will never become readable: drop it, loudly.
            Err(e) => worker::console_error!("edge-isr: dropping unreadable invalidation job: {e}"),
        }
    }
    batch.ack_all();
    Ok(())
}

/// The engine on this request's bindings and the isolate's shared state.
fn build_engine(env: &Env, ctx: Context) -> std::result::Result<Engine<kv::WorkersKv, origin::FetchOrigin>, String> {
    // `[vars]` entries and secrets (REVALIDATE_SECRET) are both string bindings on `env`.
    let lookup = |name: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .or_else(|_| env.secret(name).map(|v| v.to_string()))
            .ok()
    };
    let config = Config::from_vars(lookup).map_err(|e| e.to_string())?;
    let kv = env
        .kv(PAGES_BINDING)
        .map_err(|e| format!("KV binding {PAGES_BINDING} is missing: {e}"))?;
    let engine = Engine::new(
        Rc::new(config),
        Rc::new(kv::WorkersKv::new(kv)),
        Rc::new(origin::FetchOrigin),
        Rc::new(runtime::WorkersClock),
        Rc::new(runtime::WaitUntil::new(ctx)),
        Rc::new(runtime::ConsoleLogger),
        ISOLATE.with(Rc::clone),
    );
    Ok(match env.queue(jobs::QUEUE_BINDING) {
        Ok(queue) => engine.with_jobs(Rc::new(jobs::WorkersQueue::new(queue))),
        Err(_) => engine,
    })
}

//! The Cloudflare Workers adapter: glue from the runtime to the core, nothing else.
//!
//! Route → service → core: each handler reads configuration, builds an [`Engine`] on Workers
//! KV, `fetch`, `Date.now()` and `ctx.waitUntil`, and converts requests and responses. No cache
//! rule lives here.
//!
//! Use in your own worker crate (with `edge-isr = { default-features = false }`, so this crate's
//! own entry points are left out):
//!
//! ```ignore
//! use edge_isr::site::{Page, Route, Site};
//! use worker::*;
//!
//! fn site() -> Site {
//!     Site::new().route("/hello/:name", Route::render(|cx| async move {
//!         Ok(Page::html(format!("Hello, {}", cx.param("name"))))
//!     }).revalidate(60).tags(["hello-{name}"]))
//! }
//!
//! // The runtime's own request and response types (`worker::web_sys`): edge-isr answers with a
//! // response the runtime sends as it is.
//! #[event(fetch)]
//! async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
//!     edge_isr::cloudflare::fetch(req, env, ctx, site).await
//! }
//! ```

mod convert;
mod jobs;
mod js;
mod kv;
mod origin;
mod runtime;

use crate::rules::config::Config;
use crate::engine::{Engine, Isolate};
use crate::http::Response as CoreResponse;
use crate::engine::jobs::Job;
use crate::site::{LazySite, Route, Site};
use runtime::WaitUntil;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{Context, Env, MessageBatch, Result, ScheduleContext, ScheduledEvent};

/// Name of the KV namespace binding that holds pages (see `wrangler.toml`).
pub const PAGES_BINDING: &str = "PAGES";

thread_local! {
    /// State shared by every request this isolate serves: renders and regenerations in flight.
    static ISOLATE: Rc<Isolate> = Isolate::new();
    /// The configuration, read from `[vars]` and secrets on the isolate's first request (they
    /// cannot change during an isolate's life: a new deployment starts new isolates).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
    /// The site, made (templates compiled, `site.json` read) when a request first needs a
    /// route: never for a HIT.
    static SITE: RefCell<Option<Rc<LazySite>>> = const { RefCell::new(None) };
    /// The bindings' parts of an engine, made once per `env` object (see [`Bindings`]).
    static BINDINGS: RefCell<Option<Bindings>> = const { RefCell::new(None) };
    /// Whether `E2E_PANIC_ROUTE` is `1` (read with the configuration): see [`E2E_PANIC_PATH`].
    static PANIC_ROUTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A path that panics, for the e2e suite's test of the entry point's crash recovery
/// (`src/cloudflare/shim.mjs`). It exists only when the variable `E2E_PANIC_ROUTE` is `1`, which
/// only the e2e suite sets (never `wrangler.toml`); otherwise the path is a page like any other.
pub const E2E_PANIC_PATH: &str = "/__e2e/panic";

/// The engine's parts that come from `env` and live as long as it: the KV namespace and the
/// queue. Workers hands every request of an isolate the same `env` object, so they are looked
/// up once; they are kept with the `env` they came from and looked up again if another one
/// arrives (one identity comparison per request instead of two property lookups and two
/// allocations).
struct Bindings {
    env: wasm_bindgen::JsValue,
    kv: Rc<kv::WorkersKv>,
    jobs: Option<Rc<dyn crate::engine::jobs::JobQueue>>,
}

/// The panic hook of a worker built on edge-isr's entry point (`src/cloudflare/shim.mjs`): logs
/// the panic (`console_error_panic_hook`), then schedules wasm-bindgen's reinit, because a panic
/// aborts and traps this wasm instance: the next request runs on a new one.
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    console_error_panic_hook::hook(info);
    wasm_bindgen::handler::schedule_reinit();
}

/// The worker's `fetch` handler: answers one request with the engine serving `make_site`'s
/// routes (a configuration error is a JSON 500, and logged).
pub async fn fetch<E: std::fmt::Display + 'static>(req: web_sys::Request, env: Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> Result<web_sys::Response> {
    let answer = match handle(req, &env, ctx, make_site).await {
        Ok(resp) => resp,
        Err(e) => {
            worker::console_error!("edge-isr: {e}");
            CoreResponse::json_error(500, &e)
        }
    };
    Ok(convert::to_web_response(answer)?)
}

async fn handle<E: std::fmt::Display + 'static>(req: web_sys::Request, env: &Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> std::result::Result<CoreResponse, String> {
    let engine = build_engine(env, WaitUntil::Request(ctx), make_site)?;
    if PANIC_ROUTE.get() && req.url().ends_with(E2E_PANIC_PATH) {
        // With the isolate's bindings borrowed, as a real panic in the middle of an update
        // leaves state behind (a panic aborts: nothing unwinds): on the same instance, every
        // later request would fail.
        BINDINGS.with(|b| {
            let _held = b.borrow_mut();
            panic!("{E2E_PANIC_PATH}: the panic E2E_PANIC_ROUTE=1 asks for");
        });
    }
    let request = convert::from_web_request(req).await?;
    Ok(engine.handle(request).await)
}

/// The worker's `queue` handler: runs invalidation chunks and pre-render batches (one job per
/// message, one message per invocation).
pub async fn queue<E: std::fmt::Display + 'static>(batch: MessageBatch<String>, env: Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> Result<()> {
    let engine = build_engine(&env, WaitUntil::Request(ctx), make_site).map_err(worker::Error::RustError)?;
    // Raw bodies: each is the job's JSON text (see `jobs`), read without serde-wasm-bindgen.
    for message in batch.raw_iter() {
        let text = message.body().as_string().unwrap_or_default();
        match serde_json::from_str::<Job>(&text) {
            Ok(Job::Sweep(job)) => {
                let report = engine.run_job(job).await;
                worker::console_log!("edge-isr: invalidation job reached {} page(s), marked {}", report.pages, report.marked);
            }
            Ok(Job::Prerender(job)) => {
                let report = engine.run_prerender(job).await;
                worker::console_log!("edge-isr: pre-render batch rendered {} page(s), {} already fresh", report.rendered, report.fresh);
            }
            // A message we cannot read will never become readable: drop it, loudly.
            Err(e) => worker::console_error!("edge-isr: dropping unreadable job: {e}"),
        }
    }
    batch.ack_all();
    Ok(())
}

/// The worker's `scheduled` handler (`[triggers] crons`): pre-renders the static pages of the
/// first `CACHE_HOSTS` host.
pub async fn scheduled<E: std::fmt::Display + 'static>(event: ScheduledEvent, env: Env, ctx: ScheduleContext, make_site: fn() -> std::result::Result<Site, E>) {
    let engine = match build_engine(&env, WaitUntil::Scheduled(ctx), make_site) {
        Ok(e) => e,
        Err(e) => return worker::console_error!("edge-isr: {e}"),
    };
    let Some(host) = engine_host(&env) else {
        return worker::console_error!("edge-isr: cron {}: set CACHE_HOSTS so that pre-rendered pages get the site's host", event.cron());
    };
    let report = engine.prerender(&host).await;
    worker::console_log!("edge-isr: cron {}: {}", event.cron(), serde_json::to_string(&report).unwrap_or_default());
}

fn engine_host(env: &Env) -> Option<String> {
    let hosts = env.var("CACHE_HOSTS").ok()?.to_string();
    hosts.split(',').map(str::trim).find(|h| !h.is_empty()).map(str::to_ascii_lowercase)
}

/// The engine on this invocation's bindings and the isolate's shared state.
fn build_engine<E: std::fmt::Display + 'static>(env: &Env, background: WaitUntil, make_site: fn() -> std::result::Result<Site, E>) -> std::result::Result<Engine<kv::WorkersKv, origin::FetchOrigin>, String> {
    // `[vars]` entries and secrets (REVALIDATE_SECRET) are both string bindings on `env`.
    let lookup = |name: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .or_else(|_| env.secret(name).map(|v| v.to_string()))
            .ok()
    };
    let config = match CONFIG.with(|c| c.borrow().clone()) {
        Some(config) => config,
        None => {
            let config = Rc::new(Config::from_vars(&lookup).map_err(|e| e.to_string())?);
            PANIC_ROUTE.set(lookup("E2E_PANIC_ROUTE").as_deref() == Some("1"));
            CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
            config
        }
    };
    let (kv, jobs) = isolate_bindings(env)?;
    let site = isolate_site_with(make_site);
    let engine = Engine::new(
        config,
        kv,
        Rc::new(origin::FetchOrigin),
        Rc::new(runtime::WorkersClock),
        Rc::new(background),
        Rc::new(runtime::ConsoleLogger),
        ISOLATE.with(Rc::clone),
    )
    .with_lazy_site(site);
    Ok(match jobs {
        Some(jobs) => engine.with_jobs(jobs),
        None => engine,
    })
}

type BindingParts = (Rc<kv::WorkersKv>, Option<Rc<dyn crate::engine::jobs::JobQueue>>);

/// The KV namespace and the queue of `env`, looked up on the first request that brings this
/// `env` object (see [`Bindings`]).
fn isolate_bindings(env: &Env) -> std::result::Result<BindingParts, String> {
    let env = env.as_ref();
    if let Some(parts) = BINDINGS.with(|b| b.borrow().as_ref().filter(|b| &b.env == env).map(|b| (b.kv.clone(), b.jobs.clone()))) {
        return Ok(parts);
    }
    let binding = js::get(env, PAGES_BINDING).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
    let kv = Rc::new(kv::WorkersKv::new(binding).map_err(|e| format!("KV binding {PAGES_BINDING}: {e} (see wrangler.toml)"))?);
    let jobs: Option<Rc<dyn crate::engine::jobs::JobQueue>> = match js::get(env, jobs::QUEUE_BINDING) {
        Ok(queue) if queue.is_object() => Some(Rc::new(jobs::WorkersQueue::new(queue))),
        _ => None,
    };
    BINDINGS.with(|b| *b.borrow_mut() = Some(Bindings { env: env.clone(), kv: kv.clone(), jobs: jobs.clone() }));
    Ok((kv, jobs))
}

/// The isolate's site, made by `make_site` when first used. A site that cannot be made is
/// logged, and every page that needs rendering answers the error page (500, never stored);
/// stored pages are still served.
fn isolate_site_with<E: std::fmt::Display + 'static>(make_site: fn() -> std::result::Result<Site, E>) -> Rc<LazySite> {
    if let Some(site) = SITE.with(|s| s.borrow().clone()) {
        return site;
    }
    let site = Rc::new(LazySite::new(move || match make_site() {
        Ok(site) => Rc::new(site),
        Err(e) => {
            let problem = format!("the site's configuration: {e}");
            worker::console_error!("edge-isr: {problem}");
            Rc::new(Site::new().fallback(Route::render(move |_| {
                let problem = problem.clone();
                async move { Err(crate::site::RenderError::Template(problem)) }
            })))
        }
    }));
    SITE.with(|s| *s.borrow_mut() = Some(site.clone()));
    site
}

/// This crate's own worker: the demo site of `src/app.rs` and `www/`.
#[cfg(feature = "demo")]
mod entry {
    use worker::{event, web_sys, Context, Env, MessageBatch, Result, ScheduleContext, ScheduledEvent};

    #[event(start)]
    fn start() {
        std::panic::set_hook(Box::new(super::panic_hook));
    }

    #[event(fetch)]
    async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<web_sys::Response> {
        super::fetch(req, env, ctx, crate::app::site).await
    }

    #[event(queue)]
    async fn queue(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
        super::queue(batch, env, ctx, crate::app::site).await
    }

    #[event(scheduled)]
    async fn scheduled(event: ScheduledEvent, env: Env, ctx: ScheduleContext) {
        super::scheduled(event, env, ctx, crate::app::site).await
    }
}

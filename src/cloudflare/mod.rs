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

mod cache_purge;
mod convert;
mod coordinator;
pub mod fast;
mod jobs;
mod js;
mod kv;
mod origin;
mod runtime;
mod service_origin;

use crate::rules::config::Config;
use crate::engine::{Engine, Isolate};
use crate::http::Response as CoreResponse;
use crate::engine::jobs::Job;
use crate::site::{LazySite, Route, Site};
use crate::runtime::log::{Level, Logger};
pub use coordinator::Coordinator;
use runtime::WaitUntil;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{Context, Env, MessageBatch, MessageExt, Result, ScheduleContext, ScheduledEvent};

/// Name of the KV namespace binding that holds pages (see `wrangler.toml`).
pub const PAGES_BINDING: &str = "PAGES";

thread_local! {
    /// State shared by every request this isolate serves: renders and regenerations in flight.
    static ISOLATE: Rc<Isolate> = {
        let isolate = Isolate::new();
        // Names this isolate's counter keys (engine::stats): random, so isolates never share one.
        isolate.stats.set_id(&format!("{:012x}", (js_sys::Math::random() * 2f64.powi(48)) as u64));
        isolate
    };
    /// The configuration, read from `[vars]` and secrets on the isolate's first request (they
    /// cannot change during an isolate's life: a new deployment starts new isolates).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
    /// The site, made (templates compiled, `site.json` read) when a request first needs a
    /// route: never for a HIT.
    static SITE: RefCell<Option<Rc<LazySite>>> = const { RefCell::new(None) };
    /// The bindings' parts of an engine, made once per `env` object (see [`Bindings`]).
    static BINDINGS: RefCell<Option<Bindings>> = const { RefCell::new(None) };
    /// The engine's clock and logger: one of each per isolate, not an allocation per request.
    static CLOCK: Rc<dyn crate::runtime::clock::Clock> = Rc::new(runtime::WorkersClock);
    static LOGGER: Rc<dyn Logger> = Rc::new(runtime::ConsoleLogger);
    /// Whether `E2E_PANIC_ROUTE` is `1` (read with the configuration): see [`E2E_PANIC_PATH`].
    static PANIC_ROUTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// TEST DOUBLE only (`WORKERS_CACHE_TEST_DOUBLE`): the recorder's rate limit, per isolate.
    static RECORDER_LIMITS: Rc<crate::tier::double::RecorderLimits> =
        crate::tier::double::RecorderLimits::new(crate::tier::purge::TokenBucket::workers_cache(worker::Date::now().as_millis()));
}

/// A path that panics, for the e2e suite's test of the entry point's crash recovery
/// (`src/cloudflare/shim.mjs`). It exists only when the variable `E2E_PANIC_ROUTE` is `1`, which
/// only the e2e suite sets (never `wrangler.toml`); otherwise the path is a page like any other.
pub const E2E_PANIC_PATH: &str = "/__e2e/panic";

/// The engine's parts that come from `env` and live as long as it: the KV namespace, the
/// origin, the queue and the coordinator. Workers hands every request of an isolate the same
/// `env` object, so they are looked up once; they are kept with the `env` they came from and
/// looked up again if another one arrives (one identity comparison per request instead of
/// property lookups and allocations).
struct Bindings {
    env: wasm_bindgen::JsValue,
    kv: Rc<kv::WorkersKv>,
    origin: Rc<service_origin::SiteOrigin>,
    jobs: Option<Rc<dyn crate::engine::jobs::JobQueue>>,
    coordinator: Option<Rc<dyn crate::coordination::coordinator::Coordinator>>,
}

/// The panic hook of a worker built on edge-isr's entry point (`src/cloudflare/shim.mjs`): logs
/// the panic (`console_error_panic_hook`), then schedules wasm-bindgen's reinit, because a panic
/// aborts and traps this wasm instance: the next request runs on a new one.
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    console_error_panic_hook::hook(info);
    wasm_bindgen::handler::schedule_reinit();
}

/// One JSON log line from the adapter itself (see [`runtime::ConsoleLogger`]).
fn log(level: Level, event: &str, key: &str, reason: &str) {
    runtime::ConsoleLogger.event(level, event, key, reason);
}

/// The worker's `fetch` handler: answers one request with the engine serving `make_site`'s
/// routes (a configuration error is a JSON 500, and logged). Every step goes through Rust's
/// async executor; edge-isr's own entry point takes the [`fast`] path instead, and this one
/// only for what that cannot take.
pub async fn fetch<E: std::fmt::Display + 'static>(req: web_sys::Request, env: Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> Result<web_sys::Response> {
    let answer = match handle(req, &env, ctx, make_site).await {
        Ok(resp) => resp,
        Err(e) => configuration_error(&e),
    };
    Ok(convert::to_web_response(answer)?)
}

/// The answer when no engine can be built (a configuration error): a JSON 500, logged.
fn configuration_error(e: &str) -> CoreResponse {
    log(Level::Error, "request_failed", "", e);
    CoreResponse::json_error(500, e).with_header(crate::engine::SERVER_TIMING_HEADER, "cache;desc=BYPASS")
}

async fn handle<E: std::fmt::Display + 'static>(req: web_sys::Request, env: &Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> std::result::Result<CoreResponse, String> {
    let engine = build_engine(env, WaitUntil::Request(ctx), make_site)?;
    if PANIC_ROUTE.get() && req.url().ends_with(E2E_PANIC_PATH) {
        panic_now();
    }
    let raw = Clone::clone(&req); // the same JavaScript object (not Request.clone(), which tees the body)
    let answer = engine.handle(convert::from_web_request(req)).await;
    discard_after(&engine, &raw);
    Ok(answer)
}

/// The panic of [`E2E_PANIC_PATH`], with the isolate's bindings borrowed, as a real panic in
/// the middle of an update leaves state behind (a panic aborts: nothing unwinds): on the same
/// instance, every later request would fail.
fn panic_now() -> ! {
    BINDINGS.with(|b| {
        let _held = b.borrow_mut();
        panic!("{E2E_PANIC_PATH}: the panic E2E_PANIC_ROUTE=1 asks for");
    })
}

/// A body nobody read (a refused upload) is read to its end and dropped after the answer, so
/// that the connection it came on can carry the next request.
fn discard_after<S: crate::store::KvStore + 'static, O: crate::runtime::origin::Origin + 'static>(engine: &Engine<S, O>, raw: &web_sys::Request) {
    if let Some(rest) = convert::discard_unread_body(raw) {
        crate::runtime::background::Background::spawn(engine.background.as_ref(), Box::pin(rest));
    }
}

/// The worker's `queue` handler: runs invalidation chunks and pre-render batches (one job per
/// message, one message per invocation).
pub async fn queue<E: std::fmt::Display + 'static>(batch: MessageBatch<String>, env: Env, ctx: Context, make_site: fn() -> std::result::Result<Site, E>) -> Result<()> {
    let engine = build_engine(&env, WaitUntil::Request(ctx), make_site).map_err(worker::Error::RustError)?;
    // Raw bodies: each is the job's JSON text (see `jobs`), read without serde-wasm-bindgen.
    // Each message is acknowledged or retried on its own: a job that could not finish is
    // delivered again (up to `max_retries`, then to the dead-letter queue, see wrangler.toml).
    for message in batch.raw_iter() {
        let text = message.body().as_string().unwrap_or_default();
        match serde_json::from_str::<Job>(&text) {
            Ok(job) => match engine.run_queued(job).await {
                Ok(summary) => {
                    log(Level::Info, "job_done", "", &summary.to_string());
                    message.ack();
                }
                Err(why) => {
                    log(Level::Error, "job_failed", "", &format!("{why}; the queue delivers the job again"));
                    message.retry();
                }
            },
            // A message we cannot read will never become readable: drop it, loudly.
            Err(e) => {
                log(Level::Error, "job_unreadable", "", &format!("dropping it: {e}"));
                message.ack();
            }
        }
    }
    Ok(())
}

/// The worker's `scheduled` handler (`[triggers] crons`): deletes what retired cache versions
/// left in KV, and pre-renders the static pages of the first `CACHE_HOSTS` host.
pub async fn scheduled<E: std::fmt::Display + 'static>(event: ScheduledEvent, env: Env, ctx: ScheduleContext, make_site: fn() -> std::result::Result<Site, E>) {
    let engine = match build_engine(&env, WaitUntil::Scheduled(ctx), make_site) {
        Ok(e) => e,
        Err(e) => return log(Level::Error, "cron_failed", &event.cron(), &e.to_string()),
    };
    let cleanup = engine.clean_old_versions().await;
    if !cleanup.retired.is_empty() || !cleanup.errors.is_empty() {
        log(Level::Info, "cron_cleanup", &event.cron(), &serde_json::to_string(&cleanup).unwrap_or_default());
    }
    let Some(host) = engine_host(&env) else {
        return log(Level::Error, "cron_no_host", &event.cron(), "set CACHE_HOSTS so that pre-rendered pages get the site's host");
    };
    let report = engine.prerender(&host).await;
    log(Level::Info, "cron_prerender", &event.cron(), &serde_json::to_string(&report).unwrap_or_default());
}

fn engine_host(env: &Env) -> Option<String> {
    let hosts = env.var("CACHE_HOSTS").ok()?.to_string();
    hosts.split(',').map(str::trim).find(|h| !h.is_empty()).map(str::to_ascii_lowercase)
}

/// The engine on this invocation's bindings and the isolate's shared state.
fn build_engine<E: std::fmt::Display + 'static>(env: &Env, background: WaitUntil, make_site: fn() -> std::result::Result<Site, E>) -> std::result::Result<Engine<kv::WorkersKv, service_origin::SiteOrigin>, String> {
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
            let config = Rc::new(Config::from_vars(lookup).map_err(|e| e.to_string())?);
            PANIC_ROUTE.set(lookup("E2E_PANIC_ROUTE").as_deref() == Some("1"));
            CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
            config
        }
    };
    let (kv, origin, jobs, coordinator) = isolate_bindings(env, &config)?;
    let site = isolate_site_with(make_site);
    let purger: Option<Rc<dyn crate::tier::send::CachePurger>> = match (&background, config.workers_cache) {
        (_, false) => None,
        // TEST DOUBLE: the local runtime has no ctx.cache; the e2e suite reads what would have been purged.
        (_, true) if config.workers_cache_test_double => Some(Rc::new(crate::tier::double::RecordingPurger::new(
            kv.clone(),
            CLOCK.with(Rc::clone),
            RECORDER_LIMITS.with(Rc::clone),
        ))),
        (WaitUntil::Request(ctx), true) => Some(Rc::new(cache_purge::WorkersCachePurger::detect(ctx))),
        (WaitUntil::Scheduled(_), true) => None,
    };
    let engine = Engine::new(config, kv, origin, CLOCK.with(Rc::clone), Rc::new(background), LOGGER.with(Rc::clone), ISOLATE.with(Rc::clone))
    .with_lazy_site(site);
    let engine = match purger {
        Some(p) => engine.with_purger(p),
        None => engine,
    };
    let engine = match coordinator {
        Some(c) => engine.with_coordinator(c),
        // Without it the engine runs on KV alone, and says so once per isolate.
        None => engine,
    };
    Ok(match jobs {
        Some(jobs) => engine.with_jobs(jobs),
        None => engine,
    })
}

type BindingParts = (
    Rc<kv::WorkersKv>,
    Rc<service_origin::SiteOrigin>,
    Option<Rc<dyn crate::engine::jobs::JobQueue>>,
    Option<Rc<dyn crate::coordination::coordinator::Coordinator>>,
);

/// The KV namespace, the origin (`ORIGIN_SERVICE`'s binding, if set), the queue and the
/// coordinator of `env`, looked up on the first request that brings this `env` object (see
/// [`Bindings`]; the configuration cannot change in an isolate's life).
fn isolate_bindings(env_object: &Env, config: &Config) -> std::result::Result<BindingParts, String> {
    let env = env_object.as_ref();
    let cached = BINDINGS.with(|b| b.borrow().as_ref().filter(|b| &b.env == env).map(|b| (b.kv.clone(), b.origin.clone(), b.jobs.clone(), b.coordinator.clone())));
    if let Some(parts) = cached {
        return Ok(parts);
    }
    let service = config.origin_service.as_deref().map(|name| service_origin::ServiceOrigin::from_env(env_object, name)).transpose()?;
    let origin = Rc::new(service_origin::SiteOrigin::new(service));
    let binding = js::get(env, PAGES_BINDING).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
    let kv = Rc::new(kv::WorkersKv::new(binding).map_err(|e| format!("KV binding {PAGES_BINDING}: {e} (see wrangler.toml)"))?);
    let jobs: Option<Rc<dyn crate::engine::jobs::JobQueue>> = match js::get(env, jobs::QUEUE_BINDING) {
        Ok(queue) if queue.is_object() => Some(Rc::new(jobs::WorkersQueue::new(queue))),
        _ => None,
    };
    let coordinator: Option<Rc<dyn crate::coordination::coordinator::Coordinator>> = match js::get(env, coordinator::COORDINATOR_BINDING) {
        Ok(namespace) if namespace.is_object() => Some(Rc::new(coordinator::DurableCoordinator::new(namespace))),
        _ => None,
    };
    BINDINGS.with(|b| {
        *b.borrow_mut() = Some(Bindings {
            env: env.clone(),
            kv: kv.clone(),
            origin: origin.clone(),
            jobs: jobs.clone(),
            coordinator: coordinator.clone(),
        })
    });
    Ok((kv, origin, jobs, coordinator))
}

fn isolate_site_with<E: std::fmt::Display + 'static>(make_site: fn() -> std::result::Result<Site, E>) -> Rc<LazySite> {
    if let Some(site) = SITE.with(|s| s.borrow().clone()) {
        return site;
    }
    let site = Rc::new(LazySite::new(move || match make_site() {
        Ok(site) => Rc::new(site),
        Err(e) => {
            let problem = format!("the site's configuration: {e}");
            log(Level::Error, "site_config_failed", "", &problem);
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

    // The fast path's steps, called by the entry point (src/cloudflare/shim.mjs): see `fast`.
    #[wasm_bindgen::prelude::wasm_bindgen]
    pub fn fetch_begin(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> wasm_bindgen::JsValue {
        super::runtime::with_one_clock_read(|| super::fast::begin(req, env, Context::new(ctx), crate::app::site))
    }

    #[wasm_bindgen::prelude::wasm_bindgen]
    pub fn fetch_after_read(number: u32, request: wasm_bindgen::JsValue, value: wasm_bindgen::JsValue, metadata: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        super::runtime::with_one_clock_read(|| super::fast::after_read(number, request, value, metadata))
    }

    #[wasm_bindgen::prelude::wasm_bindgen]
    pub fn fetch_read_failed(number: u32, request: wasm_bindgen::JsValue, error: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        super::runtime::with_one_clock_read(|| super::fast::read_failed(number, request, error))
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

//! edge-isr: Incremental Static Regeneration for any website, on Cloudflare Workers and KV.
//!
//! The crate has two halves:
//! - a platform-independent core (every module except `cloudflare`): cache keys, freshness,
//!   cacheability, the cache state machine ([`engine::Engine`]), behind small traits for the store
//!   ([`store::KvStore`]), the clock ([`clock::Clock`]), the origin ([`origin::Origin`]) and background
//!   work ([`background::Background`]). It builds and is tested natively with `cargo test`.
//! - a thin Cloudflare adapter (`cloudflare`, wasm32 only) that implements those traits with
//!   Workers KV, `fetch`, `Date.now()` and `ctx.waitUntil`.

pub mod app;
pub mod coordination;
pub mod engine;
pub mod http;
pub mod rules;
pub mod runtime;
pub mod site;
pub mod store;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod tier;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
pub mod cloudflare;

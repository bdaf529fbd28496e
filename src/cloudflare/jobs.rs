//! Invalidation work carried across invocations by a Cloudflare Queue.
//!
//! Each message is one [`Job`] (JSON text): an invalidation chunk or a pre-render batch. The consumer takes one message per invocation
//! (`max_batch_size = 1` in `wrangler.toml`), because each job is sized to use most of one
//! invocation's 1,000 KV operations.

use super::js;
use crate::engine::jobs::{Job, JobQueue};
use futures_util::future::LocalBoxFuture;
use wasm_bindgen::JsValue;

/// Name of the queue producer binding (see `wrangler.toml`).
pub const QUEUE_BINDING: &str = "INVALIDATIONS";

/// A [`JobQueue`] on a Cloudflare Queue producer binding.
pub struct WorkersQueue(JsValue);

impl WorkersQueue {
    /// Wraps a producer binding (the object `env.INVALIDATIONS` holds).
    pub fn new(binding: JsValue) -> Self {
        Self(binding)
    }
}

impl JobQueue for WorkersQueue {
    fn enqueue(&self, job: Job, delay_s: u32) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let text = serde_json::to_string(&job).map_err(|e| e.to_string())?;
            // `send(body, {delaySeconds})`: the body is the JSON text itself, a string.
            let options = js::object(&[("delaySeconds", delay_s.into())]).map_err(|e| js::error_message(&e))?;
            js::call_async(&self.0, "send", &[text.into(), options.into()]).await.map(drop).map_err(|e| js::error_message(&e))
        })
    }
}

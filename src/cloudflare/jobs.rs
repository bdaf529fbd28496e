//! Invalidation work carried across invocations by a Cloudflare Queue.
//!
//! Each message is one [`Job`] (JSON text): an invalidation chunk or a pre-render batch. The consumer takes one message per invocation
//! (`max_batch_size = 1` in `wrangler.toml`), because each job is sized to use most of one
//! invocation's 1,000 KV operations.

use crate::invalidation::{Job, JobQueue};
use futures_util::future::LocalBoxFuture;
use worker::{MessageBuilder, Queue};

/// Name of the queue producer binding (see `wrangler.toml`).
pub const QUEUE_BINDING: &str = "INVALIDATIONS";

/// A [`JobQueue`] on a Cloudflare Queue producer binding.
pub struct WorkersQueue(Queue);

impl WorkersQueue {
    /// Wraps a producer binding.
    pub fn new(queue: Queue) -> Self {
        Self(queue)
    }
}

impl JobQueue for WorkersQueue {
    fn enqueue(&self, job: Job, delay_s: u32) -> LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let text = serde_json::to_string(&job).map_err(|e| e.to_string())?;
            let message = MessageBuilder::new(text).delay_seconds(delay_s).build();
            self.0.send(message).await.map_err(|e| e.to_string())
        })
    }
}

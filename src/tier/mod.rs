//! Workers Cache in front of edge-isr (opt-in, `WORKERS_CACHE`): the headers that let the tier
//! keep a stored page no longer than edge-isr can purge it (`headers`), the `Cache-Tag` values
//! (`tags`), the purge planner within the platform's limits (`purge`), the loop and boundary
//! that send purges (`send`), and a model of the tier for native tests (`model`).
//!
//! With it, a page HIT in the tier costs no Worker invocation, no KV read and no CPU; edge-isr
//! stays the durable, soft-invalidating, globally consistent store behind it.

pub mod double;
pub mod headers;
#[cfg(not(target_arch = "wasm32"))]
pub mod model;
pub mod purge;
pub mod send;
pub mod tags;

#[cfg(test)]
mod tests;

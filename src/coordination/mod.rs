//! Who regenerates a page, and when an invalidation reaches every location: claims within an
//! isolate and the best-effort KV lease and back-off (`lease`); the coordinator (a Durable
//! Object) with the invalidation log (`log`, `matcher`, each isolate's copy in `cache`) and
//! global single-flight claims (`claims`), and the Workers Cache purge planner kept there
//! (`purges`).

pub mod cache;
pub mod claims;
pub mod coordinator;
pub mod lease;
pub mod log;
pub mod matcher;
pub mod protocol;
pub mod purges;

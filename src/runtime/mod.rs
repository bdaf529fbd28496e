//! The boundaries the engine needs besides the store: the clock, background work, the log and
//! the origin. Each is a small trait; the Cloudflare adapter implements them on Workers, and
//! `crate::testing` and the in-memory versions here implement them for native tests.

pub mod background;
pub mod clock;
pub mod log;
pub mod origin;

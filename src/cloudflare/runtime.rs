//! The runtime's clock, background work and console, behind the core's traits.

use crate::runtime::background::{Background, Task};
use crate::runtime::clock::{Clock, Millis};
use crate::runtime::log::{Level, LogLine, Logger};
use futures_util::future::LocalBoxFuture;
use std::time::Duration;
use worker::{Context, Delay, ScheduleContext};

/// `Date.now()` (the only clock on `wasm32-unknown-unknown`) and `setTimeout`.
pub struct WorkersClock;

/// The clock inside [`with_one_clock_read`].
#[derive(Clone, Copy)]
enum OneRead {
    /// Not inside it: every read asks `Date.now()`.
    Off,
    /// Inside it, not read yet.
    Unread,
    /// Inside it, read at this time.
    At(Millis),
}

thread_local! {
    static ONE_READ: std::cell::Cell<OneRead> = const { std::cell::Cell::new(OneRead::Off) };
}

/// Runs `f`, a synchronous call into wasm from JavaScript (the fast path's steps, `super::fast`),
/// asking `Date.now()` at most once. On Workers the time does not move while code runs: it
/// advances across I/O only (a Spectre mitigation), so every read in one synchronous call
/// gives the same value anyway, and a HIT read the clock four or five times per step, each a
/// call out of wasm.
pub fn with_one_clock_read<R>(f: impl FnOnce() -> R) -> R {
    let outer = ONE_READ.replace(OneRead::Unread);
    let result = f();
    ONE_READ.set(outer);
    result
}

impl Clock for WorkersClock {
    /// One call to `Date.now()` (`worker::Date::now()` makes a `Date` object and asks it the
    /// time: two calls out of wasm and an object), or none inside [`with_one_clock_read`] once
    /// it was read.
    fn now_ms(&self) -> Millis {
        match ONE_READ.get() {
            OneRead::Off => js_sys::Date::now() as Millis,
            OneRead::At(now) => now,
            OneRead::Unread => {
                let now = js_sys::Date::now() as Millis;
                ONE_READ.set(OneRead::At(now));
                now
            }
        }
    }

    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        Box::pin(Delay::from(Duration::from_millis(ms)))
    }

    fn pause(&self) -> LocalBoxFuture<'static, ()> {
        Box::pin(Delay::from(Duration::from_millis(PAUSE_MS)))
    }
}

/// How often a visitor waiting for another visitor's render looks at it.
const PAUSE_MS: u64 = 10;

/// `ctx.waitUntil`: background work continues up to 30 s after the response (or after a
/// scheduled event's handler returns).
pub enum WaitUntil {
    /// A fetch or queue invocation's context.
    Request(Context),
    /// A cron trigger's context.
    Scheduled(ScheduleContext),
}

impl Background for WaitUntil {
    fn spawn(&self, task: Task) {
        match self {
            WaitUntil::Request(ctx) => ctx.wait_until(task),
            WaitUntil::Scheduled(ctx) => ctx.wait_until(task),
        }
    }
}

/// Log lines to the console (`wrangler tail`, `wrangler dev` output, Workers Logs), one JSON
/// object each.
pub struct ConsoleLogger;

impl Logger for ConsoleLogger {
    fn event(&self, level: Level, event: &str, key: &str, reason: &str) {
        let line = LogLine { level, event: event.into(), key: key.into(), reason: reason.into() }.to_json();
        match level {
            Level::Info => worker::console_log!("{line}"),
            Level::Warn => worker::console_warn!("{line}"),
            Level::Error => worker::console_error!("{line}"),
        }
    }
}

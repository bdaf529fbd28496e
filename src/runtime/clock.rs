//! Time as an explicit input: the core never reads a system clock itself.
//!
//! `SystemTime::now()` does not work on `wasm32-unknown-unknown`, and freshness rules are only
//! testable when "now" can be set. The adapter implements [`Clock`] with `Date.now()` and a
//! runtime timer; tests use [`ManualClock`], whose `sleep` advances simulated time instantly.

use futures_util::future::LocalBoxFuture;
use std::cell::Cell;
use std::rc::Rc;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A source of the current time and of delays.
pub trait Clock {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;
    /// A future that completes after `ms` milliseconds (used for retry back-off in background work).
    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()>;
    /// A short wait belonging to the current request, between two looks at work that another
    /// request is doing. Workers cancel a request that awaits another request's I/O (it looks
    /// hung), so a visitor waiting for a render started by another visitor polls instead.
    fn pause(&self) -> LocalBoxFuture<'static, ()>;
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Rc<Cell<Millis>>);

impl ManualClock {
    /// A clock set to `start_ms`.
    pub fn new(start_ms: Millis) -> Self {
        Self(Rc::new(Cell::new(start_ms)))
    }

    /// Moves time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get() + ms);
    }

    /// Sets the time.
    pub fn set(&self, ms: Millis) {
        self.0.set(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.get()
    }

    /// Advances simulated time by `ms` and completes at once, so retry loops run instantly in tests.
    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        self.advance(ms);
        Box::pin(async {})
    }

    /// Lets other tasks run once, without moving time.
    fn pause(&self) -> LocalBoxFuture<'static, ()> {
        Box::pin(YieldOnce(false))
    }
}

/// A future that is pending once (waking itself) and then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

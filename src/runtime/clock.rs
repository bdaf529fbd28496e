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
    /// A time limit racing other work: completes once `ms` have passed. Unlike
    /// [`Clock::sleep`], it never moves a test's clock: [`ManualClock`]'s completes when the test
    /// advances the clock past it. By default, [`Clock::sleep`] (a real timer).
    fn deadline(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        self.sleep(ms)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone, Default)]
pub struct ManualClock(Rc<Cell<Millis>>, Rc<std::cell::RefCell<Vec<std::task::Waker>>>);

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ManualClock").field(&self.0.get()).finish()
    }
}

impl ManualClock {
    /// A clock set to `start_ms`.
    pub fn new(start_ms: Millis) -> Self {
        Self(Rc::new(Cell::new(start_ms)), Rc::default())
    }

    /// Moves time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.set(self.0.get() + ms);
    }

    /// Sets the time (and wakes the [`Clock::deadline`]s waiting, which look again).
    pub fn set(&self, ms: Millis) {
        self.0.set(ms);
        let waiting = std::mem::take(&mut *self.1.borrow_mut());
        waiting.into_iter().for_each(std::task::Waker::wake);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.get()
    }

    /// Completes when the test has moved the clock `ms` past now.
    fn deadline(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        let (clock, due) = (self.clone(), self.0.get().saturating_add(ms));
        Box::pin(std::future::poll_fn(move |cx| {
            if clock.0.get() >= due {
                std::task::Poll::Ready(())
            } else {
                clock.1.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt;

    #[test]
    fn a_manual_deadline_passes_only_when_the_test_moves_the_clock() {
        let clock = ManualClock::new(1_000);
        let passed = Rc::new(Cell::new(false));
        let mut pool = LocalPool::new();
        let (deadline, flag) = (clock.deadline(500), passed.clone());
        pool.spawner().spawn_local(async move { deadline.await; flag.set(true) }).unwrap();
        pool.run_until_stalled();
        clock.advance(499);
        pool.run_until_stalled();
        assert!(!passed.get(), "not yet");
        drop(clock.sleep(1)); // a sleep elsewhere moves the clock too (at once, on a manual clock)
        pool.run_until_stalled();
        assert!(passed.get());
        assert_eq!(clock.now_ms(), 1_500);
    }
}

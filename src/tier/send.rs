//! Sending the planner's purge requests: the runtime boundary ([`CachePurger`], implemented on
//! `ctx.cache` by the adapter and by the tier model in tests) and the loop that drains an
//! isolate's own planner within one invocation's time (without a coordinator; with one, the
//! loop is [`crate::coordination::purges::drain_through`]).

use crate::runtime::clock::{Clock, Millis};
use crate::tier::purge::{PurgeError, PurgePlanner, PurgeRequest};
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;

/// Something that purges Workers Cache: `ctx.cache` in production. Not `Send`: the Workers
/// runtime is single-threaded.
pub trait CachePurger {
    /// Whether purging is possible at all (`ctx.cache` exists). When it is not, nothing is
    /// sent and nothing fails: the tier is off, or not emulated (`wrangler dev`).
    fn available(&self) -> bool;
    /// Sends one purge request.
    fn purge<'a>(&'a self, request: &'a PurgeRequest) -> LocalBoxFuture<'a, Result<(), PurgeError>>;
}

/// No Workers Cache: nothing to purge.
pub struct NoTier;

impl CachePurger for NoTier {
    fn available(&self) -> bool {
        false
    }

    fn purge<'a>(&'a self, _request: &'a PurgeRequest) -> LocalBoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests sent and acknowledged.
    pub sent: u32,
    /// Requests that failed (their targets stay pending).
    pub failed: u32,
    /// Targets still not purged when the drain stopped.
    pub left: usize,
}

/// Sends what `planner` has due, waiting (on `clock`) for settle times and tokens, until nothing
/// is pending or the next step would come after `deadline` (an invocation's `waitUntil` ends
/// 30 s after its answer). Failures are reported to the planner, which keeps their targets.
/// With no purger available, the planner is left as it is and nothing is sent.
/// The planner is borrowed only between awaits, so that several drains of one isolate (two
/// webhooks at once) share it: each sends the batches it was handed.
pub async fn drain(planner: &RefCell<PurgePlanner>, purger: &dyn CachePurger, clock: &dyn Clock, deadline: Millis) -> DrainReport {
    let mut report = DrainReport::default();
    if !purger.available() {
        report.left = planner.borrow().backlog();
        return report;
    }
    loop {
        let now = clock.now_ms();
        let batches = planner.borrow_mut().take_due(now);
        for batch in batches {
            match purger.purge(&batch.request).await {
                Ok(()) => {
                    planner.borrow_mut().ack(batch.id);
                    report.sent += 1;
                }
                Err(_) => {
                    planner.borrow_mut().fail(batch.id, clock.now_ms());
                    report.failed += 1;
                }
            }
        }
        let now = clock.now_ms();
        let wake = planner.borrow_mut().next_wake(now);
        match wake {
            Some(wake) if wake <= deadline && planner.borrow().backlog() > 0 => {
                if wake > now {
                    clock.sleep(wake - now).await;
                }
            }
            _ => break,
        }
    }
    report.left = planner.borrow().backlog();
    report
}

//! The coordinator: one strongly consistent place (a Durable Object on Workers) that keeps
//! the invalidation log, the regeneration claims and the Workers Cache purge planner for every
//! location.
//!
//! [`Coordinator`] is the runtime boundary; [`MemoryCoordinator`] is its model for native tests:
//! the same log and claims, counting requests and the SQLite rows the Durable Object would
//! read and write (for the cost model), and able to fail or be slow.

use crate::coordination::claims::{ClaimAnswer, Claims, Version};
use crate::coordination::log::{InvalidationLog, LogSlice, NewEntry, LOG_RETENTION_MS};
use crate::coordination::purges::{self, PurgeReport, TakeRequest, Taken};
use crate::runtime::clock::{Clock, Millis};
use crate::tier::purge::{PurgePlanner, PurgeTarget};
use futures_util::future::LocalBoxFuture;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// Why a coordinator call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorError {
    /// No answer within the time limit (ms).
    Timeout(u64),
    /// The call failed (binding missing, object unreachable, bad answer).
    Failed(String),
}

impl fmt::Display for CoordinatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordinatorError::Timeout(ms) => write!(f, "the coordinator did not answer within {ms} ms"),
            CoordinatorError::Failed(m) => write!(f, "the coordinator failed: {m}"),
        }
    }
}

/// A coordinator call's result.
pub type CoordinatorResult<'a, T> = LocalBoxFuture<'a, Result<T, CoordinatorError>>;

/// The coordinator's operations. Not `Send`: the Workers runtime is single-threaded.
pub trait Coordinator {
    /// Appends an invalidation to the log (durably), hands its Workers Cache purge targets
    /// (none when the mode is off) to the purge planner, and returns its position.
    fn record(&self, entry: NewEntry, purge: Vec<PurgeTarget>) -> CoordinatorResult<'_, u64>;
    /// Entries after position `seq` still kept, the newest position, and the purge planner's
    /// state.
    fn log_since(&self, seq: u64) -> CoordinatorResult<'_, LogSlice>;
    /// Hands out the purge requests due now (leased), and says whether the purges of the
    /// invalidations up to `request.upto` still wait.
    fn take_purges(&self, request: TakeRequest) -> CoordinatorResult<'_, Taken>;
    /// Reports what became of purge requests taken.
    fn report_purges(&self, report: PurgeReport) -> CoordinatorResult<'_, ()>;
    /// Claims the regeneration of `page`'s `version` for `ttl_ms`.
    fn claim<'a>(&'a self, page: &'a str, version: Version, ttl_ms: u64) -> CoordinatorResult<'a, ClaimAnswer>;
    /// Ends a claim: done (`retry_at` `None`) or failed, backing off until `retry_at`.
    fn release<'a>(&'a self, page: &'a str, version: Version, retry_at: Option<Millis>) -> CoordinatorResult<'a, ()>;
}

/// What a [`MemoryCoordinator`] was asked, and what the Durable Object's SQLite storage would
/// have read and written for it (log rows only: claims live in the object's memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorCounts {
    /// Requests to the object (every call).
    pub requests: u64,
    /// `record` calls.
    pub records: u64,
    /// `log_since` calls.
    pub reads: u64,
    /// `claim` and `release` calls.
    pub claims: u64,
    /// `take_purges` and `report_purges` calls.
    pub purge_calls: u64,
    /// SQLite rows read (log entries returned; at least one per log read, the index probe).
    pub rows_read: u64,
    /// SQLite rows written (an appended entry, and each pruned entry's delete; the purge
    /// planner's row each time it changes).
    pub rows_written: u64,
}

struct State {
    log: InvalidationLog,
    claims: Claims,
    planner: PurgePlanner,
    counts: CoordinatorCounts,
    down: bool,
    latency_ms: u64,
}

/// The model of the Durable Object. Clones share the same object (as every location's stub
/// reaches the same one).
#[derive(Clone)]
pub struct MemoryCoordinator {
    state: Rc<RefCell<State>>,
    clock: Rc<dyn Clock>,
}

impl MemoryCoordinator {
    /// An empty coordinator using `clock` for claim times and pruning.
    pub fn new(clock: Rc<dyn Clock>) -> Self {
        MemoryCoordinator {
            state: Rc::new(RefCell::new(State {
                log: InvalidationLog::new(),
                claims: Claims::new(),
                planner: PurgePlanner::new(clock.now_ms()),
                counts: CoordinatorCounts::default(),
                down: false,
                latency_ms: 0,
            })),
            clock,
        }
    }

    /// Makes every call fail (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.state.borrow_mut().down = down;
    }

    /// Makes every call take `ms` (on the coordinator's clock) before it is answered.
    pub fn set_latency_ms(&self, ms: u64) {
        self.state.borrow_mut().latency_ms = ms;
    }

    /// Requests and rows so far.
    pub fn counts(&self) -> CoordinatorCounts {
        self.state.borrow().counts
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        self.state.borrow_mut().counts = CoordinatorCounts::default();
    }

    /// Entries kept in the log.
    pub fn log_len(&self) -> usize {
        self.state.borrow().log.entries().len()
    }

    /// Purge targets not yet purged.
    pub fn purge_backlog(&self) -> usize {
        self.state.borrow().planner.backlog()
    }

    /// What the purge planner has done.
    pub fn purge_counts(&self) -> crate::tier::purge::PlannerCounts {
        self.state.borrow().planner.counts()
    }

    /// The object is evicted and started again: claims (kept in memory) are forgotten, and the
    /// purge planner is read back from its storage row (as the Durable Object does).
    pub fn evict(&self) {
        let mut s = self.state.borrow_mut();
        s.claims = Claims::new();
        let row = serde_json::to_string(&s.planner).unwrap_or_default();
        if let Ok(planner) = serde_json::from_str(&row) {
            s.planner = planner;
        }
    }

    /// Counts the request, waits the latency, then fails if the object is down.
    async fn call(&self) -> Result<(), CoordinatorError> {
        let latency = {
            let mut s = self.state.borrow_mut();
            s.counts.requests += 1;
            s.latency_ms
        };
        if latency > 0 {
            self.clock.sleep(latency).await;
        }
        if self.state.borrow().down {
            return Err(CoordinatorError::Failed("modelled outage".into()));
        }
        Ok(())
    }
}

impl Coordinator for MemoryCoordinator {
    fn record(&self, entry: NewEntry, purge: Vec<PurgeTarget>) -> CoordinatorResult<'_, u64> {
        Box::pin(async move {
            self.call().await?;
            let now = self.clock.now_ms();
            let mut s = self.state.borrow_mut();
            let pruned = s.log.prune(now.saturating_sub(LOG_RETENTION_MS)) as u64;
            let seq = s.log.append(entry);
            s.counts.records += 1;
            s.counts.rows_written += 1 + pruned;
            if !purge.is_empty() {
                purges::record(&mut s.planner, purge, seq, now);
                s.counts.rows_written += 1;
            }
            Ok(seq)
        })
    }

    fn log_since(&self, seq: u64) -> CoordinatorResult<'_, LogSlice> {
        Box::pin(async move {
            self.call().await?;
            let now = self.clock.now_ms();
            let mut s = self.state.borrow_mut();
            let mut slice = s.log.since(seq);
            slice.purge = Some(purges::status(&mut s.planner, now));
            s.counts.reads += 1;
            s.counts.rows_read += (slice.entries.len() as u64).max(1);
            Ok(slice)
        })
    }

    fn take_purges(&self, request: TakeRequest) -> CoordinatorResult<'_, Taken> {
        Box::pin(async move {
            self.call().await?;
            let now = self.clock.now_ms();
            let mut s = self.state.borrow_mut();
            let before = s.planner.clone();
            let taken = purges::take(&mut s.planner, request, now);
            s.counts.purge_calls += 1;
            if s.planner != before {
                s.counts.rows_written += 1;
            }
            Ok(taken)
        })
    }

    fn report_purges(&self, report: PurgeReport) -> CoordinatorResult<'_, ()> {
        Box::pin(async move {
            self.call().await?;
            let now = self.clock.now_ms();
            let mut s = self.state.borrow_mut();
            purges::report(&mut s.planner, &report, now);
            s.counts.purge_calls += 1;
            s.counts.rows_written += 1;
            Ok(())
        })
    }

    fn claim<'a>(&'a self, page: &'a str, version: Version, ttl_ms: u64) -> CoordinatorResult<'a, ClaimAnswer> {
        Box::pin(async move {
            self.call().await?;
            let now = self.clock.now_ms();
            let mut s = self.state.borrow_mut();
            s.counts.claims += 1;
            Ok(s.claims.claim(page, version, now, ttl_ms))
        })
    }

    fn release<'a>(&'a self, page: &'a str, version: Version, retry_at: Option<Millis>) -> CoordinatorResult<'a, ()> {
        Box::pin(async move {
            self.call().await?;
            let mut s = self.state.borrow_mut();
            s.counts.claims += 1;
            s.claims.release(page, version, retry_at);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::ManualClock;
    use futures::executor::block_on;

    fn coordinator() -> (ManualClock, MemoryCoordinator) {
        let clock = ManualClock::new(1_000_000);
        (clock.clone(), MemoryCoordinator::new(Rc::new(clock)))
    }

    #[test]
    fn records_and_reads_back_counting_requests_and_rows() {
        let (_, c) = coordinator();
        block_on(async {
            let e = NewEntry {
                at: 1_000_000,
                tags: vec!["abcd1234".into()],
                ..Default::default()
            };
            assert_eq!(c.record(e.clone(), vec![]).await, Ok(1));
            assert_eq!(c.record(e, vec![]).await, Ok(2));
            let slice = c.log_since(1).await.unwrap();
            assert_eq!((slice.seq, slice.entries.len()), (2, 1));
            let idle = c.log_since(2).await.unwrap();
            assert!(idle.entries.is_empty());
            let n = c.counts();
            assert_eq!((n.requests, n.records, n.reads), (4, 2, 2));
            assert_eq!((n.rows_written, n.rows_read), (2, 2));
        });
    }

    #[test]
    fn the_log_stays_bounded_by_age() {
        let (clock, c) = coordinator();
        block_on(async {
            c.record(NewEntry { at: clock.now_ms(), ..Default::default() }, vec![]).await.unwrap();
            clock.advance(LOG_RETENTION_MS + 1);
            c.record(NewEntry { at: clock.now_ms(), ..Default::default() }, vec![]).await.unwrap();
            assert_eq!(c.log_len(), 1);
            assert_eq!(c.counts().rows_written, 3, "two appends and one pruned row");
        });
    }

    #[test]
    fn purge_targets_recorded_with_an_entry_survive_an_eviction_and_are_handed_out_once() {
        let (clock, c) = coordinator();
        block_on(async {
            let e = NewEntry { at: clock.now_ms(), ..Default::default() };
            let seq = c.record(e, vec![PurgeTarget::Tag("posts".into())]).await.unwrap();
            assert_eq!(c.counts().rows_written, 2, "the entry and the planner's row");
            c.evict();
            clock.advance(crate::tier::purge::SETTLE_MS);
            let slice = c.log_since(0).await.unwrap();
            assert!(slice.purge.is_some_and(|p| p.due), "{:?}", slice.purge);
            let taken = c.take_purges(TakeRequest { upto: Some(seq) }).await.unwrap();
            assert_eq!(taken.batches.len(), 1);
            assert_eq!(taken.batches[0].request.tags, ["posts"]);
            assert!(c.take_purges(TakeRequest::default()).await.unwrap().batches.is_empty(), "leased");
            c.report_purges(PurgeReport { acked: vec![taken.batches[0].id], failed: vec![] }).await.unwrap();
            assert_eq!(c.purge_backlog(), 0);
            assert_eq!(c.counts().purge_calls, 3);
        });
    }

    #[test]
    fn can_be_down_or_slow() {
        let (clock, c) = coordinator();
        block_on(async {
            c.set_down(true);
            assert!(c.log_since(0).await.is_err());
            c.set_down(false);
            c.set_latency_ms(300);
            let before = clock.now_ms();
            c.claim("p", (1, 0), 1_000).await.unwrap();
            assert_eq!(clock.now_ms() - before, 300);
            assert!(matches!(c.claim("p", (1, 0), 1_000).await, Ok(ClaimAnswer::Held { .. })));
        });
    }
}

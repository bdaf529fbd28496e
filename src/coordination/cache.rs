//! Each isolate's copy of the invalidation log, and when it must be refreshed.
//!
//! A HIT is checked against this copy (in memory), not against the coordinator: the copy is
//! refreshed at most once per [`REFRESH_INTERVAL_MS`] while the isolate serves traffic, in the
//! background while it is younger than [`HARD_BOUND_MS`], and before answering once it is
//! older. That gives the bound: the webhook answers 200 only after the coordinator stored the
//! entry; a refresh that *starts* after that moment reads it; a page is only served as fresh
//! against a copy whose refresh started less than [`HARD_BOUND_MS`] before the answer. So no
//! isolate serves a page rendered before an invalidation as fresh more than 1.5 s after the
//! webhook's 200. A copy's age is measured from the refresh's start, not its end, so a slow
//! coordinator cannot stretch the bound.

use crate::coordination::log::{InvalidationLog, LogEntry, LogSlice, LOG_RETENTION_MS};
use crate::coordination::purges::PurgeStatus;
use crate::runtime::clock::Millis;

/// A copy younger than this is used as it is.
pub const REFRESH_INTERVAL_MS: u64 = 1_000;
/// A copy at least this old is refreshed before a page is served as fresh against it: the
/// bound on how long after a webhook's 200 an old page can still be served as fresh.
pub const HARD_BOUND_MS: u64 = 1_500;
/// How long a refresh (or any coordinator call) may take before it counts as failed.
pub const COORDINATOR_TIMEOUT_MS: u64 = 1_000;

/// What a request should do about the log before checking a page against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogState {
    /// Young enough: use it.
    Fresh,
    /// Use it, and refresh it in the background.
    SoftStale,
    /// Refresh it (or wait for the refresh in flight) before answering.
    HardStale,
    /// The last refresh failed a moment ago: use what is known, rely on the KV marks, and do
    /// not make this request wait for the coordinator again.
    Unavailable,
}

/// One isolate's copy of the log.
#[derive(Debug, Default)]
pub struct LogCache {
    log: InvalidationLog,
    /// Start of the last refresh that succeeded.
    as_of: Option<Millis>,
    /// Start of the refresh in flight, if any.
    refreshing_since: Option<Millis>,
    /// When the last refresh failed, if it failed after the last success.
    failed_at: Option<Millis>,
    /// Refreshes that succeeded (for the admin page and tests).
    refreshes: u64,
    /// The purge planner's state the last successful refresh read.
    purge: Option<PurgeStatus>,
}

impl LogCache {
    /// An empty copy that must be refreshed before use.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to do at `now`.
    pub fn state(&self, now: Millis) -> LogState {
        let age = self.as_of.map(|as_of| now.saturating_sub(as_of));
        if age.is_some_and(|age| age < REFRESH_INTERVAL_MS) {
            return LogState::Fresh;
        }
        if self.failed_at.is_some_and(|f| now.saturating_sub(f) < REFRESH_INTERVAL_MS) {
            return LogState::Unavailable;
        }
        if age.is_some_and(|age| age < HARD_BOUND_MS) {
            return LogState::SoftStale;
        }
        LogState::HardStale
    }

    /// Starts a refresh at `now` unless one is in flight (started within the coordinator
    /// timeout); returns the position to read from.
    pub fn begin_refresh(&mut self, now: Millis) -> Option<u64> {
        if self.refreshing_since.is_some_and(|s| now.saturating_sub(s) < COORDINATOR_TIMEOUT_MS) {
            return None;
        }
        self.refreshing_since = Some(now);
        Some(self.log.seq())
    }

    /// Ends the refresh that started at `started`, with what the coordinator answered.
    pub fn finish_refresh<E>(&mut self, started: Millis, result: Result<LogSlice, E>, now: Millis) {
        if self.refreshing_since == Some(started) {
            self.refreshing_since = None;
        }
        match result {
            Ok(mut slice) => {
                self.purge = slice.purge.take();
                self.log.extend(slice);
                self.log.prune(now.saturating_sub(LOG_RETENTION_MS));
                self.as_of = Some(self.as_of.map_or(started, |a| a.max(started)));
                self.failed_at = None;
                self.refreshes += 1;
            }
            Err(_) => self.failed_at = Some(now),
        }
    }

    /// Entries known, oldest first.
    pub fn entries(&self) -> &[LogEntry] {
        self.log.entries()
    }

    /// Start of the last successful refresh.
    pub fn as_of(&self) -> Option<Millis> {
        self.as_of
    }

    /// Refreshes that succeeded.
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    /// The purge planner's state, only while this copy is within the bound at `now` (younger
    /// than [`HARD_BOUND_MS`], its last refresh not failed since): an older outlook could hide a
    /// planner that has fallen behind since.
    pub fn purge_status(&self, now: Millis) -> Option<PurgeStatus> {
        match self.state(now) {
            LogState::Fresh | LogState::SoftStale => self.purge,
            LogState::HardStale | LogState::Unavailable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::log::NewEntry;

    fn slice(seq: u64, at: Millis) -> LogSlice {
        let mut log = InvalidationLog::new();
        for _ in 0..seq {
            log.append(NewEntry {
                at,
                paths: vec!["/a".into()],
                ..Default::default()
            });
        }
        log.since(0)
    }

    #[test]
    fn an_empty_copy_must_be_refreshed_first() {
        assert_eq!(LogCache::new().state(0), LogState::HardStale);
    }

    #[test]
    fn fresh_then_soft_then_hard_stale_by_the_refresh_start() {
        let mut c = LogCache::new();
        let since = c.begin_refresh(10_000).expect("no refresh in flight");
        assert_eq!(since, 0);
        // The answer arrives 400 ms later: the copy's age still counts from 10_000.
        c.finish_refresh::<()>(10_000, Ok(slice(2, 9_000)), 10_400);
        assert_eq!(c.entries().len(), 2);
        assert_eq!(c.state(10_999), LogState::Fresh);
        assert_eq!(c.state(11_000), LogState::SoftStale);
        assert_eq!(c.state(11_499), LogState::SoftStale);
        assert_eq!(c.state(11_500), LogState::HardStale);
    }

    #[test]
    fn one_refresh_in_flight_at_a_time_unless_it_hangs() {
        let mut c = LogCache::new();
        assert!(c.begin_refresh(0).is_some());
        assert!(c.begin_refresh(500).is_none(), "shared with the refresh in flight");
        assert!(c.begin_refresh(COORDINATOR_TIMEOUT_MS).is_some(), "a hung refresh does not block others");
    }

    #[test]
    fn a_failed_refresh_does_not_make_every_request_wait() {
        let mut c = LogCache::new();
        c.begin_refresh(0);
        c.finish_refresh(0, Err::<LogSlice, _>("down"), 1_000);
        assert_eq!(c.state(1_500), LogState::Unavailable);
        assert_eq!(c.state(2_000), LogState::HardStale, "tried again after an interval");
        // A failed background refresh does not retry on every request either.
        let mut c = LogCache::new();
        c.begin_refresh(0);
        c.finish_refresh::<()>(0, Ok(LogSlice::default()), 0);
        assert_eq!(c.state(1_000), LogState::SoftStale);
        c.begin_refresh(1_000);
        c.finish_refresh(1_000, Err::<LogSlice, _>("down"), 1_000);
        assert_eq!(c.state(1_100), LogState::Unavailable);
    }

    #[test]
    fn the_purge_outlook_is_only_used_while_the_copy_is_within_the_bound() {
        let mut c = LogCache::new();
        let status = PurgeStatus { outlook_ms: Some(3_000), due: false };
        c.begin_refresh(10_000);
        c.finish_refresh::<()>(10_000, Ok(LogSlice { purge: Some(status), ..slice(1, 9_000) }), 10_200);
        assert_eq!(c.purge_status(11_499), Some(status));
        assert_eq!(c.purge_status(11_500), None, "too old");
        c.begin_refresh(11_000);
        c.finish_refresh(11_000, Err::<LogSlice, _>("down"), 11_100);
        assert_eq!(c.purge_status(11_200), None, "the last refresh failed");
    }

    #[test]
    fn old_entries_are_pruned_and_the_position_kept() {
        let mut c = LogCache::new();
        c.begin_refresh(0);
        c.finish_refresh::<()>(0, Ok(slice(1, 0)), LOG_RETENTION_MS + 1);
        assert!(c.entries().is_empty());
        assert_eq!(c.begin_refresh(LOG_RETENTION_MS + 2), Some(1));
    }
}

//! On-demand invalidation: what to invalidate, and the jobs that carry big invalidations
//! across worker invocations.
//!
//! Marking a page stale rewrites it in KV with `invalidated_at` in its metadata (KV cannot
//! update metadata alone), so the next visitor gets STALE and triggers a regeneration, while a
//! HIT stays one KV read. A tag on 10,000 pages needs more KV operations than one invocation may
//! make (1,000), so work is cut into [`SweepJob`]s: the webhook does what fits in its own
//! invocation, then hands the rest (from a list cursor) to a queue consumer, one chunk per
//! message. Every target is swept a second time after [`recheck_delay_s`]: by then any render
//! (MISS or regeneration) that started before the invalidation has written its page and that
//! write has reached every location, so a page rendered before the invalidation cannot stay
//! fresh.

use crate::runtime::clock::Millis;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

/// KV operations one invocation may spend on invalidation (of KV's 1,000), leaving room for
/// the request's own reads and the queue hand-off.
pub const OPS_PER_INVOCATION: u32 = 900;

/// How long a write takes to reach every KV location (Cloudflare: "60 seconds or more";
/// edge-isr reads pages without `cacheTtl`, so 60 s is the documented bound).
pub const KV_PROPAGATION_MS: u64 = 60_000;

/// Slack for the KV operations around a render (the re-read before the write, the write
/// itself) and for clock differences between locations.
pub const RECHECK_MARGIN_MS: u64 = 3_000;

/// Delay of the second sweep (the re-check), derived from the configured timeouts: the longest
/// time from the start of a render to the moment its write is visible everywhere.
///
/// A render that started just before an invalidation can still write its page afterwards:
/// a visitor's MISS waits for the origin up to `ORIGIN_TIMEOUT_MS` (at most 120 s), a
/// background regeneration (or pre-render) up to `REGENERATE_TIMEOUT_MS`; its write then
/// waits out up to `WRITE_RETRY_BACKOFF_MS` (7 s) of 429 back-off, and reaches other
/// locations within [`KV_PROPAGATION_MS`]. With the defaults (10 s, 20 s): 20 + 7 + 60 + 3 =
/// 90 s; with `ORIGIN_TIMEOUT_MS = 120000`: 190 s. (Queues allow delays of up to 12 hours.)
pub fn recheck_delay_s(config: &crate::rules::config::Config) -> u32 {
    let render = config.origin_timeout_ms.max(config.regenerate_timeout_ms);
    let total = render + super::write::WRITE_RETRY_BACKOFF_MS + KV_PROPAGATION_MS + RECHECK_MARGIN_MS;
    u32::try_from(total.div_ceil(1000)).unwrap_or(u32::MAX)
}

pub use crate::rules::invalidation::{Invalidation, InvalidationMode};

/// What a sweep walks over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum SweepTarget {
    /// Every page carrying a tag (through the tag index).
    Tag(String),
    /// Every page whose id starts with this `host/path` prefix.
    Prefix(String),
    /// These page ids.
    Pages(Vec<String>),
}

/// A unit of invalidation work, serializable so a queue can carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepJob {
    /// What to walk.
    pub target: SweepTarget,
    /// When the invalidation was requested (ms); pages rendered since are left alone.
    pub at: Millis,
    /// Stale or expire.
    pub mode: InvalidationMode,
    /// Where to continue listing (`None`: from the start).
    pub cursor: Option<String>,
    /// 1 for the first sweep, 2 for the re-check.
    pub pass: u8,
}

/// Work carried to a later invocation by the job queue: one message each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Job {
    /// A chunk of an invalidation.
    Sweep(SweepJob),
    /// A batch of pages to pre-render.
    Prerender(crate::engine::PrerenderJob),
    /// A batch of deleting a retired cache version's keys.
    Cleanup(crate::engine::cleanup::CleanupJob),
}

/// Where jobs go to run in a later invocation (a Cloudflare Queue in production).
pub trait JobQueue {
    /// Sends `job`, to run after `delay_s` seconds.
    fn enqueue(&self, job: Job, delay_s: u32) -> LocalBoxFuture<'_, Result<(), String>>;
}

/// A [`JobQueue`] that keeps jobs in memory; tests run them by hand.
#[derive(Default)]
pub struct MemoryJobQueue {
    jobs: RefCell<Vec<(Job, u32)>>,
    failing_sends: Cell<u32>,
}

impl MemoryJobQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every queued sweep job with its delay (other jobs stay queued).
    pub fn take_all(&self) -> Vec<(SweepJob, u32)> {
        let (sweeps, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *self.jobs.borrow_mut()).into_iter().partition(|(j, _)| matches!(j, Job::Sweep(_)));
        *self.jobs.borrow_mut() = rest;
        sweeps
            .into_iter()
            .filter_map(|(j, d)| match j {
                Job::Sweep(s) => Some((s, d)),
                _ => None,
            })
            .collect()
    }

    /// Takes every queued job of any kind.
    pub fn take_all_jobs(&self) -> Vec<(Job, u32)> {
        std::mem::take(&mut *self.jobs.borrow_mut())
    }

    /// Makes the next `n` sends fail, as a queue that is unavailable or over its limits would.
    pub fn fail_next_sends(&self, n: u32) {
        self.failing_sends.set(n);
    }

    /// Number of queued jobs.
    pub fn len(&self) -> usize {
        self.jobs.borrow().len()
    }

    /// Whether no job is queued.
    pub fn is_empty(&self) -> bool {
        self.jobs.borrow().is_empty()
    }
}

impl JobQueue for MemoryJobQueue {
    fn enqueue(&self, job: Job, delay_s: u32) -> LocalBoxFuture<'_, Result<(), String>> {
        let failing = self.failing_sends.get();
        if failing > 0 {
            self.failing_sends.set(failing - 1);
            return Box::pin(async { Err("queue send failed (injected)".to_string()) });
        }
        self.jobs.borrow_mut().push((job, delay_s));
        Box::pin(async { Ok(()) })
    }
}

/// A count of KV operations still allowed in this invocation.
#[derive(Debug)]
pub struct OpBudget(Cell<u32>);

impl OpBudget {
    /// A budget of `ops` operations.
    pub fn new(ops: u32) -> Self {
        Self(Cell::new(ops))
    }

    /// Operations left.
    pub fn remaining(&self) -> u32 {
        self.0.get()
    }

    /// Spends `n` operations if that many are left.
    pub fn take(&self, n: u32) -> bool {
        match self.0.get().checked_sub(n) {
            Some(left) => {
                self.0.set(left);
                true
            }
            None => false,
        }
    }
}

/// What happened to one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageMark {
    /// It was marked stale (or expired) now.
    Marked,
    /// It was already stale from an earlier invalidation.
    AlreadyStale,
    /// It was rendered after the invalidation: nothing to do.
    Newer,
    /// No such page (or unreadable).
    Missing,
}

/// Progress of one target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetReport {
    /// Pages found for the target so far (marked now, or already stale).
    pub pages: u32,
    /// Of those, pages marked by this request.
    pub marked: u32,
    /// Pages found whose mark could not be written (KV failed): the re-check retries them.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: u32,
    /// Whether every page of the target was reached and marked in this invocation (false: the
    /// rest continues in queued jobs, or `failed`/`error` say what went wrong).
    pub complete: bool,
    /// Why the target cannot match any page, or what could not be done (never with `complete`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TargetReport {
    /// Counts one page outcome.
    pub fn count(&mut self, mark: PageMark) {
        match mark {
            PageMark::Marked => {
                self.pages += 1;
                self.marked += 1;
            }
            PageMark::AlreadyStale => self.pages += 1,
            PageMark::Newer | PageMark::Missing => {}
        }
    }

    /// A target that cannot match any page, for `reason`.
    pub fn unmatchable(reason: String) -> Self {
        TargetReport {
            error: Some(reason),
            ..Default::default()
        }
    }

    /// Adds another part of the same target (one host of a prefix).
    pub fn merge(&mut self, other: TargetReport) {
        self.pages += other.pages;
        self.marked += other.marked;
        self.failed += other.failed;
        self.complete &= other.complete;
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_json() {
        let job = SweepJob {
            target: SweepTarget::Tag("posts".into()),
            at: 5,
            mode: InvalidationMode::Expire,
            cursor: Some("t/1/posts/x".into()),
            pass: 2,
        };
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains(r#""kind":"tag""#), "{json}");
        assert_eq!(serde_json::from_str::<SweepJob>(&json).unwrap(), job);
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), Job::Sweep(job));
        let prerender = Job::Prerender(crate::engine::PrerenderJob {
            host: "example.com".into(),
            prerender: vec!["/blog/a".into()],
        });
        let json = serde_json::to_string(&prerender).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), prerender);
        let cleanup = Job::Cleanup(crate::engine::cleanup::CleanupJob {
            cleanup_version: "0".into(),
            kind: 2,
            cursor: Some("c".into()),
        });
        let json = serde_json::to_string(&cleanup).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), cleanup);
    }

    #[test]
    fn budget_never_goes_negative() {
        let b = OpBudget::new(3);
        assert!(b.take(2));
        assert!(!b.take(2));
        assert!(b.take(1));
        assert_eq!(b.remaining(), 0);
    }
}

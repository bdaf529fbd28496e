//! Workers Cache purges through the coordinator: the one purge planner of the Worker lives in the
//! coordinator (its rate limit, 5 requests a minute with bursts of 25, is the whole Worker's,
//! across every isolate and location), and the worker's own invocations send what it hands out.
//!
//! Why the object does not send them itself: a purge reaches only the entrypoint that calls
//! `ctx.cache.purge`, and a Durable Object is not that entrypoint. So:
//! - the webhook's `POST /record` carries the invalidation's purge targets ([`RecordRequest`]);
//!   the planner keeps them durably with the log entry;
//! - an invocation asks for due requests (`POST /purge/take`, [`Taken`]: each leased, see
//!   [`crate::tier::purge::LEASE_MS`]), sends them, and reports them (`POST /purge/done`,
//!   [`PurgeReport`]); a request never reported is handed out again when its lease ends;
//! - the webhook's invocation does this in its `waitUntil` until its own targets are purged
//!   ([`drain_through`]); any isolate whose log refresh hears that requests are due
//!   ([`PurgeStatus::due`]) takes them once, so that a purge outlives the invocation that
//!   recorded it (no extra coordinator request otherwise: the news rides on `GET /log`);
//! - `GET /log` also carries the planner's outlook ([`PurgeStatus::outlook_ms`]): how late an
//!   invalidation made now would be purged. An isolate lets Workers Cache keep a page for its
//!   whole remaining freshness only while its copy of the log (and so this outlook) is within
//!   the coordinator's 1.5 s bound and the outlook is within the purge bound.

use crate::coordination::coordinator::Coordinator;
use crate::coordination::log::NewEntry;
use crate::runtime::clock::{Clock, Millis};
use crate::tier::headers::PurgeOutlook;
use crate::tier::purge::{Batch, PurgePlanner, PurgeTarget};
use crate::tier::send::{CachePurger, DrainReport};
use serde::{Deserialize, Serialize};

/// Body of `POST /record`: the log entry, and the purge targets of the same invalidation (none
/// when the Workers Cache mode is off; a body without them is an entry as before).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRequest {
    /// The log entry.
    #[serde(flatten)]
    pub entry: NewEntry,
    /// What to purge from Workers Cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purge: Vec<PurgeTarget>,
}

/// Body of `POST /purge/take`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeRequest {
    /// The log position whose purges the caller waits for (its webhook's entry); `None`: the
    /// caller only helps, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
}

/// Answer to `POST /purge/take`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// Requests to send now, each to be reported.
    #[serde(default)]
    pub batches: Vec<Batch>,
    /// Whether targets up to `upto` are still not purged (the caller should ask again).
    #[serde(default)]
    pub waiting: bool,
    /// When to ask again (ms from now), if anything up to `upto` waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_in_ms: Option<u64>,
    /// Targets not yet purged, all invalidations together.
    #[serde(default)]
    pub backlog: usize,
}

/// Body of `POST /purge/done`: what became of the requests taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Requests sent and accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked: Vec<u64>,
    /// Requests that failed (refused by the rate limit or otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<u64>,
}

impl PurgeReport {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.acked.is_empty() && self.failed.is_empty()
    }
}

/// The planner's state as `GET /log` carries it to every isolate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeStatus {
    /// How late, at worst, the purge of an invalidation made now would arrive (ms after it);
    /// `None`: not known (purges failing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook_ms: Option<u64>,
    /// Whether requests are due now (a token is there): an isolate that hears it takes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub due: bool,
}

impl PurgeStatus {
    /// The outlook as the header rule reads it.
    pub fn outlook(&self) -> PurgeOutlook {
        match self.outlook_ms {
            Some(ms) => PurgeOutlook::Within(ms),
            None => PurgeOutlook::Unknown,
        }
    }
}

/// The planner's side of `POST /record`: the targets of the entry at `seq`, recorded at `now`
/// (the coordinator's clock: every isolate's copy of the log is measured from the moment the
/// entry was stored, so the settle time is counted from there too).
pub fn record(planner: &mut PurgePlanner, targets: Vec<PurgeTarget>, seq: u64, now: Millis) {
    if !targets.is_empty() {
        planner.add_numbered(targets, now, seq);
    }
}

/// The planner's side of `POST /purge/take`.
pub fn take(planner: &mut PurgePlanner, request: TakeRequest, now: Millis) -> Taken {
    let batches = planner.take_due(now);
    let (waiting, wake) = match request.upto {
        Some(seq) => (planner.waiting_upto(seq), planner.next_wake_upto(now, seq)),
        None => (false, None),
    };
    Taken {
        batches,
        waiting,
        wake_in_ms: wake.map(|w| w.saturating_sub(now)),
        backlog: planner.backlog(),
    }
}

/// The planner's side of `POST /purge/done`.
pub fn report(planner: &mut PurgePlanner, report: &PurgeReport, now: Millis) {
    for id in &report.acked {
        planner.ack(*id);
    }
    for id in &report.failed {
        planner.fail(*id, now);
    }
}

/// The planner's side of `GET /log`.
pub fn status(planner: &mut PurgePlanner, now: Millis) -> PurgeStatus {
    let outlook_ms = match planner.outlook(now) {
        PurgeOutlook::Within(ms) => Some(ms),
        PurgeOutlook::Unknown => None,
    };
    PurgeStatus {
        outlook_ms,
        due: planner.next_wake(now).is_some_and(|w| w <= now),
    }
}

/// Most take/report rounds one invocation makes (each is at most two coordinator requests and
/// a few purge calls: well within an invocation's subrequests).
pub const MAX_ROUNDS: u32 = 12;

/// Shortest wait between two rounds that handed out nothing (no tight loop on a clock that
/// disagrees with the coordinator's).
const MIN_WAIT_MS: u64 = 100;

/// Takes due requests from `coordinator`, sends them with `purger` and reports them, until the
/// purges up to log position `upto` are done (or, with `upto` `None`, once), the next round
/// would start after `deadline`, or [`MAX_ROUNDS`] rounds were made. A coordinator that fails
/// ends the drain: what it handed out comes back when its lease runs out.
pub async fn drain_through(coordinator: &dyn Coordinator, purger: &dyn CachePurger, clock: &dyn Clock, upto: Option<u64>, deadline: Millis) -> DrainReport {
    let mut out = DrainReport::default();
    if !purger.available() {
        return out;
    }
    for _ in 0..MAX_ROUNDS {
        let Ok(taken) = coordinator.take_purges(TakeRequest { upto }).await else {
            break;
        };
        let mut done = PurgeReport::default();
        for batch in &taken.batches {
            match purger.purge(&batch.request).await {
                Ok(()) => done.acked.push(batch.id),
                Err(_) => done.failed.push(batch.id),
            }
        }
        out.sent += done.acked.len() as u32;
        out.failed += done.failed.len() as u32;
        out.left = taken.backlog.saturating_sub(done.acked.len());
        if !done.is_empty() && coordinator.report_purges(done).await.is_err() {
            break;
        }
        let Some(wake_in) = taken.wake_in_ms.filter(|_| taken.waiting) else {
            break;
        };
        let wait = if taken.batches.is_empty() { wake_in.max(MIN_WAIT_MS) } else { wake_in };
        if clock.now_ms() + wait > deadline {
            break;
        }
        if wait > 0 {
            clock.sleep(wait).await;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::purge::{LEASE_MS, SETTLE_MS};

    const T0: Millis = 1_000_000;

    #[test]
    fn the_wire_forms_are_compact_and_a_plain_entry_still_records() {
        let r = RecordRequest {
            entry: NewEntry { at: 5, tags: vec!["abcd1234".into()], ..Default::default() },
            purge: vec![PurgeTarget::Tag("posts".into()), PurgeTarget::PathPrefix("/blog/".into()), PurgeTarget::Everything],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""purge":[{"tag":"posts"},{"path_prefix":"/blog/"},"everything"]"#), "{text}");
        assert_eq!(serde_json::from_str::<RecordRequest>(&text).unwrap(), r);
        let old: RecordRequest = serde_json::from_str(r#"{"at":5,"tags":["abcd1234"]}"#).unwrap();
        assert!(old.purge.is_empty());
        assert_eq!(serde_json::to_string(&PurgeStatus::default()).unwrap(), "{}");
    }

    #[test]
    fn a_taker_waits_for_its_own_invalidation_and_not_for_later_ones() {
        let mut p = PurgePlanner::new(T0);
        record(&mut p, vec![PurgeTarget::Tag("a".into())], 1, T0);
        record(&mut p, vec![PurgeTarget::Tag("b".into())], 2, T0 + 5_000);
        let first = take(&mut p, TakeRequest { upto: Some(1) }, T0);
        assert!(first.batches.is_empty() && first.waiting);
        assert_eq!(first.wake_in_ms, Some(SETTLE_MS));
        let second = take(&mut p, TakeRequest { upto: Some(1) }, T0 + SETTLE_MS);
        assert_eq!(second.batches.len(), 1);
        assert!(second.waiting, "handed out, not yet reported");
        assert_eq!(second.wake_in_ms, Some(LEASE_MS), "ask again if the lease runs out");
        report(&mut p, &PurgeReport { acked: vec![second.batches[0].id], failed: vec![] }, T0 + SETTLE_MS);
        let third = take(&mut p, TakeRequest { upto: Some(1) }, T0 + SETTLE_MS);
        assert!(!third.waiting, "b (position 2) is someone else's");
        assert_eq!(third.backlog, 1);
    }

    #[test]
    fn the_status_says_when_requests_are_due_and_how_late_purges_come() {
        let mut p = PurgePlanner::new(T0);
        assert_eq!(status(&mut p, T0), PurgeStatus { outlook_ms: Some(SETTLE_MS + crate::tier::purge::PURGE_LATENCY_MS), due: false });
        record(&mut p, vec![PurgeTarget::Tag("a".into())], 1, T0);
        assert!(!status(&mut p, T0 + SETTLE_MS - 1).due);
        assert!(status(&mut p, T0 + SETTLE_MS).due);
        let b = take(&mut p, TakeRequest::default(), T0 + SETTLE_MS);
        assert!(!status(&mut p, T0 + SETTLE_MS).due, "handed out");
        report(&mut p, &PurgeReport { acked: vec![], failed: vec![b.batches[0].id] }, T0 + SETTLE_MS);
        assert_eq!(status(&mut p, T0 + SETTLE_MS).outlook(), PurgeOutlook::Unknown, "failing");
    }
}

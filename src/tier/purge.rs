//! Turning invalidations into Workers Cache purges within its limits, without losing one.
//!
//! `ctx.cache.purge` takes at most 100 tags or path prefixes per request and is rate-limited
//! per Worker: 5 requests a minute, bursts of 25 (a token bucket: one token every 12 s, 25 at
//! most). A burst of publishes must neither exceed that nor drop a purge. The
//! [`PurgePlanner`] keeps every target until a purge covering it has succeeded:
//!
//! - an invalidation's targets become due [`SETTLE_MS`] after it (the time every isolate takes
//!   to learn of it through the coordinator: a purge sent earlier could be followed by an
//!   isolate that did not know yet handing the tier the old page again);
//! - due targets go out in requests of at most 100, one token each; when there are fewer
//!   tokens than requests needed, one `purgeEverything` request covers them all (a huge
//!   invalidation is purged late by no more than one token's wait, at the price of the tier's
//!   whole content);
//! - a request handed out is leased: acknowledged, its targets are done; failed (a rate-limit
//!   answer included), its targets are due again a moment later ([`RETRY_AFTER_FAILURE_MS`]);
//!   not reported within [`LEASE_MS`] (the invocation sending it ended), at once;
//! - [`PurgePlanner::outlook`] tells the header rule ([`crate::tier::headers`]) whether purges
//!   still arrive within [`PURGE_BOUND_MS`]; when they do not, new copies get a lifetime no
//!   longer than that bound, so no copy outlives the purge it would have needed.
//!
//! Where it lives: the rate limit is per Worker, across every location, so the planner must be
//! one object: the coordinator Durable Object keeps it (it is plain data, `serde`-encoded in the
//! object's storage, and every method takes `now`; see [`crate::coordination::purges`]). The
//! object hands due requests to the invocation that asks for them, which calls
//! `ctx.cache.purge` (a purge is scoped to the entrypoint that calls it, so it must be the
//! worker's own fetch/queue handler, not the object) and reports the outcome. Without a
//! coordinator, the webhook's own invocation keeps a planner for its invalidation (see the
//! README: best effort, with tier lifetimes capped).

use crate::runtime::clock::Millis;
use crate::tier::tags::{path_tag, tier_tag};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most tags or prefixes in one purge request.
pub const MAX_TARGETS_PER_REQUEST: usize = 100;
/// Purge requests a bucket holds (the burst).
pub const BURST: u32 = 25;
/// One token every 12 s: 5 requests a minute.
pub const TOKEN_INTERVAL_MS: u64 = 12_000;
/// How long after an invalidation every isolate knows of it (the coordinator's bound, issue 11:
/// each isolate refreshes its copy of the log at most 1.5 s apart while it serves).
pub const SETTLE_MS: u64 = 2_000;
/// Time allowed for a purge request to take effect in every location.
pub const PURGE_LATENCY_MS: u64 = 1_000;
/// The promise: a tier copy of a page stops being served as fresh at most this long after the
/// invalidation's webhook answered (settle + one token's wait + the purge itself: 15 s).
pub const PURGE_BOUND_MS: u64 = SETTLE_MS + TOKEN_INTERVAL_MS + PURGE_LATENCY_MS;
/// How long after a failed request its targets are due again (a rate-limit answer means a token
/// is missing; any other failure is not retried in a tight loop).
pub const RETRY_AFTER_FAILURE_MS: u64 = 3_000;
/// How long a handed-out request may go unreported before its targets are due again. Sending
/// one is one `ctx.cache.purge` call and one report to the coordinator: 10 s is ample, and an
/// invocation that died holding it (its isolate evicted, its `waitUntil` cut off) delays those
/// targets by 10 s, not by the 30 s a `waitUntil` may last. A sender slower than that only
/// makes the targets go out twice (one token more).
pub const LEASE_MS: u64 = 10_000;
/// Most targets kept pending; beyond, they are replaced by one purge-everything target (memory
/// and Durable Object storage stay bounded; 25 full requests' worth).
pub const MAX_PENDING_TARGETS: usize = MAX_TARGETS_PER_REQUEST * BURST as usize;

/// One thing to purge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeTarget {
    /// A `Cache-Tag` value (already mapped, [`crate::tier::tags`]).
    Tag(String),
    /// A URL path prefix, without scheme or host: Workers Cache matches `pathPrefixes` against
    /// the request's path only (its cache key has no host; "Purging the cache", Cloudflare's
    /// docs, checked 2026-12-03: `https://example.com/blog/` would match nothing).
    PathPrefix(String),
    /// Everything the tier holds for this worker.
    Everything,
}

/// The targets of one invalidation, from its tags, paths and prefixes (normalised as the
/// engine normalises them).
pub fn targets_of<'a>(
    tags: impl IntoIterator<Item = &'a str>,
    paths: impl IntoIterator<Item = &'a str>,
    prefixes: impl IntoIterator<Item = &'a str>,
) -> Vec<PurgeTarget> {
    let mut out: Vec<PurgeTarget> = tags.into_iter().map(|t| PurgeTarget::Tag(tier_tag(t))).collect();
    out.extend(paths.into_iter().map(|p| PurgeTarget::Tag(path_tag(p))));
    out.extend(prefixes.into_iter().map(|p| {
        if p == "/" || p.is_empty() {
            PurgeTarget::Everything
        } else {
            PurgeTarget::PathPrefix(p.to_string())
        }
    }));
    out
}

/// One call of `ctx.cache.purge`, as its JavaScript options object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeRequest {
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// URL path prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge_everything: bool,
}

impl PurgeRequest {
    /// Tags plus prefixes (what the 100-per-request limit counts).
    pub fn len(&self) -> usize {
        self.tags.len() + self.path_prefixes.len()
    }

    /// Whether it purges nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && !self.purge_everything
    }
}

/// Why a purge call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PurgeError {
    /// The platform refused it for its rate limit.
    RateLimited,
    /// Any other failure (message).
    Failed(String),
}

impl fmt::Display for PurgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PurgeError::RateLimited => write!(f, "the purge was refused by the rate limit"),
            PurgeError::Failed(m) => write!(f, "the purge failed: {m}"),
        }
    }
}

/// A token bucket: `BURST` tokens at most, one more every `TOKEN_INTERVAL_MS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    tokens: u32,
    /// When the last token was counted in (ms).
    since: Millis,
    capacity: u32,
    interval_ms: u64,
}

impl TokenBucket {
    /// A full bucket of Workers Cache's purge limits.
    pub fn workers_cache(now: Millis) -> Self {
        Self::new(BURST, TOKEN_INTERVAL_MS, now)
    }

    /// A full bucket of `capacity` tokens refilled every `interval_ms`.
    pub fn new(capacity: u32, interval_ms: u64, now: Millis) -> Self {
        TokenBucket {
            tokens: capacity,
            since: now,
            capacity,
            interval_ms: interval_ms.max(1),
        }
    }

    fn refill(&mut self, now: Millis) {
        if self.tokens >= self.capacity {
            self.since = now.max(self.since);
            return;
        }
        let earned = now.saturating_sub(self.since) / self.interval_ms;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(self.capacity)) as u32;
            self.since += earned * self.interval_ms;
        }
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Millis) -> u32 {
        self.refill(now);
        self.tokens
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Millis) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        if self.tokens == self.capacity {
            self.since = now;
        }
        self.tokens -= 1;
        true
    }

    /// When the next token is available (`now` if one is).
    pub fn next_token_at(&mut self, now: Millis) -> Millis {
        self.refill(now);
        if self.tokens > 0 {
            now
        } else {
            self.since + self.interval_ms
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    target: PurgeTarget,
    /// When it may be sent.
    due_at: Millis,
    /// When its invalidation took effect (for the outlook).
    since: Millis,
    /// The invalidation's position in the coordinator's log (0: none), so that the invocation
    /// that took it can tell when its own purges are done.
    #[serde(default)]
    seq: u64,
}

/// A purge request handed to an invocation to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Its number, to report its outcome.
    pub id: u64,
    /// What to send.
    pub request: PurgeRequest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    id: u64,
    until: Millis,
    covers: Vec<Pending>,
}

/// What the planner has done (tests and the cost model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannerCounts {
    /// Requests handed out.
    pub requests: u64,
    /// Of which purge-everything.
    pub everything: u64,
    /// Requests reported failed or never reported.
    pub retried: u64,
}

/// The purge planner (see the module documentation). Plain data: serialisable, so that the
/// coordinator Durable Object can keep it in its storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgePlanner {
    bucket: TokenBucket,
    pending: Vec<Pending>,
    leases: Vec<Lease>,
    next_id: u64,
    /// Failures since the last success.
    failing: u32,
    counts: PlannerCounts,
}

impl Default for PurgePlanner {
    /// A planner with a full bucket (counted from time 0: a full bucket stays full).
    fn default() -> Self {
        PurgePlanner::new(0)
    }
}

impl PurgePlanner {
    /// A planner with a full bucket of Workers Cache's limits.
    pub fn new(now: Millis) -> Self {
        Self::with_bucket(TokenBucket::workers_cache(now))
    }

    /// A planner drawing on `bucket`.
    pub fn with_bucket(bucket: TokenBucket) -> Self {
        PurgePlanner {
            bucket,
            pending: Vec::new(),
            leases: Vec::new(),
            next_id: 1,
            failing: 0,
            counts: PlannerCounts::default(),
        }
    }

    /// Adds the targets of an invalidation that took effect at `at`.
    pub fn add(&mut self, targets: Vec<PurgeTarget>, at: Millis) {
        self.add_numbered(targets, at, 0);
    }

    /// [`PurgePlanner::add`] for the invalidation at position `seq` of the coordinator's log.
    pub fn add_numbered(&mut self, targets: Vec<PurgeTarget>, at: Millis, seq: u64) {
        let due_at = at + SETTLE_MS;
        for target in targets {
            let already = self.pending.iter().any(|p| p.target == target && p.due_at == due_at);
            if !already {
                self.pending.push(Pending { target, due_at, since: at, seq });
            }
        }
        if self.pending.len() > MAX_PENDING_TARGETS {
            let due_at = self.pending.iter().map(|p| p.due_at).max().unwrap_or(due_at);
            let since = self.pending.iter().map(|p| p.since).min().unwrap_or(at);
            let seq = self.pending.iter().map(|p| p.seq).max().unwrap_or(seq);
            self.pending.clear();
            self.pending.push(Pending {
                target: PurgeTarget::Everything,
                due_at,
                since,
                seq,
            });
        }
    }

    /// Whether a target of an invalidation at position `seq` or before is not yet purged
    /// (pending, or handed out and not acknowledged).
    pub fn waiting_upto(&self, seq: u64) -> bool {
        self.pending.iter().chain(self.leases.iter().flat_map(|l| &l.covers)).any(|p| p.seq <= seq)
    }

    /// When the invocation waiting for the invalidations up to position `seq` should ask again:
    /// when one of their pending targets is due and a token is there, or when a lease holding
    /// one of them runs out. `None` when none of them waits.
    pub fn next_wake_upto(&mut self, now: Millis, seq: u64) -> Option<Millis> {
        let lease = self.leases.iter().filter(|l| l.covers.iter().any(|p| p.seq <= seq)).map(|l| l.until).min();
        let due = self.pending.iter().filter(|p| p.seq <= seq).map(|p| p.due_at).min();
        let send = due.map(|d| d.max(now)).map(|d| d.max(self.bucket.next_token_at(d)));
        match (send, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Targets not yet purged (pending and handed out).
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.leases.iter().map(|l| l.covers.len()).sum::<usize>()
    }

    /// What the planner has done.
    pub fn counts(&self) -> PlannerCounts {
        self.counts
    }

    fn reclaim_expired(&mut self, now: Millis) {
        let (expired, kept): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut self.leases).into_iter().partition(|l| l.until <= now);
        self.leases = kept;
        for lease in expired {
            self.counts.retried += 1;
            self.failing += 1;
            self.requeue(lease.covers, now);
        }
    }

    fn requeue(&mut self, covers: Vec<Pending>, at: Millis) {
        for mut p in covers {
            p.due_at = at;
            self.pending.push(p);
        }
    }

    /// Hands out the requests to send now (each leased for [`LEASE_MS`]), spending one token
    /// each. Empty when nothing is due or no token is left (ask again at
    /// [`PurgePlanner::next_wake`]).
    pub fn take_due(&mut self, now: Millis) -> Vec<Batch> {
        self.reclaim_expired(now);
        let (due, later): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending).into_iter().partition(|p| p.due_at <= now);
        self.pending = later;
        if due.is_empty() {
            return Vec::new();
        }
        let tokens = self.bucket.available(now) as usize;
        if tokens == 0 {
            self.pending.extend(due);
            return Vec::new();
        }
        let mut unique: Vec<&PurgeTarget> = due.iter().map(|p| &p.target).collect();
        unique.sort();
        unique.dedup();
        let needed = unique.len().div_ceil(MAX_TARGETS_PER_REQUEST);
        let everything = unique.contains(&&PurgeTarget::Everything) || needed > tokens;
        let requests: Vec<PurgeRequest> = if everything {
            vec![PurgeRequest {
                purge_everything: true,
                ..Default::default()
            }]
        } else {
            unique
                .chunks(MAX_TARGETS_PER_REQUEST)
                .map(|chunk| {
                    let mut r = PurgeRequest::default();
                    for t in chunk {
                        match t {
                            PurgeTarget::Tag(tag) => r.tags.push(tag.clone()),
                            PurgeTarget::PathPrefix(p) => r.path_prefixes.push(p.clone()),
                            PurgeTarget::Everything => {}
                        }
                    }
                    r
                })
                .collect()
        };
        let mut batches = Vec::new();
        let mut covers_all = Some(due);
        for request in requests {
            if !self.bucket.take(now) {
                break; // cannot happen: `tokens` were counted above
            }
            let covers = if everything {
                covers_all.take().unwrap_or_default()
            } else {
                let all = covers_all.get_or_insert_with(Vec::new);
                let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(all).into_iter().partition(|p| match &p.target {
                    PurgeTarget::Tag(t) => request.tags.contains(t),
                    PurgeTarget::PathPrefix(x) => request.path_prefixes.contains(x),
                    PurgeTarget::Everything => false,
                });
                *all = rest;
                mine
            };
            let id = self.next_id;
            self.next_id += 1;
            self.counts.requests += 1;
            if request.purge_everything {
                self.counts.everything += 1;
            }
            self.leases.push(Lease {
                id,
                until: now + LEASE_MS,
                covers,
            });
            batches.push(Batch { id, request });
        }
        if let Some(left) = covers_all {
            self.pending.extend(left);
        }
        batches
    }

    /// The request `id` was purged: its targets are done.
    pub fn ack(&mut self, id: u64) {
        let before = self.leases.len();
        self.leases.retain(|l| l.id != id);
        if self.leases.len() < before {
            self.failing = 0;
        }
    }

    /// The request `id` failed: its targets are due again [`RETRY_AFTER_FAILURE_MS`] later.
    pub fn fail(&mut self, id: u64, now: Millis) {
        if let Some(i) = self.leases.iter().position(|l| l.id == id) {
            let lease = self.leases.remove(i);
            self.counts.retried += 1;
            self.failing += 1;
            self.requeue(lease.covers, now + RETRY_AFTER_FAILURE_MS);
        }
    }

    /// When to call [`PurgePlanner::take_due`] next (a Durable Object alarm, or the sending
    /// invocation's next wake-up): `None` when nothing waits.
    pub fn next_wake(&mut self, now: Millis) -> Option<Millis> {
        let lease = self.leases.iter().map(|l| l.until).min();
        let due = self.pending.iter().map(|p| p.due_at).min();
        let send = due.map(|d| d.max(now)).map(|d| d.max(self.bucket.next_token_at(d)));
        match (send, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How late the purge of an invalidation made now would arrive, at worst: its settle time,
    /// the wait for a token behind what is already pending, and the purge itself; `Unknown`
    /// after a failure, until a purge succeeds again.
    pub fn outlook(&mut self, now: Millis) -> crate::tier::headers::PurgeOutlook {
        use crate::tier::headers::PurgeOutlook;
        if self.failing > 0 {
            return PurgeOutlook::Unknown;
        }
        let due = now + SETTLE_MS;
        // Replay the bucket: what is pending goes out (all that is due together, in one request
        // or one purge-everything) with the first token at or after its due time; what goes
        // before `due` takes a token the new invalidation then waits for.
        let mut dues: Vec<Millis> = self.pending.iter().map(|p| p.due_at.max(now)).filter(|d| *d < due).collect();
        dues.sort_unstable();
        let mut bucket = self.bucket.clone();
        let mut i = 0;
        while i < dues.len() {
            let t = bucket.next_token_at(dues[i]);
            if t >= due {
                break;
            }
            bucket.take(t);
            while i < dues.len() && dues[i] <= t {
                i += 1;
            }
        }
        let at = bucket.next_token_at(due);
        // Handed-out targets count too: a sender that died holding them shows here as their
        // growing wait, before its lease runs out.
        let oldest_wait = self
            .pending
            .iter()
            .chain(self.leases.iter().flat_map(|l| &l.covers))
            .map(|p| now.saturating_sub(p.since))
            .max()
            .unwrap_or(0);
        PurgeOutlook::Within((at - now + PURGE_LATENCY_MS).max(oldest_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::headers::PurgeOutlook;

    const T0: Millis = 1_000_000;

    fn tags(n: usize, prefix: &str) -> Vec<PurgeTarget> {
        (0..n).map(|i| PurgeTarget::Tag(format!("{prefix}{i}"))).collect()
    }

    #[test]
    fn the_bucket_allows_a_burst_of_25_then_one_every_12_seconds() {
        let mut b = TokenBucket::workers_cache(T0);
        assert_eq!((0..30).filter(|_| b.take(T0)).count(), 25);
        assert_eq!(b.next_token_at(T0), T0 + 12_000);
        assert!(!b.take(T0 + 11_999));
        assert!(b.take(T0 + 12_000));
        assert!(!b.take(T0 + 12_000));
        assert_eq!(b.available(T0 + 12_000 + 60_000), 5, "5 a minute");
        assert_eq!(b.available(T0 + 10 * 3_600_000), 25, "never more than the burst");
    }

    #[test]
    fn targets_wait_for_the_settle_time_then_go_out_together() {
        let mut p = PurgePlanner::new(T0);
        p.add(vec![PurgeTarget::Tag("posts".into())], T0);
        p.add(vec![PurgeTarget::Tag("post-a".into()), PurgeTarget::Tag("posts".into())], T0 + 500);
        assert!(p.take_due(T0 + 1_999).is_empty(), "not before every isolate knows");
        assert_eq!(p.next_wake(T0), Some(T0 + SETTLE_MS));
        let b = p.take_due(T0 + 2_500);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].request.tags, ["post-a", "posts"], "one request, de-duplicated");
        p.ack(b[0].id);
        assert_eq!(p.backlog(), 0);
        assert_eq!(p.next_wake(T0 + 2_500), None);
    }

    #[test]
    fn requests_carry_at_most_100_targets_and_map_paths_and_prefixes() {
        let mut p = PurgePlanner::new(T0);
        let mut t = tags(150, "t");
        t.extend(targets_of(["Posts"], ["/a?x=1"], ["/blog/", "/"]));
        p.add(t, T0);
        let b = p.take_due(T0 + SETTLE_MS);
        assert_eq!(b.len(), 1, "a prefix / is purge-everything");
        assert!(b[0].request.purge_everything);
        let mut p = PurgePlanner::new(T0);
        let mut t = tags(150, "t");
        t.extend(targets_of(["Posts"], ["/a?x=1"], ["/blog/"]));
        p.add(t, T0);
        let b = p.take_due(T0 + SETTLE_MS);
        assert_eq!(b.iter().map(|b| b.request.len()).collect::<Vec<_>>(), [100, 53]);
        let all: Vec<&String> = b.iter().flat_map(|b| &b.request.tags).collect();
        assert!(all.contains(&&tier_tag("Posts")) && all.contains(&&path_tag("/a?x=1")));
        assert!(b.iter().any(|b| b.request.path_prefixes == ["/blog/"]));
        let json = serde_json::to_string(&b[1].request).unwrap();
        assert!(json.contains("\"pathPrefixes\":[\"/blog/\"]") && !json.contains("purgeEverything"), "{json}");
    }

    #[test]
    fn a_burst_beyond_the_tokens_becomes_one_purge_everything() {
        let mut p = PurgePlanner::with_bucket(TokenBucket::new(BURST, TOKEN_INTERVAL_MS, T0));
        p.add(tags(100 * 26, "t")[..MAX_PENDING_TARGETS].to_vec(), T0);
        p.add(tags(100, "u"), T0);
        assert_eq!(p.backlog(), 1, "bounded: replaced by one purge-everything target");
        let b = p.take_due(T0 + SETTLE_MS);
        assert_eq!(b.len(), 1);
        assert!(b[0].request.purge_everything);
        // Few tokens left and more due than they can carry: everything, in one token.
        let mut p = PurgePlanner::with_bucket(TokenBucket::new(2, TOKEN_INTERVAL_MS, T0));
        p.add(tags(250, "t"), T0);
        let b = p.take_due(T0 + SETTLE_MS);
        assert_eq!((b.len(), b[0].request.purge_everything), (1, true));
    }

    #[test]
    fn no_purge_is_lost_when_a_request_fails_or_is_never_reported() {
        let mut p = PurgePlanner::new(T0);
        p.add(tags(3, "t"), T0);
        let b = p.take_due(T0 + SETTLE_MS);
        p.fail(b[0].id, T0 + SETTLE_MS);
        assert_eq!(p.outlook(T0 + SETTLE_MS), PurgeOutlook::Unknown, "failing: lifetimes capped");
        assert!(p.take_due(T0 + SETTLE_MS + 1).is_empty(), "not in a tight loop");
        let retry = T0 + SETTLE_MS + RETRY_AFTER_FAILURE_MS;
        assert_eq!(p.next_wake(T0 + SETTLE_MS), Some(retry));
        let again = p.take_due(retry);
        assert_eq!(again[0].request, b[0].request, "retried whole");
        // Never reported (the invocation ended): due again once the lease ends.
        assert!(p.take_due(retry + LEASE_MS - 1).is_empty());
        assert_eq!(p.next_wake(retry + 10), Some(retry + LEASE_MS));
        let third = p.take_due(retry + LEASE_MS);
        assert_eq!(third[0].request, b[0].request);
        p.ack(third[0].id);
        p.ack(third[0].id);
        assert_eq!(p.backlog(), 0);
        assert!(p.outlook(retry + LEASE_MS).purges_in_time());
        assert_eq!(p.counts().retried, 2);
    }

    #[test]
    fn without_tokens_targets_wait_and_the_outlook_says_how_long() {
        let mut p = PurgePlanner::with_bucket(TokenBucket::new(BURST, TOKEN_INTERVAL_MS, T0));
        assert_eq!(p.outlook(T0), PurgeOutlook::Within(SETTLE_MS + PURGE_LATENCY_MS));
        for i in 0..25 {
            p.add(tags(1, &format!("a{i}-")), T0 + i * 10);
            for b in p.take_due(T0 + i * 10 + SETTLE_MS) {
                p.ack(b.id);
            }
        }
        p.add(tags(1, "late"), T0 + 300);
        let now = T0 + 300 + SETTLE_MS;
        assert!(p.take_due(now).is_empty(), "bucket empty");
        let wake = p.next_wake(now).unwrap();
        assert_eq!(wake, T0 + SETTLE_MS + 12_000, "the next token");
        match p.outlook(now) {
            PurgeOutlook::Within(ms) => assert!(ms <= PURGE_BOUND_MS, "{ms}"),
            other => panic!("{other:?}"),
        }
        let b = p.take_due(wake);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn the_planner_survives_a_round_trip_through_storage() {
        let mut p = PurgePlanner::new(T0);
        p.add(tags(2, "t"), T0);
        let _ = p.take_due(T0 + SETTLE_MS);
        p.add(tags(1, "u"), T0 + 100);
        let json = serde_json::to_string(&p).unwrap();
        let back: PurgePlanner = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}

//! Counters of what the cache did, per isolate, without a KV write per request.
//!
//! Each isolate counts its answers (HIT, STALE, MISS, BYPASS), its origin fetches and renders
//! (regenerations among them), their failures and their latency in memory, in one bucket per
//! interval (`STATS_INTERVAL_S`, default 60 s, 0 = off). The first request after the interval
//! turns hands the finished bucket to background work (`waitUntil`), which writes it as one KV
//! key, `m/{bucket start}/{isolate id}`, with the counters in the key's metadata and an
//! `expirationTtl` a little over an hour: one write per isolate per interval, each key written
//! once (KV's one write per second per key is never approached), and the admin page reads the
//! last hour with one `list` call per 1,000 keys. Nothing is written while an isolate is idle,
//! and the bucket an isolate is in when it is evicted is lost.
//!
//! Cost: N isolates that serve traffic every minute write N × 60 keys an hour at the default
//! interval (README "Cost"). A coordinator (Durable Object) with periodic refreshes from each
//! isolate could carry these counters instead; [`Counters`] and [`hour_slots`] do not depend on
//! where the buckets are kept.

use super::Engine;
use crate::http::{Body, Response};
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::store::{layout, KvStore, PutOptions, StoreError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Upper bounds (ms) of the origin-latency histogram's buckets; the last bucket is "slower".
pub const LATENCY_BOUNDS_MS: [u64; 7] = [50, 100, 250, 500, 1000, 2500, 5000];

/// Finished buckets an isolate keeps while no request comes to flush them (oldest dropped).
const MAX_READY: usize = 3;

/// Most `list` calls the admin page makes to read the last hour (1,000 keys each).
const MAX_STATS_LISTS: usize = 10;

/// How long a bucket's key outlives its interval: the charts show one hour.
pub const HOUR_MS: u64 = 3_600_000;

/// What one isolate did during one interval. Short field names: the whole thing is a KV key's
/// metadata (at most 1,024 bytes; this is under 400 with every counter at `u64::MAX`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Start of the interval, ms since the epoch (a multiple of the interval).
    #[serde(rename = "t")]
    pub start_ms: u64,
    /// Length of the interval, seconds.
    #[serde(rename = "s")]
    pub interval_s: u64,
    /// Answers served fresh from KV.
    #[serde(rename = "h", default)]
    pub hit: u64,
    /// Answers served stale while a regeneration ran.
    #[serde(rename = "st", default)]
    pub stale: u64,
    /// Answers rendered while the visitor waited.
    #[serde(rename = "m", default)]
    pub miss: u64,
    /// Answers passed through uncached.
    #[serde(rename = "b", default)]
    pub bypass: u64,
    /// Pages asked of the origin or rendered by a route (MISS, regeneration, pre-render).
    #[serde(rename = "r", default)]
    pub renders: u64,
    /// Of those, background regenerations of stale pages.
    #[serde(rename = "rg", default)]
    pub regenerations: u64,
    /// Of those, the ones that failed (no answer, timeout, or a 5xx).
    #[serde(rename = "f", default)]
    pub failures: u64,
    /// Sum of the render/origin times, ms.
    #[serde(rename = "ls", default)]
    pub latency_sum_ms: u64,
    /// Slowest render/origin time, ms.
    #[serde(rename = "lm", default)]
    pub latency_max_ms: u64,
    /// Render/origin times per [`LATENCY_BOUNDS_MS`] bucket (one more for "slower").
    #[serde(rename = "lh", default)]
    pub latency_histogram: [u64; 8],
}

impl Counters {
    /// An empty bucket starting at `start_ms`.
    pub fn starting(start_ms: u64, interval_s: u64) -> Counters {
        Counters { start_ms, interval_s, ..Counters::default() }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.hit + self.stale + self.miss + self.bypass + self.renders == 0
    }

    /// Counts one answer by its `x-isr-cache` state (anything else is ignored).
    pub fn count_answer(&mut self, state: &str) {
        match state {
            "HIT" => self.hit += 1,
            "STALE" => self.stale += 1,
            "MISS" => self.miss += 1,
            "BYPASS" => self.bypass += 1,
            _ => {}
        }
    }

    /// Counts one render for `purpose` (`"regenerate"` counts as a regeneration) that took `ms`.
    pub fn count_render(&mut self, purpose: &str, ms: u64, failed: bool) {
        self.renders += 1;
        self.regenerations += u64::from(purpose == "regenerate");
        self.failures += u64::from(failed);
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(ms);
        self.latency_max_ms = self.latency_max_ms.max(ms);
        let bucket = LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency_histogram[bucket] += 1;
    }

    /// Adds `other`'s counts into this one (the interval stays this one's).
    pub fn merge(&mut self, other: &Counters) {
        self.hit += other.hit;
        self.stale += other.stale;
        self.miss += other.miss;
        self.bypass += other.bypass;
        self.renders += other.renders;
        self.regenerations += other.regenerations;
        self.failures += other.failures;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(other.latency_sum_ms);
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
        for (mine, theirs) in self.latency_histogram.iter_mut().zip(other.latency_histogram) {
            *mine += theirs;
        }
    }

    /// Share of cached answers (HIT and STALE) among HIT, STALE and MISS, in percent; `None`
    /// without any such answer. BYPASS answers are not the cache's to win or lose.
    pub fn hit_ratio_percent(&self) -> Option<f64> {
        let cached = self.hit + self.stale;
        let all = cached + self.miss;
        (all > 0).then(|| cached as f64 * 100.0 / all as f64)
    }

    /// Average render/origin time, ms; `None` without renders.
    pub fn latency_avg_ms(&self) -> Option<f64> {
        (self.renders > 0).then(|| self.latency_sum_ms as f64 / self.renders as f64)
    }
}

/// The last hour as consecutive slots of `slot_s` seconds (the last one holds `now_ms`),
/// each the sum of the buckets that started in it, from every isolate. Buckets older than the
/// hour (or from the future) are left out.
pub fn hour_slots(buckets: &[Counters], now_ms: u64, slot_s: u64) -> Vec<Counters> {
    let slot_ms = slot_s.max(1) * 1000;
    let count = (HOUR_MS / slot_ms).max(1);
    let last_start = now_ms - now_ms % slot_ms;
    let first_start = last_start.saturating_sub((count - 1) * slot_ms);
    let mut slots: Vec<Counters> = (0..count).map(|i| Counters::starting(first_start + i * slot_ms, slot_s)).collect();
    for b in buckets {
        if b.start_ms < first_start || b.start_ms > last_start {
            continue;
        }
        let i = ((b.start_ms - first_start) / slot_ms) as usize;
        if let Some(slot) = slots.get_mut(i) {
            slot.merge(b);
        }
    }
    slots
}

/// One isolate's counters: the bucket being filled and the finished ones not yet written.
#[derive(Default)]
pub struct IsolateStats {
    id: RefCell<String>,
    current: RefCell<Counters>,
    ready: RefCell<Vec<Counters>>,
}

impl IsolateStats {
    /// Names this isolate in its KV keys (on Workers: random at start-up). Without a name, the
    /// time of the first flush and a count of unnamed isolates in this process are used.
    pub fn set_id(&self, id: &str) {
        *self.id.borrow_mut() = id.to_string();
    }

    /// The bucket `now_ms` falls in, finishing the current one if the interval has turned.
    fn roll(&self, now_ms: u64, interval_s: u64) -> std::cell::RefMut<'_, Counters> {
        let interval_ms = interval_s * 1000;
        let start = now_ms - now_ms % interval_ms;
        let mut current = self.current.borrow_mut();
        if current.start_ms != start || current.interval_s != interval_s {
            let finished = std::mem::replace(&mut *current, Counters::starting(start, interval_s));
            if !finished.is_empty() {
                let mut ready = self.ready.borrow_mut();
                if ready.len() == MAX_READY {
                    ready.remove(0);
                }
                ready.push(finished);
            }
        }
        current
    }

    /// Counts an answer at `now_ms`; returns the finished buckets to write, if the interval
    /// turned. `interval_s` 0: counting is off.
    pub fn count_answer(&self, state: &str, now_ms: u64, interval_s: u64) -> Vec<Counters> {
        if interval_s == 0 {
            return Vec::new();
        }
        self.roll(now_ms, interval_s).count_answer(state);
        std::mem::take(&mut *self.ready.borrow_mut())
    }

    /// Counts a render at `now_ms` (its buckets are written by the next answer's flush).
    pub fn count_render(&self, purpose: &str, ms: u64, failed: bool, now_ms: u64, interval_s: u64) {
        if interval_s > 0 {
            self.roll(now_ms, interval_s).count_render(purpose, ms, failed);
        }
    }

    /// The bucket being filled.
    pub fn current(&self) -> Counters {
        self.current.borrow().clone()
    }

    /// What this isolate counted that is not in KV yet: finished buckets waiting for a request
    /// to write them, and the one being filled (the admin page adds them to what it reads).
    pub fn unwritten(&self) -> Vec<Counters> {
        let mut all = self.ready.borrow().clone();
        all.extend(Some(self.current()).filter(|c| !c.is_empty()));
        all
    }

    fn id_or(&self, now_ms: u64) -> String {
        static UNNAMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut id = self.id.borrow_mut();
        if id.is_empty() {
            let n = UNNAMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *id = format!("{now_ms:x}-{n}");
        }
        id.clone()
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Counts the answer `resp` (by its `x-isr-cache` header; the webhook's and the admin
    /// page's answers have none) and, once per interval, writes the finished bucket in the
    /// background. No KV operation on the request's own path.
    pub(crate) fn count_answer(&self, resp: &Response) {
        let Some(state) = resp.headers.get(super::CACHE_STATE_HEADER) else {
            return;
        };
        let now = self.clock.now_ms();
        let finished = self.isolate.stats.count_answer(state, now, self.config.stats_interval_s);
        if finished.is_empty() {
            return;
        }
        let this = self.clone();
        self.background.spawn(Box::pin(async move {
            for bucket in finished {
                this.write_bucket(&bucket, now).await;
            }
        }));
    }

    /// Counts one render or origin fetch for `purpose` that started at `started_ms`.
    pub(crate) fn count_render(&self, purpose: &str, started_ms: u64, failed: bool) {
        let now = self.clock.now_ms();
        let ms = now.saturating_sub(started_ms);
        self.isolate.stats.count_render(purpose, ms, failed, now, self.config.stats_interval_s);
    }

    async fn write_bucket(&self, bucket: &Counters, now_ms: u64) {
        let key = layout::stats_key(bucket.start_ms, &self.isolate.stats.id_or(now_ms));
        let opts = PutOptions {
            metadata: serde_json::to_string(bucket).ok(),
            expiration_ttl: Some(HOUR_MS / 1000 + bucket.interval_s + 60),
        };
        // Each key is written once: a 429 cannot be another write of ours; the bucket is dropped.
        if let Err(e) = self.store.put(&key, Body::new(), opts).await {
            self.log_event(Level::Warn, "counters_write_failed", &key, &format!("{e}; this interval's counters are dropped"));
        }
    }

    /// Every isolate's buckets of the last hour, from KV (one `list` per 1,000 keys, at most
    /// [`MAX_STATS_LISTS`]); the bool says whether some were left unread.
    pub async fn stats_of_last_hour(&self) -> Result<(Vec<Counters>, bool), StoreError> {
        let since = self.clock.now_ms().saturating_sub(HOUR_MS + self.config.stats_interval_s * 1000);
        let prefix = layout::stats_prefix();
        let mut cursor: Option<String> = None;
        let mut buckets = Vec::new();
        for _ in 0..MAX_STATS_LISTS {
            let page = self.store.list(&prefix, cursor.as_deref(), crate::store::limits::MAX_LIST_LIMIT).await?;
            buckets.extend(
                page.keys
                    .iter()
                    .filter_map(|k| serde_json::from_str::<Counters>(k.metadata.as_deref()?).ok())
                    .filter(|c| c.start_ms >= since),
            );
            if page.complete || page.cursor.is_none() {
                return Ok((buckets, false));
            }
            cursor = page.cursor;
        }
        Ok((buckets, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_renders_are_counted_per_bucket() {
        let mut c = Counters::starting(0, 60);
        for s in ["HIT", "HIT", "HIT", "STALE", "MISS", "BYPASS", "nonsense"] {
            c.count_answer(s);
        }
        c.count_render("miss", 40, false);
        c.count_render("regenerate", 300, true);
        c.count_render("regenerate", 9_000, false);
        assert_eq!((c.hit, c.stale, c.miss, c.bypass), (3, 1, 1, 1));
        assert_eq!((c.renders, c.regenerations, c.failures), (3, 2, 1));
        assert_eq!((c.latency_sum_ms, c.latency_max_ms), (9_340, 9_000));
        assert_eq!(c.latency_histogram, [1, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(c.hit_ratio_percent(), Some(80.0));
        assert_eq!(c.latency_avg_ms().map(|v| v.round()), Some(3113.0));
        assert_eq!(Counters::starting(0, 60).hit_ratio_percent(), None);
    }

    #[test]
    fn a_full_bucket_fits_kv_metadata() {
        let mut c = Counters::starting(u64::MAX, u64::MAX);
        c.hit = u64::MAX;
        c.latency_histogram = [u64::MAX; 8];
        let all = Counters { stale: u64::MAX, miss: u64::MAX, bypass: u64::MAX, renders: u64::MAX, regenerations: u64::MAX, failures: u64::MAX, latency_sum_ms: u64::MAX, latency_max_ms: u64::MAX, ..c };
        let json = serde_json::to_string(&all).unwrap();
        assert!(json.len() <= crate::store::limits::MAX_METADATA_BYTES, "{} bytes", json.len());
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), all);
    }

    #[test]
    fn a_bucket_is_handed_over_once_by_the_first_answer_after_the_interval_turns() {
        let s = IsolateStats::default();
        assert!(s.count_answer("HIT", 120_000, 60).is_empty());
        s.count_render("miss", 10, false, 150_000, 60);
        assert!(s.count_answer("MISS", 179_999, 60).is_empty());
        let finished = s.count_answer("HIT", 180_000, 60);
        assert_eq!(finished.len(), 1);
        assert_eq!((finished[0].start_ms, finished[0].hit, finished[0].miss, finished[0].renders), (120_000, 1, 1, 1));
        assert!(s.count_answer("HIT", 181_000, 60).is_empty(), "handed over once");
        assert_eq!(s.current().hit, 2);
        // Idle minutes write nothing; off means nothing is counted at all.
        assert_eq!(s.count_answer("HIT", 600_000, 60).len(), 1);
        let off = IsolateStats::default();
        assert!(off.count_answer("HIT", 0, 0).is_empty());
        assert!(off.count_answer("HIT", 120_000, 0).is_empty());
        assert!(off.current().is_empty());
    }

    #[test]
    fn the_hour_sums_every_isolate_per_slot_and_drops_older_buckets() {
        let now = 10 * HOUR_MS + 30_000;
        let at = |minutes_ago: u64, hit: u64| Counters { hit, ..Counters::starting(now - now % 60_000 - minutes_ago * 60_000, 60) };
        let buckets = [at(0, 1), at(0, 2), at(59, 4), at(60, 8), at(3, 16)];
        let slots = hour_slots(&buckets, now, 60);
        assert_eq!(slots.len(), 60);
        assert_eq!(slots[59].hit, 3, "two isolates, this minute");
        assert_eq!(slots[0].hit, 4, "59 minutes ago is the first slot");
        assert_eq!(slots[56].hit, 16);
        assert_eq!(slots.iter().map(|s| s.hit).sum::<u64>(), 23, "60 minutes ago is out");
        assert_eq!(hour_slots(&buckets, now, 300).len(), 12);
    }

    #[test]
    fn the_engine_counts_without_a_write_per_request_and_flushes_once_a_minute() {
        use crate::testing::Bench;
        use futures::executor::block_on;
        let b = Bench::new();
        b.origin.reply("/p", crate::testing::Reply::page("p", &[("cache-control", "s-maxage=3600")]));
        b.isolate.stats.set_id("iso-a");
        b.clock.set(3_600_000 * 300);
        block_on(async {
            b.get("/p").await;
            b.run_background().await;
            b.kv.reset_counts();
            for _ in 0..5 {
                b.get("/p").await;
            }
            b.run_background().await;
            assert_eq!(b.kv.counts().puts, 0, "no write for the counters within the minute");
            assert_eq!(b.kv.counts().gets, 5, "a HIT is one read");
            b.clock.advance(60_000);
            b.get("/p").await;
            b.run_background().await;
            assert_eq!(b.kv.counts().puts, 1, "one write when the minute turned");
            let (buckets, more) = b.engine().stats_of_last_hour().await.unwrap();
            assert!(!more);
            assert_eq!(buckets.len(), 1);
            let c = &buckets[0];
            assert_eq!((c.hit, c.miss, c.renders, c.failures), (5, 1, 1, 0), "{c:?}");
            assert!(b.kv.visible_keys().iter().any(|k| k == &format!("m/{:013}/iso-a", 3_600_000u64 * 300)));
        });
    }
}

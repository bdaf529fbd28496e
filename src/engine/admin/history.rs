//! The admin page's "last hour" section: every isolate's counters read from KV
//! ([`crate::engine::stats`]) and this isolate's unwritten ones, summed per slot and drawn
//! ([`super::charts`]).

use super::charts::hour_charts;
use crate::engine::stats::{hour_slots, Counters};
use crate::engine::Engine;
use crate::runtime::origin::Origin;
use crate::store::KvStore;

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// The template context of the charts: `off` when `STATS_INTERVAL_S` is 0, `error` when KV
    /// could not be read, otherwise the charts, the hour's totals, and how many intervals were
    /// read from KV (`written`).
    pub(crate) async fn admin_stats(&self) -> serde_json::Value {
        let interval_s = self.config.stats_interval_s;
        let unavailable = |off: bool, error: String| serde_json::json!({ "off": off, "error": error, "interval_s": interval_s, "charts": [], "totals": {}, "written": 0, "partial": false });
        if interval_s == 0 {
            return unavailable(true, String::new());
        }
        let (mut buckets, partial) = match self.stats_of_last_hour().await {
            Ok(r) => r,
            Err(e) => return unavailable(false, e.to_string()),
        };
        let written = buckets.len();
        // This isolate's own interval in progress, so the page is up to date for its traffic.
        buckets.extend(self.isolate.stats.unwritten());
        let slot_s = interval_s.max(60);
        let slots = hour_slots(&buckets, self.clock.now_ms(), slot_s);
        let mut hour = Counters::default();
        slots.iter().for_each(|s| hour.merge(s));
        serde_json::json!({
            "off": false,
            "error": "",
            "interval_s": interval_s,
            "charts": hour_charts(&slots, slot_s),
            "totals": {
                "hit": hour.hit, "stale": hour.stale, "miss": hour.miss, "bypass": hour.bypass,
                "renders": hour.renders, "failures": hour.failures,
            },
            "written": written,
            "partial": partial,
        })
    }
}

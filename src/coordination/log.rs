//! The invalidation log: every invalidation the webhook accepted, in order, for a few minutes.
//!
//! KV marks reach other locations only after KV's propagation delay (60 s and more). The log
//! lives in one strongly consistent place (the coordinator, a Durable Object), so an isolate
//! anywhere that reads it knows about an invalidation as soon as the webhook answered. Entries
//! are kept only as long as the KV marks and the re-check pass may still be on their way
//! ([`LOG_RETENTION_MS`]); after that the marks in KV say the same.

use crate::rules::invalidation::InvalidationMode;
use crate::runtime::clock::Millis;
use serde::{Deserialize, Serialize};

/// How long an entry is kept: beyond the re-check pass (its delay is derived from the timeouts:
/// 190 s at most, see `engine::jobs::recheck_delay_s`) and the re-check's own marks propagating
/// (60 s), with a margin: 5 minutes.
pub const LOG_RETENTION_MS: u64 = 300_000;

/// Most entries kept (bounded memory and rows): a flood of webhooks drops the oldest first.
/// Dropping an entry early only narrows that entry back to the KV-only window.
pub const MAX_LOG_ENTRIES: usize = 10_000;

/// One invalidation, as the webhook recorded it. Tags are kept as short hashes
/// ([`crate::coordination::matcher::tag_hash`]), paths as normalised `path?query` without a
/// host, prefixes as normalised paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log (1, 2, ...), given by the coordinator.
    pub seq: u64,
    /// When the invalidation took effect (ms): pages rendered before it are affected.
    pub at: Millis,
    /// Tag hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Exact pages (`/path?query`), on any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Path prefixes, on any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Stale or expire.
    #[serde(default)]
    pub mode: InvalidationMode,
}

/// What the webhook asks the coordinator to record (an entry without its `seq`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    /// See [`LogEntry::at`].
    pub at: Millis,
    /// See [`LogEntry::tags`].
    #[serde(default)]
    pub tags: Vec<String>,
    /// See [`LogEntry::paths`].
    #[serde(default)]
    pub paths: Vec<String>,
    /// See [`LogEntry::prefixes`].
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// See [`LogEntry::mode`].
    #[serde(default)]
    pub mode: InvalidationMode,
}

impl NewEntry {
    /// The entry at position `seq`.
    pub fn with_seq(self, seq: u64) -> LogEntry {
        LogEntry {
            seq,
            at: self.at,
            tags: self.tags,
            paths: self.paths,
            prefixes: self.prefixes,
            mode: self.mode,
        }
    }
}

/// A slice of the log: entries after some position, and the position reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSlice {
    /// The newest position in the log (0 when it never had an entry).
    pub seq: u64,
    /// Entries after the position asked for, oldest first.
    pub entries: Vec<LogEntry>,
    /// The Workers Cache purge planner's state (from the coordinator; `None` from an older one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<crate::coordination::purges::PurgeStatus>,
}

/// The log itself, in memory (the per-isolate copy, and the model of the coordinator's table).
#[derive(Clone, Debug, Default)]
pub struct InvalidationLog {
    entries: Vec<LogEntry>,
    seq: u64,
}

impl InvalidationLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry; returns its position.
    pub fn append(&mut self, entry: NewEntry) -> u64 {
        self.seq += 1;
        self.entries.push(entry.with_seq(self.seq));
        if self.entries.len() > MAX_LOG_ENTRIES {
            let excess = self.entries.len() - MAX_LOG_ENTRIES;
            self.entries.drain(..excess);
        }
        self.seq
    }

    /// Adds entries read from the coordinator (ignoring ones already known) and moves the
    /// position reached to `slice.seq`.
    pub fn extend(&mut self, slice: LogSlice) {
        self.entries.extend(slice.entries);
        self.entries.sort_by_key(|e| e.seq);
        self.entries.dedup_by_key(|e| e.seq);
        if self.entries.len() > MAX_LOG_ENTRIES {
            let excess = self.entries.len() - MAX_LOG_ENTRIES;
            self.entries.drain(..excess);
        }
        self.seq = self.seq.max(slice.seq);
    }

    /// Entries after position `seq`, and the newest position.
    pub fn since(&self, seq: u64) -> LogSlice {
        LogSlice {
            seq: self.seq,
            entries: self.entries.iter().filter(|e| e.seq > seq).cloned().collect(),
            purge: None,
        }
    }

    /// Drops entries that took effect before `horizon` (ms); returns how many were dropped.
    pub fn prune(&mut self, horizon: Millis) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.at >= horizon);
        before - self.entries.len()
    }

    /// The newest position.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Entries kept, oldest first.
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Millis, path: &str) -> NewEntry {
        NewEntry {
            at,
            paths: vec![path.to_string()],
            ..Default::default()
        }
    }

    #[test]
    fn appends_in_order_and_reads_back_what_follows_a_position() {
        let mut log = InvalidationLog::new();
        assert_eq!(log.since(0), LogSlice::default());
        assert_eq!(log.append(entry(10, "/a")), 1);
        assert_eq!(log.append(entry(20, "/b")), 2);
        assert_eq!(log.append(entry(30, "/c")), 3);
        let slice = log.since(1);
        assert_eq!(slice.seq, 3);
        assert_eq!(slice.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(log.since(3).entries.is_empty());
    }

    #[test]
    fn prunes_entries_older_than_the_horizon_and_keeps_its_position() {
        let mut log = InvalidationLog::new();
        log.append(entry(10, "/a"));
        log.append(entry(20, "/b"));
        assert_eq!(log.prune(15), 1);
        assert_eq!(log.entries().len(), 1);
        assert_eq!(log.seq(), 2, "positions are never reused");
        assert_eq!(log.append(entry(30, "/c")), 3);
    }

    #[test]
    fn is_bounded() {
        let mut log = InvalidationLog::new();
        for i in 0..(MAX_LOG_ENTRIES as u64 + 5) {
            log.append(entry(i, "/x"));
        }
        assert_eq!(log.entries().len(), MAX_LOG_ENTRIES);
        assert_eq!(log.entries()[0].seq, 6, "the oldest went first");
    }

    #[test]
    fn a_copy_extends_without_duplicates() {
        let mut source = InvalidationLog::new();
        source.append(entry(10, "/a"));
        source.append(entry(20, "/b"));
        let mut copy = InvalidationLog::new();
        copy.extend(source.since(0));
        copy.extend(source.since(0));
        assert_eq!(copy.entries().len(), 2);
        source.append(entry(30, "/c"));
        copy.extend(source.since(copy.seq()));
        assert_eq!(copy.seq(), 3);
        assert_eq!(copy.entries().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn entries_serialize_compactly() {
        let e = entry(5, "/a").with_seq(1);
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"seq":1,"at":5,"paths":["/a"],"mode":"stale"}"#);
        let back: LogEntry = serde_json::from_str(r#"{"seq":1,"at":5,"paths":["/a"]}"#).unwrap();
        assert_eq!(back, e);
    }
}

//! An in-memory [`KvStore`] that behaves like Workers KV where it matters for correctness.
//!
//! `wrangler dev` enforces few of KV's limits, so this store is where tests meet them:
//! key/value/metadata sizes, the 60 s minimum TTL, one write per second per key (429),
//! 1,000 operations per invocation, and eventual consistency between locations: a write is
//! visible at once in the location that made it and only after a propagation delay elsewhere
//! (reads *and* lists). Handles made with [`MemoryKv::location`] share data but see it from
//! another location. Faults can be injected with [`MemoryKv::fail_next`].
//!
//! [`KvStore::get_to_serve`] hands back bodies the engine cannot read ([`Body::served`]), as on
//! Workers, where such a read is a stream from KV into the response: a test in which the engine
//! reads a served body panics, so no test passes on a path that would break in production.

use crate::runtime::clock::{Clock, Millis};
use crate::http::Body;
use crate::store::{limits, validate_key, validate_put, KvStore, ListPage, ListedKey, PutOptions, StoreError, StoredValue};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Which operation a fault or a count refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `get`
    Get,
    /// `put`
    Put,
    /// `delete`
    Delete,
    /// `list`
    List,
}

/// How many operations of each kind were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Reads.
    pub gets: u32,
    /// Writes.
    pub puts: u32,
    /// Deletes.
    pub deletes: u32,
    /// List calls.
    pub lists: u32,
}

impl OpCounts {
    /// All operations together.
    pub fn total(&self) -> u32 {
        self.gets + self.puts + self.deletes + self.lists
    }
}

#[derive(Clone, Debug)]
struct Write {
    at: Millis,
    location: u32,
    /// `None` for a delete.
    entry: Option<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    value: Body,
    metadata: Option<String>,
    expires_at: Option<Millis>,
}

struct Shared {
    clock: Rc<dyn Clock>,
    /// Every key's recent writes, oldest first.
    keys: BTreeMap<String, Vec<Write>>,
    propagation_ms: u64,
    /// How long each read takes ([`MemoryKv::with_read_latency`]).
    read_latency_ms: u64,
    op_limit: u32,
    ops_this_invocation: u32,
    counts: OpCounts,
    faults: VecDeque<(Op, String, StoreError)>,
    hooks: Vec<(Op, String, Hook)>,
}

/// Work a test runs just before an operation, to land a concurrent write at an exact point.
type Hook = Box<dyn FnOnce()>;

/// The in-memory store. Cloning gives another handle on the same data and location.
#[derive(Clone)]
pub struct MemoryKv {
    shared: Rc<RefCell<Shared>>,
    location: u32,
}

impl MemoryKv {
    /// An empty store at location 0 with no propagation delay.
    pub fn new(clock: Rc<dyn Clock>) -> Self {
        Self {
            shared: Rc::new(RefCell::new(Shared {
                clock,
                keys: BTreeMap::new(),
                propagation_ms: 0,
                read_latency_ms: 0,
                op_limit: limits::MAX_OPERATIONS_PER_INVOCATION,
                ops_this_invocation: 0,
                counts: OpCounts::default(),
                faults: VecDeque::new(),
                hooks: Vec::new(),
            })),
            location: 0,
        }
    }

    /// Sets how long a write takes to become visible in other locations (KV: up to 60 s).
    pub fn with_propagation_delay(self, ms: u64) -> Self {
        self.shared.borrow_mut().propagation_ms = ms;
        self
    }

    /// Makes every read take `ms` on the store's clock (a manual clock just moves on), so that
    /// what the engine measures around a read can be checked.
    pub fn with_read_latency(self, ms: u64) -> Self {
        self.shared.borrow_mut().read_latency_ms = ms;
        self
    }

    /// A handle on the same data, seen from location `location`.
    pub fn location(&self, location: u32) -> Self {
        Self {
            shared: self.shared.clone(),
            location,
        }
    }

    /// Starts a new worker invocation: the per-invocation operation count restarts at zero.
    pub fn begin_invocation(&self) {
        self.shared.borrow_mut().ops_this_invocation = 0;
    }

    /// Operations made in the current invocation.
    pub fn ops_this_invocation(&self) -> u32 {
        self.shared.borrow().ops_this_invocation
    }

    /// Operations made since the store was created (or since [`MemoryKv::reset_counts`]).
    pub fn counts(&self) -> OpCounts {
        self.shared.borrow().counts
    }

    /// Sets the operation counters back to zero.
    pub fn reset_counts(&self) {
        self.shared.borrow_mut().counts = OpCounts::default();
    }

    /// Makes the next `op` fail with `error` (queued in order).
    pub fn fail_next(&self, op: Op, error: StoreError) {
        self.fail_next_for(op, "", error);
    }

    /// Makes the next `op` on a key starting with `key_prefix` fail with `error`.
    pub fn fail_next_for(&self, op: Op, key_prefix: &str, error: StoreError) {
        self.shared.borrow_mut().faults.push_back((op, key_prefix.to_string(), error));
    }

    /// Runs `hook` just before the next `op` on a key starting with `key_prefix` (after the
    /// operations before it, before this one is applied): how a test lands another writer's
    /// write between an engine's read and its write. The hook may use the store.
    pub fn before_next(&self, op: Op, key_prefix: &str, hook: impl FnOnce() + 'static) {
        self.shared.borrow_mut().hooks.push((op, key_prefix.to_string(), Box::new(hook)));
    }

    /// Keys visible from this location now, for assertions.
    pub fn visible_keys(&self) -> Vec<String> {
        let shared = self.shared.borrow();
        let now = shared.clock.now_ms();
        shared
            .keys
            .iter()
            .filter(|(_, writes)| visible(writes, self.location, now, shared.propagation_ms).is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Counts an operation, applies injected faults and the per-invocation limit.
    fn begin(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let hook = {
            let mut s = self.shared.borrow_mut();
            let pos = s.hooks.iter().position(|(o, prefix, _)| *o == op && key.starts_with(prefix.as_str()));
            pos.map(|p| s.hooks.remove(p).2)
        };
        if let Some(hook) = hook {
            hook();
        }
        let mut s = self.shared.borrow_mut();
        if let Some(pos) = s.faults.iter().position(|(o, prefix, _)| *o == op && key.starts_with(prefix.as_str())) {
            let (_, _, err) = s.faults.remove(pos).expect("position is in range");
            return Err(err);
        }
        if s.ops_this_invocation >= s.op_limit {
            return Err(StoreError::OperationLimit);
        }
        s.ops_this_invocation += 1;
        match op {
            Op::Get => s.counts.gets += 1,
            Op::Put => s.counts.puts += 1,
            Op::Delete => s.counts.deletes += 1,
            Op::List => s.counts.lists += 1,
        }
        Ok(())
    }

    fn write(&self, key: &str, entry: Option<Entry>) -> Result<(), StoreError> {
        let mut s = self.shared.borrow_mut();
        let now = s.clock.now_ms();
        let propagation = s.propagation_ms;
        let writes = s.keys.entry(key.to_string()).or_default();
        if let Some(last) = writes.last() {
            if now < last.at + limits::WRITE_INTERVAL_MS {
                return Err(StoreError::RateLimited);
            }
        }
        writes.push(Write {
            at: now,
            location: self.location,
            entry,
        });
        // Writes older than the newest one visible everywhere can never be read again.
        if let Some(settled) = writes.iter().rposition(|w| now >= w.at + propagation) {
            writes.drain(..settled);
        }
        Ok(())
    }
}

/// The entry a reader at `location` sees at `now`: its own location's writes at once,
/// other locations' writes after `propagation_ms`.
fn visible(writes: &[Write], location: u32, now: Millis, propagation_ms: u64) -> Option<&Entry> {
    let write = writes
        .iter()
        .rev()
        .find(|w| w.location == location || now >= w.at + propagation_ms)?;
    let entry = write.entry.as_ref()?;
    match entry.expires_at {
        Some(t) if now >= t => None,
        _ => Some(entry),
    }
}

/// The bytes of a response body, for a test: also those of a page read with
/// [`KvStore::get_to_serve`], which the engine itself may not read ([`Body::served`]).
pub fn served_bytes(body: &Body) -> Vec<u8> {
    match body.as_served().and_then(|handle| handle.downcast_ref::<Body>()) {
        Some(stored) => stored.to_vec(),
        None => body.to_vec(),
    }
}

impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        let latency = {
            let s = self.shared.borrow();
            (s.read_latency_ms > 0).then(|| s.clock.sleep(s.read_latency_ms))
        };
        if let Some(latency) = latency {
            latency.await;
        }
        self.begin(Op::Get, key)?;
        validate_key(key)?;
        let s = self.shared.borrow();
        let now = s.clock.now_ms();
        Ok(s.keys
            .get(key)
            .and_then(|w| visible(w, self.location, now, s.propagation_ms))
            .map(|e| StoredValue {
                value: e.value.clone(),
                metadata: e.metadata.clone(),
            }))
    }

    async fn get_to_serve(&self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.get(key).await?.map(|v| StoredValue {
            value: Body::served(Rc::new(v.value)),
            metadata: v.metadata,
        }))
    }

    async fn put(&self, key: &str, value: Body, opts: PutOptions) -> Result<(), StoreError> {
        self.begin(Op::Put, key)?;
        validate_put(key, value.len(), &opts)?;
        let now = self.shared.borrow().clock.now_ms();
        self.write(
            key,
            Some(Entry {
                value,
                metadata: opts.metadata,
                expires_at: opts.expiration_ttl.map(|s| now + s * 1000),
            }),
        )
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.begin(Op::Delete, key)?;
        validate_key(key)?;
        self.write(key, None)
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, StoreError> {
        self.begin(Op::List, prefix)?;
        let limit = limit.clamp(1, limits::MAX_LIST_LIMIT) as usize;
        let s = self.shared.borrow();
        let now = s.clock.now_ms();
        let start = cursor.unwrap_or(prefix);
        let mut keys = Vec::new();
        let mut more = false;
        for (name, writes) in s.keys.range(start.to_string()..) {
            if !name.starts_with(prefix) {
                break;
            }
            if cursor == Some(name.as_str()) {
                continue; // the cursor is the last key already returned
            }
            if let Some(entry) = visible(writes, self.location, now, s.propagation_ms) {
                if keys.len() == limit {
                    more = true;
                    break;
                }
                keys.push(ListedKey {
                    name: name.clone(),
                    metadata: entry.metadata.clone(),
                });
            }
        }
        let cursor = if more { keys.last().map(|k| k.name.clone()) } else { None };
        Ok(ListPage {
            keys,
            complete: !more,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::ManualClock;
    use futures::executor::block_on;

    fn store() -> (ManualClock, MemoryKv) {
        let clock = ManualClock::new(1_000_000);
        let kv = MemoryKv::new(Rc::new(clock.clone()));
        (clock, kv)
    }

    fn meta(m: &str) -> PutOptions {
        PutOptions {
            metadata: Some(m.to_string()),
            expiration_ttl: None,
        }
    }

    #[test]
    fn round_trips_value_and_metadata() {
        let (_, kv) = store();
        block_on(kv.put("k", Body::from("v"), meta("{\"a\":1}"))).unwrap();
        let got = block_on(kv.get("k")).unwrap().unwrap();
        assert_eq!(got.value, Body::from("v"));
        assert_eq!(got.metadata.as_deref(), Some("{\"a\":1}"));
    }

    #[test]
    fn enforces_key_value_and_metadata_limits() {
        let (_, kv) = store();
        let long = "k".repeat(513);
        assert!(matches!(block_on(kv.get(&long)), Err(StoreError::InvalidKey(_))));
        assert!(matches!(block_on(kv.get("")), Err(StoreError::InvalidKey(_))));
        assert!(matches!(block_on(kv.get("..")), Err(StoreError::InvalidKey(_))));
        assert!(block_on(kv.get(&"k".repeat(512))).is_ok());
        let big_meta = format!("\"{}\"", "m".repeat(1023));
        assert_eq!(
            block_on(kv.put("k", Body::new(), meta(&big_meta))),
            Err(StoreError::MetadataTooLarge(1025))
        );
        let big = Body::from(vec![0u8; limits::MAX_VALUE_BYTES + 1]);
        assert!(matches!(
            block_on(kv.put("k", big, PutOptions::default())),
            Err(StoreError::ValueTooLarge(_))
        ));
        let short_ttl = PutOptions {
            metadata: None,
            expiration_ttl: Some(59),
        };
        assert_eq!(
            block_on(kv.put("k", Body::new(), short_ttl)),
            Err(StoreError::InvalidExpiration(59))
        );
    }

    #[test]
    fn second_write_to_a_key_within_a_second_is_rate_limited() {
        let (clock, kv) = store();
        block_on(kv.put("k", Body::from("1"), PutOptions::default())).unwrap();
        clock.advance(999);
        assert_eq!(
            block_on(kv.put("k", Body::from("2"), PutOptions::default())),
            Err(StoreError::RateLimited)
        );
        assert_eq!(block_on(kv.delete("k")), Err(StoreError::RateLimited));
        // Another key is not affected.
        block_on(kv.put("other", Body::from("x"), PutOptions::default())).unwrap();
        clock.advance(1);
        block_on(kv.put("k", Body::from("2"), PutOptions::default())).unwrap();
        assert_eq!(block_on(kv.get("k")).unwrap().unwrap().value, Body::from("2"));
    }

    #[test]
    fn operations_per_invocation_are_limited_to_1000() {
        let (_, kv) = store();
        for _ in 0..1000 {
            block_on(kv.get("k")).unwrap();
        }
        assert_eq!(block_on(kv.get("k")), Err(StoreError::OperationLimit));
        kv.begin_invocation();
        assert!(block_on(kv.get("k")).is_ok());
        assert_eq!(kv.counts().gets, 1001);
    }

    #[test]
    fn writes_reach_other_locations_only_after_the_propagation_delay() {
        let (clock, kv) = store();
        let kv = kv.with_propagation_delay(60_000);
        let far = kv.location(1);
        block_on(kv.put("k", Body::from("1"), PutOptions::default())).unwrap();
        assert!(block_on(kv.get("k")).unwrap().is_some(), "visible where written");
        assert!(block_on(far.get("k")).unwrap().is_none(), "not yet visible elsewhere");
        assert!(block_on(far.list("", None, 10)).unwrap().keys.is_empty());
        clock.advance(60_000);
        assert!(block_on(far.get("k")).unwrap().is_some());
        // A far delete hides the key far away at once, here only later.
        block_on(far.delete("k")).unwrap();
        assert!(block_on(far.get("k")).unwrap().is_none());
        assert!(block_on(kv.get("k")).unwrap().is_some());
        clock.advance(60_000);
        assert!(block_on(kv.get("k")).unwrap().is_none());
    }

    #[test]
    fn expired_keys_disappear() {
        let (clock, kv) = store();
        let opts = PutOptions {
            metadata: None,
            expiration_ttl: Some(60),
        };
        block_on(kv.put("k", Body::from("1"), opts)).unwrap();
        clock.advance(59_999);
        assert!(block_on(kv.get("k")).unwrap().is_some());
        clock.advance(1);
        assert!(block_on(kv.get("k")).unwrap().is_none());
    }

    #[test]
    fn list_pages_through_a_prefix_in_byte_order() {
        let (_, kv) = store();
        for i in 0..25 {
            block_on(kv.put(&format!("t/a/{i:02}"), Body::new(), PutOptions::default())).unwrap();
        }
        block_on(kv.put("t/b/1", Body::new(), PutOptions::default())).unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = block_on(kv.list("t/a/", cursor.as_deref(), 10)).unwrap();
            seen.extend(page.keys.iter().map(|k| k.name.clone()));
            if page.complete {
                break;
            }
            cursor = page.cursor;
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen[0], "t/a/00");
        assert_eq!(seen[24], "t/a/24");
    }

    #[test]
    fn injected_faults_fail_the_next_matching_operation_once() {
        let (_, kv) = store();
        kv.fail_next(Op::Put, StoreError::Unavailable("boom".into()));
        assert!(block_on(kv.get("k")).is_ok());
        assert!(block_on(kv.put("k", Body::new(), PutOptions::default())).is_err());
        assert!(block_on(kv.put("k", Body::new(), PutOptions::default())).is_ok());
    }
}

//! TEST DOUBLE of `ctx.cache` for the end-to-end suite: the local runtime (`wrangler dev`,
//! miniflare, as of late 2026) has no Workers Cache and no `ctx.cache`, so e2e tests cannot see
//! a real purge. When the worker runs with `WORKERS_CACHE_TEST_DOUBLE = "record"` (set only by
//! the e2e suite), purges go to this recorder instead: each call is written to KV under
//! [`RECORD_PREFIX`] (with Workers Cache's documented limits applied: at most 100 targets per
//! call, 5 calls a minute with bursts of 25; a refused call is recorded as refused), and the
//! e2e-only route reads them back. Never used in production: without that variable the
//! adapter purges through `ctx.cache`, or not at all when it is absent.

use crate::http::Body;
use crate::runtime::clock::{Clock, Millis};
use crate::store::{KvStore, ListPage, PutOptions, StoreError};
use crate::tier::purge::{PurgeError, PurgeRequest, TokenBucket, MAX_TARGETS_PER_REQUEST};
use crate::tier::send::CachePurger;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The value of `WORKERS_CACHE_TEST_DOUBLE` that switches the recorder on.
pub const TEST_DOUBLE_RECORD: &str = "record";

/// KV prefix of the recorded purge calls.
pub const RECORD_PREFIX: &str = "e2e/tier-purges/";

/// Seconds a record is kept.
const RECORD_TTL_S: u64 = 3_600;

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    /// When it was made (ms).
    pub at: Millis,
    /// What it asked for.
    pub request: PurgeRequest,
    /// Whether the limits refused it (and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The recorder (see the module documentation). Its bucket is this isolate's: `wrangler dev`
/// runs one isolate, so it sees every call the worker makes there.
pub struct RecordingPurger<S: KvStore> {
    store: Rc<S>,
    clock: Rc<dyn Clock>,
    limits: Rc<RecorderLimits>,
}

/// The recorder's rate limit and call numbers, kept by the isolate across requests.
#[derive(Debug)]
pub struct RecorderLimits {
    bucket: RefCell<TokenBucket>,
    seq: Cell<u64>,
}

impl RecorderLimits {
    /// Limits drawing on `bucket`.
    pub fn new(bucket: TokenBucket) -> Rc<Self> {
        Rc::new(RecorderLimits {
            bucket: RefCell::new(bucket),
            seq: Cell::new(0),
        })
    }
}

impl<S: KvStore> RecordingPurger<S> {
    /// Records into `store`, timing calls with `clock`, within `limits`.
    pub fn new(store: Rc<S>, clock: Rc<dyn Clock>, limits: Rc<RecorderLimits>) -> Self {
        RecordingPurger { store, clock, limits }
    }
}

impl<S: KvStore> CachePurger for RecordingPurger<S> {
    fn available(&self) -> bool {
        true
    }

    fn purge<'a>(&'a self, request: &'a PurgeRequest) -> LocalBoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let at = self.clock.now_ms();
            let refused = if request.len() > MAX_TARGETS_PER_REQUEST {
                Some(format!("{} targets (at most {MAX_TARGETS_PER_REQUEST})", request.len()))
            } else if !self.limits.bucket.borrow_mut().take(at) {
                Some("rate limited".to_string())
            } else {
                None
            };
            let record = PurgeRecord {
                at,
                request: request.clone(),
                refused: refused.clone(),
            };
            let n = self.limits.seq.get() + 1;
            self.limits.seq.set(n);
            let key = format!("{RECORD_PREFIX}{at:015}-{n:06}");
            let json = serde_json::to_string(&record).map_err(|e| PurgeError::Failed(e.to_string()))?;
            self.store
                .put(&key, Body::from(json), PutOptions { metadata: None, expiration_ttl: Some(RECORD_TTL_S) })
                .await
                .map_err(|e| PurgeError::Failed(format!("recording failed: {e}")))?;
            match refused {
                Some(r) if r == "rate limited" => Err(PurgeError::RateLimited),
                Some(r) => Err(PurgeError::Failed(r)),
                None => Ok(()),
            }
        })
    }
}

/// Reads every recorded call back, oldest first (for the e2e-only route).
pub async fn recorded<S: KvStore>(store: &S) -> Result<Vec<PurgeRecord>, StoreError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page: ListPage = store.list(RECORD_PREFIX, cursor.as_deref(), 1000).await?;
        for key in &page.keys {
            if let Some(v) = store.get(&key.name).await? {
                if let Ok(r) = serde_json::from_slice::<PurgeRecord>(&v.value) {
                    out.push(r);
                }
            }
        }
        if page.complete {
            break;
        }
        cursor = page.cursor;
    }
    out.sort_by_key(|r| r.at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::ManualClock;
    use crate::store::memory::MemoryKv;
    use futures::executor::block_on;

    #[test]
    fn records_every_call_and_refuses_like_the_platform() {
        let clock = ManualClock::new(1_000_000);
        let store = Rc::new(MemoryKv::new(Rc::new(clock.clone())));
        let purger = RecordingPurger::new(store.clone(), Rc::new(clock.clone()), RecorderLimits::new(TokenBucket::new(2, 12_000, 1_000_000)));
        block_on(async {
            let one = PurgeRequest { tags: vec!["posts".into()], ..Default::default() };
            assert_eq!(purger.purge(&one).await, Ok(()));
            clock.advance(1_500);
            assert_eq!(purger.purge(&one).await, Ok(()));
            assert_eq!(purger.purge(&one).await, Err(PurgeError::RateLimited));
            let big = PurgeRequest { tags: (0..101).map(|i| format!("t{i}")).collect(), ..Default::default() };
            assert!(matches!(purger.purge(&big).await, Err(PurgeError::Failed(_))));
            let all = recorded(&*store).await.unwrap();
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].request, one);
            assert_eq!(all.iter().filter(|r| r.refused.is_some()).count(), 2);
            assert!(all[1].at > all[0].at);
        });
    }
}

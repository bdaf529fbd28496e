//! Deleting what an old `CACHE_VERSION` left in KV (pages, tag index, leases, listings).
//!
//! Changing `CACHE_VERSION` starts from an empty cache; the old version's keys are never read
//! again, but KV keeps them (and bills their storage) until deleted. Each cron run records the
//! version in use (`v/{version}`, with when it was last seen) and deletes, in queued batches,
//! every key of a version not seen for [`RETIRED_AFTER_MS`]: a version that another deployment
//! on the same KV namespace still uses is refreshed by that deployment's own cron every 30
//! minutes, so it is never taken for retired.
//!
//! Cost: 1 write and 1 list per cron run; for a retired version, 1 list per 1,000 keys and 1
//! delete per key, about 900 keys per invocation.

use super::Engine;
use crate::engine::jobs::{Job, OpBudget, OPS_PER_INVOCATION};
use crate::http::Body;
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::store::{layout, KvStore, PutOptions};
use serde::{Deserialize, Serialize};

/// How long a cache version must have gone unseen by any cron run before its keys are deleted.
pub const RETIRED_AFTER_MS: u64 = 24 * 3600 * 1000;

/// A batch of deleting one retired version's keys, carried by the job queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupJob {
    /// The retired `CACHE_VERSION`.
    pub cleanup_version: String,
    /// Which of [`layout::version_prefixes`] is being listed.
    pub kind: usize,
    /// Where to continue listing it.
    pub cursor: Option<String>,
}

/// What a cleanup run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Retired versions found.
    pub retired: Vec<String>,
    /// Keys deleted.
    pub deleted: u32,
    /// Whether work was left to queued jobs.
    pub queued: bool,
    /// What failed (the next cron run tries again).
    pub errors: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Seen {
    /// When a cron run of this version last ran (ms).
    seen: u64,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// The cron's cleanup: records this version as in use, and deletes the keys of versions
    /// no cron has seen for a day (continuing in queued jobs).
    pub async fn clean_old_versions(&self) -> CleanupReport {
        let mut report = CleanupReport::default();
        let now = self.clock.now_ms();
        let current = &self.config.cache_version;
        let seen = serde_json::to_string(&Seen { seen: now }).unwrap_or_default();
        let opts = PutOptions {
            metadata: Some(seen),
            expiration_ttl: None,
        };
        if let Err(e) = self.put_with_retry(&layout::version_key(current), Body::new(), opts).await {
            report.errors.push(format!("recording cache version {current}: {e}"));
        }
        let listed = match self.store.list(layout::VERSION_PREFIX, None, 1000).await {
            Ok(page) => page.keys,
            Err(e) => {
                report.errors.push(format!("listing cache versions: {e}"));
                return report;
            }
        };
        let budget = OpBudget::new(OPS_PER_INVOCATION.saturating_sub(2));
        for key in listed {
            let Some(version) = key.name.strip_prefix(layout::VERSION_PREFIX) else { continue };
            let last_seen = key.metadata.as_deref().and_then(|m| serde_json::from_str::<Seen>(m).ok()).map_or(0, |s| s.seen);
            if version == current || now.saturating_sub(last_seen) < RETIRED_AFTER_MS {
                continue;
            }
            report.retired.push(version.to_string());
            let job = CleanupJob {
                cleanup_version: version.to_string(),
                kind: 0,
                cursor: None,
            };
            self.clean_within(job, &budget, &mut report).await;
        }
        if !report.retired.is_empty() {
            self.log_event(Level::Info, "versions_retired", "", &format!("cache versions {:?} retired: deleted {} key(s)", report.retired, report.deleted));
        }
        report
    }

    /// Runs one queued cleanup batch with a fresh budget.
    pub async fn run_cleanup(&self, job: CleanupJob) -> CleanupReport {
        let mut report = CleanupReport::default();
        self.clean_within(job, &OpBudget::new(OPS_PER_INVOCATION), &mut report).await;
        report
    }

    async fn clean_within(&self, mut job: CleanupJob, budget: &OpBudget, report: &mut CleanupReport) {
        if job.cleanup_version == self.config.cache_version {
            return; // never the version in use
        }
        let prefixes = layout::version_prefixes(&job.cleanup_version);
        while let Some(prefix) = prefixes.get(job.kind) {
            let limit = budget.remaining().saturating_sub(1).min(1000);
            if limit == 0 || !budget.take(1) {
                return self.continue_cleanup(job, report).await;
            }
            let page = match self.store.list(prefix, job.cursor.as_deref(), limit).await {
                Ok(page) => page,
                Err(e) => {
                    report.errors.push(format!("listing {prefix}: {e}"));
                    return self.continue_cleanup(job, report).await;
                }
            };
            for key in &page.keys {
                budget.take(1);
                match self.delete_with_retry(&key.name).await {
                    Ok(()) => report.deleted += 1,
                    Err(e) => report.errors.push(format!("deleting {}: {e}", key.name)),
                }
            }
            if page.complete {
                job.kind += 1;
                job.cursor = None;
            } else {
                job.cursor = page.cursor;
            }
        }
        if budget.take(1) {
            if let Err(e) = self.delete_with_retry(&layout::version_key(&job.cleanup_version)).await {
                report.errors.push(format!("forgetting version {}: {e}", job.cleanup_version));
            }
        }
    }

    async fn continue_cleanup(&self, job: CleanupJob, report: &mut CleanupReport) {
        match &self.jobs {
            Some(queue) => match queue.enqueue(Job::Cleanup(job), 0).await {
                Ok(()) => report.queued = true,
                Err(e) => report.errors.push(format!("queueing the rest of the cleanup: {e}")),
            },
            None => report.errors.push("no queue bound: the next cron run continues the cleanup".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::jobs::MemoryJobQueue;
    use crate::rules::config::Config;
    use crate::testing::{Bench, Reply};
    use futures::executor::block_on;
    use std::rc::Rc;

    /// The same store and clock, with another `CACHE_VERSION` (a new deployment).
    fn redeployed(b: &Bench, version: &str) -> Bench {
        let mut config = (*b.config).clone();
        config.cache_version = version.to_string();
        Bench {
            config: Rc::new(config),
            ..b.other_isolate(0)
        }
    }

    async fn store_pages(b: &Bench, n: usize) {
        for i in 0..n {
            let path = format!("/p/{i:04}");
            b.origin.reply(&path, Reply::page("x", &[("cache-tag", "a, b")]));
            b.get(&path).await;
            b.run_background().await;
        }
    }

    fn keys_of(b: &Bench, version: &str) -> usize {
        let prefixes = layout::version_prefixes(version);
        b.kv.visible_keys().iter().filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))).count()
    }

    #[test]
    fn a_version_unseen_for_a_day_is_deleted_and_the_one_in_use_is_kept() {
        let old = Bench::with_config(Config::for_origin("http://origin.test"));
        block_on(async {
            store_pages(&old, 3).await;
            assert!(old.engine().clean_old_versions().await.retired.is_empty());
            let new = redeployed(&old, "2");
            store_pages(&new, 2).await;
            let (before_old, before_new) = (keys_of(&old, "1"), keys_of(&new, "2"));
            assert_eq!(before_old, 3 * 4, "page, member of a and b, tag list");
            // Another deployment may still use version 1: kept while its cron has run recently.
            old.clock.advance(3_600_000);
            assert!(new.engine().clean_old_versions().await.retired.is_empty());
            old.clock.advance(RETIRED_AFTER_MS);
            let report = new.engine().clean_old_versions().await;
            assert_eq!(report.retired, vec!["1".to_string()]);
            assert_eq!((keys_of(&old, "1"), keys_of(&new, "2")), (0, before_new));
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert!(!new.kv.visible_keys().contains(&layout::version_key("1")), "forgotten once clean");
            assert!(new.kv.visible_keys().contains(&layout::version_key("2")));
        });
    }

    #[test]
    fn a_big_retired_version_is_deleted_in_queued_batches_within_the_op_limit() {
        let old = Bench::new();
        let jobs = Rc::new(MemoryJobQueue::new());
        block_on(async {
            store_pages(&old, 400).await;
            old.engine().clean_old_versions().await;
            let new = redeployed(&old, "2");
            old.clock.advance(RETIRED_AFTER_MS + 1);
            new.kv.begin_invocation();
            let report = new.engine().with_jobs(jobs.clone()).clean_old_versions().await;
            assert!(report.queued && new.kv.ops_this_invocation() <= 1000);
            let mut invocations = 1;
            while let Some((job, _)) = jobs.take_all_jobs().pop() {
                let Job::Cleanup(job) = job else { panic!("a cleanup job") };
                new.kv.begin_invocation();
                new.engine().with_jobs(jobs.clone()).run_cleanup(job).await;
                assert!(new.kv.ops_this_invocation() <= 1000);
                invocations += 1;
            }
            assert_eq!(keys_of(&old, "1"), 0);
            assert!(invocations >= 2, "{invocations}");
        });
    }
}

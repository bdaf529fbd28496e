//! Marking pages stale on demand: by path, by prefix, by tag.
//!
//! KV operations per page: 1 read + 1 write to mark it (KV rewrites value and metadata
//! together), 1 read on the re-check pass (+1 write only if a racing regeneration wrote an old
//! render). Plus 1 list per 1,000 pages of a tag or prefix per pass.

use super::Engine;
use crate::rules::config::TrailingSlash;
use crate::engine::jobs::{Invalidation, InvalidationMode, OpBudget, PageMark, SweepJob, SweepTarget, TargetReport, OPS_PER_INVOCATION, RECHECK_DELAY_S};
use crate::rules::key::{self, normalise_path};
use crate::store::layout;
use crate::runtime::log::Level;
use crate::rules::meta::PageMeta;
use crate::runtime::origin::Origin;
use crate::store::{KvStore, PutOptions, StoreError};
use futures_util::stream::{self, StreamExt};

/// Pages marked at the same time (the runtime allows 6 open connections per invocation).
pub const MARK_CONCURRENCY: usize = 6;

/// The result of an invalidation request, per target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvalidationOutcome {
    /// When the invalidation took effect (ms).
    pub at: u64,
    /// Per tag.
    pub tags: Vec<(String, TargetReport)>,
    /// Per path.
    pub paths: Vec<(String, TargetReport)>,
    /// Per prefix.
    pub prefixes: Vec<(String, TargetReport)>,
    /// Whether follow-up work (continuations, re-check) was queued.
    pub queued: bool,
}

impl InvalidationOutcome {
    /// The JSON answer of the webhook.
    pub fn to_json(&self, mode: InvalidationMode) -> serde_json::Value {
        let section = |items: &[(String, TargetReport)]| -> serde_json::Value {
            items
                .iter()
                .map(|(name, r)| (name.clone(), serde_json::to_value(r).unwrap_or_default()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let complete = self.tags.iter().chain(&self.paths).chain(&self.prefixes).all(|(_, r)| r.complete);
        serde_json::json!({
            "revalidated": true,
            "mode": mode,
            "at": self.at,
            "tags": section(&self.tags),
            "paths": section(&self.paths),
            "prefixes": section(&self.prefixes),
            "complete": complete,
            "recheck_in_s": if self.queued { Some(RECHECK_DELAY_S) } else { None },
        })
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Invalidates `request` for pages of `hosts`, as far as this invocation's KV budget goes;
    /// the rest, and the re-check pass, are queued.
    pub async fn invalidate(&self, hosts: &[String], request: &Invalidation) -> InvalidationOutcome {
        let at = self.clock.now_ms();
        if self.config.workers_cache {
            self.purge_tier(hosts, request, at);
        }
        let budget = OpBudget::new(OPS_PER_INVOCATION);
        let mut outcome = InvalidationOutcome {
            at,
            ..Default::default()
        };
        let job = |target| SweepJob {
            target,
            at,
            mode: request.mode,
            cursor: None,
            pass: 1,
        };
        for path in &request.paths {
            let ids = hosts.iter().filter_map(|h| self.page_id_for(h, path)).collect();
            let (report, queued) = self.sweep_and_follow_up(job(SweepTarget::Pages(ids)), &budget).await;
            outcome.paths.push((path.clone(), report));
            outcome.queued |= queued;
        }
        for tag in &request.tags {
            let (report, queued) = self.sweep_and_follow_up(job(SweepTarget::Tag(tag.clone())), &budget).await;
            outcome.tags.push((tag.clone(), report));
            outcome.queued |= queued;
        }
        for prefix in &request.prefixes {
            let path = normalise_prefix(prefix);
            let mut report = TargetReport {
                complete: true,
                ..Default::default()
            };
            for host in hosts {
                let (r, queued) = self.sweep_and_follow_up(job(SweepTarget::Prefix(format!("{host}{path}"))), &budget).await;
                report.pages += r.pages;
                report.marked += r.marked;
                report.complete &= r.complete;
                outcome.queued |= queued;
            }
            outcome.prefixes.push((prefix.clone(), report));
        }
        self.log(
            Level::Info,
            &format!(
                "invalidated {} tag(s), {} path(s), {} prefix(es) at {at}",
                outcome.tags.len(),
                outcome.paths.len(),
                outcome.prefixes.len()
            ),
        );
        outcome
    }

    /// Runs one queued job (the queue consumer's work) with a fresh budget.
    pub async fn run_job(&self, job: SweepJob) -> TargetReport {
        let budget = OpBudget::new(OPS_PER_INVOCATION);
        self.sweep_and_follow_up(job, &budget).await.0
    }

    /// Sweeps as far as the budget allows, then queues the continuation (or, after a complete
    /// first pass, the re-check). Returns the report and whether anything was queued.
    async fn sweep_and_follow_up(&self, job: SweepJob, budget: &OpBudget) -> (TargetReport, bool) {
        let (report, continuation) = self.sweep(&job, budget).await;
        let follow_up = match continuation {
            Some(next) => Some((next, 0)),
            None if job.pass == 1 => Some((
                SweepJob {
                    cursor: None,
                    pass: 2,
                    ..job
                },
                RECHECK_DELAY_S,
            )),
            None => None,
        };
        let Some((next, delay)) = follow_up else {
            return (report, false);
        };
        let queued = match &self.jobs {
            Some(queue) => match queue.enqueue(crate::engine::jobs::Job::Sweep(next), delay).await {
                Ok(()) => true,
                Err(e) => {
                    self.log(Level::Error, &format!("queueing invalidation work failed: {e}"));
                    false
                }
            },
            None => {
                self.log(
                    Level::Warn,
                    "no invalidation queue is bound (INVALIDATIONS): large invalidations stop at one invocation and the re-check pass is skipped",
                );
                false
            }
        };
        (report, queued)
    }

    /// One invocation's worth of a job: the report, and the job to continue with if unfinished.
    async fn sweep(&self, job: &SweepJob, budget: &OpBudget) -> (TargetReport, Option<SweepJob>) {
        let mut report = TargetReport::default();
        let version = &self.config.cache_version;
        match &job.target {
            SweepTarget::Pages(ids) => {
                let affordable = (budget.remaining() / 2) as usize;
                let (now, later) = ids.split_at(ids.len().min(affordable));
                budget.take(2 * now.len() as u32);
                let keys = now.iter().map(|id| layout::page_key(version, id)).collect();
                self.mark_pages(keys, job, &mut report).await;
                if later.is_empty() {
                    report.complete = true;
                    (report, None)
                } else {
                    let rest = SweepJob {
                        target: SweepTarget::Pages(later.to_vec()),
                        ..job.clone()
                    };
                    (report, Some(rest))
                }
            }
            SweepTarget::Tag(_) | SweepTarget::Prefix(_) => {
                let prefix = match &job.target {
                    SweepTarget::Tag(tag) => layout::tag_prefix(version, tag),
                    _ => layout::page_prefix(version, target_value(&job.target)),
                };
                let mut cursor = job.cursor.clone();
                loop {
                    let limit = budget.remaining().saturating_sub(1) / 2;
                    if limit == 0 || !budget.take(1) {
                        return (report, Some(SweepJob { cursor, ..job.clone() }));
                    }
                    let page = match self.store.list(&prefix, cursor.as_deref(), limit.min(1000)).await {
                        Ok(p) => p,
                        Err(e) => {
                            self.log(Level::Warn, &format!("listing {prefix} failed: {e}; continuing later"));
                            return (report, Some(SweepJob { cursor, ..job.clone() }));
                        }
                    };
                    budget.take(2 * page.keys.len() as u32);
                    let keys = page
                        .keys
                        .iter()
                        .filter(|k| match &job.target {
                            // The listed metadata already says whether a page needs marking.
                            SweepTarget::Prefix(_) => needs_mark(k.metadata.as_deref(), job, &mut report),
                            _ => true,
                        })
                        .map(|k| match &job.target {
                            SweepTarget::Tag(_) => layout::page_key(version, &k.name[prefix.len()..]),
                            _ => k.name.clone(),
                        })
                        .collect();
                    self.mark_pages(keys, job, &mut report).await;
                    if page.complete {
                        report.complete = true;
                        return (report, None);
                    }
                    cursor = page.cursor;
                }
            }
        }
    }

    async fn mark_pages(&self, page_keys: Vec<String>, job: &SweepJob, report: &mut TargetReport) {
        let marks: Vec<(String, Result<PageMark, StoreError>)> = stream::iter(page_keys)
            .map(|key| async move {
                let mark = self.mark_page(&key, job.at, job.mode).await;
                (key, mark)
            })
            .buffer_unordered(MARK_CONCURRENCY)
            .collect()
            .await;
        for (key, mark) in marks {
            match mark {
                Ok(m) => report.count(m),
                Err(e) => self.log(Level::Warn, &format!("marking {key} stale failed: {e}; the re-check pass retries it")),
            }
        }
    }

    /// Marks one page stale (or expired) as of `at`, unless it was rendered since.
    pub(crate) async fn mark_page(&self, page_key: &str, at: u64, mode: InvalidationMode) -> Result<PageMark, StoreError> {
        let Some(stored) = self.store.get(page_key).await? else {
            return Ok(PageMark::Missing);
        };
        let Ok(mut meta) = PageMeta::decode(stored.metadata.as_deref()) else {
            return Ok(PageMark::Missing);
        };
        match classify_mark(&meta, at, mode) {
            PageMark::Marked => {}
            other => return Ok(other),
        }
        meta.invalidated_at = Some(meta.invalidated_at.map_or(at, |t| t.min(at)));
        meta.expired |= mode == InvalidationMode::Expire;
        let Ok(metadata) = meta.encode() else {
            return Ok(PageMark::Missing);
        };
        let opts = PutOptions {
            metadata: Some(metadata),
            expiration_ttl: None,
        };
        self.put_with_retry(page_key, stored.value, opts).await?;
        Ok(PageMark::Marked)
    }

    fn page_id_for(&self, host: &str, path: &str) -> Option<String> {
        key::normalise(&format!("https://{host}{path}"), &self.config).ok().map(|k| k.page_id())
    }
}

/// Whether `meta` needs marking for an invalidation at `at` in `mode`.
fn classify_mark(meta: &PageMeta, at: u64, mode: InvalidationMode) -> PageMark {
    if meta.rendered_at >= at {
        return PageMark::Newer;
    }
    let expire = mode == InvalidationMode::Expire;
    if meta.invalidated_at.is_some() && (meta.expired || !expire) {
        return PageMark::AlreadyStale;
    }
    PageMark::Marked
}

/// For prefix sweeps: decides from listed metadata, counting pages that need no write.
fn needs_mark(metadata: Option<&str>, job: &SweepJob, report: &mut TargetReport) -> bool {
    match PageMeta::decode(metadata) {
        Ok(meta) => match classify_mark(&meta, job.at, job.mode) {
            PageMark::Marked => true,
            other => {
                report.count(other);
                false
            }
        },
        Err(_) => false,
    }
}

fn target_value(target: &SweepTarget) -> &str {
    match target {
        SweepTarget::Tag(v) | SweepTarget::Prefix(v) => v,
        SweepTarget::Pages(_) => "",
    }
}

/// A prefix is normalised like a path, keeping its trailing slash (`/blog/` ≠ `/blog`).
fn normalise_prefix(prefix: &str) -> String {
    normalise_path(prefix, TrailingSlash::Keep)
}

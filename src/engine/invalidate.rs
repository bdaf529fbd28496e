//! Marking pages stale on demand: by path, by prefix, by tag.
//!
//! KV operations per page: 1 read + 1 write to mark it (KV rewrites value and metadata
//! together), 1 read on the re-check pass (+1 write only if a racing regeneration wrote an old
//! render). Plus 1 list per 1,000 pages of a tag or prefix per pass.
//!
//! A page keeps the *latest* invalidation that reached it: a second publish rewrites a page an
//! earlier one already marked, so a render that started between the two (a regeneration the
//! first publish caused) inherits the second mark when it is written
//! ([`Engine::carry_invalidation`]) instead of being stored as fresh.

use super::Engine;
use crate::rules::config::TrailingSlash;
use crate::engine::jobs::{recheck_delay_s, Invalidation, InvalidationMode, Job, OpBudget, PageMark, SweepJob, SweepTarget, TargetReport, OPS_PER_INVOCATION};
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
    /// Seconds until the re-check pass (when it was queued).
    pub recheck_in_s: Option<u32>,
    /// Why follow-up work could not be queued (the webhook then answers 503, so the CMS retries).
    pub queue_error: Option<String>,
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
        let complete = self.queue_error.is_none() && self.tags.iter().chain(&self.paths).chain(&self.prefixes).all(|(_, r)| r.complete);
        let mut json = serde_json::json!({
            "revalidated": true,
            "mode": mode,
            "at": self.at,
            "tags": section(&self.tags),
            "paths": section(&self.paths),
            "prefixes": section(&self.prefixes),
            "complete": complete,
            "recheck_in_s": if self.queued { self.recheck_in_s } else { None },
        });
        if let Some(error) = &self.queue_error {
            json["error"] = format!("{error}: the pages counted here are marked; the rest of the work (continuations, the re-check) was not queued, so retry this request").into();
        }
        json
    }

    /// The webhook's status: 503 when follow-up work could not be queued (a CMS retries a
    /// failed delivery; marking again is harmless), else 200.
    pub fn status(&self) -> u16 {
        if self.queue_error.is_some() {
            503
        } else {
            200
        }
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Invalidates `request` for pages of `hosts`, as far as this invocation's KV budget goes;
    /// the rest, and the re-check pass, are queued.
    /// With the Workers Cache mode on, the tier is purged through this isolate's planner (the
    /// webhook's path plans it in the coordinator).
    pub async fn invalidate(&self, hosts: &[String], request: &Invalidation) -> InvalidationOutcome {
        let at = self.clock.now_ms();
        if let Some(targets) = self.tier_targets(hosts, request) {
            self.purge_tier(targets, at, None);
        }
        self.invalidate_at(hosts, request, at).await
    }

    /// [`Engine::invalidate`] as of `at` (the time also recorded in the coordinator's log, so
    /// that a page marked in KV and a page matched by the log are the same page version).
    /// The tier's purge is the caller's (`Engine::purge_tier`).
    pub async fn invalidate_at(&self, hosts: &[String], request: &Invalidation, at: u64) -> InvalidationOutcome {
        let budget = OpBudget::new(OPS_PER_INVOCATION);
        let mut outcome = InvalidationOutcome {
            at,
            recheck_in_s: Some(recheck_delay_s(&self.config)),
            ..Default::default()
        };
        let job = |target| SweepJob {
            target,
            at,
            mode: request.mode,
            cursor: None,
            pass: 1,
        };
        let no_host = || TargetReport::unmatchable("no host to invalidate: set CACHE_HOSTS".to_string());
        for path in &request.paths {
            let ids: Result<Vec<String>, String> = hosts.iter().map(|h| self.page_id_for(h, path)).collect();
            let report = match ids {
                Ok(ids) if ids.is_empty() => no_host(),
                Ok(ids) => self.sweep_and_follow_up(job(SweepTarget::Pages(ids)), &budget, &mut outcome).await,
                Err(reason) => TargetReport::unmatchable(reason),
            };
            outcome.paths.push((path.clone(), report));
        }
        for tag in &request.tags {
            let report = self.sweep_and_follow_up(job(SweepTarget::Tag(tag.clone())), &budget, &mut outcome).await;
            outcome.tags.push((tag.clone(), report));
        }
        for prefix in &request.prefixes {
            let report = match normalise_prefix(prefix) {
                _ if hosts.is_empty() => no_host(),
                Ok(path) => {
                    let mut report = TargetReport {
                        complete: true,
                        ..Default::default()
                    };
                    for host in hosts {
                        let target = SweepTarget::Prefix(format!("{host}{path}"));
                        report.merge(self.sweep_and_follow_up(job(target), &budget, &mut outcome).await);
                    }
                    report
                }
                Err(reason) => TargetReport::unmatchable(reason),
            };
            outcome.prefixes.push((prefix.clone(), report));
        }
        self.log_event(
            Level::Info,
            "invalidated",
            "",
            &format!(
                "{} tag(s), {} path(s), {} prefix(es) at {at}",
                outcome.tags.len(),
                outcome.paths.len(),
                outcome.prefixes.len()
            ),
        );
        outcome
    }

    /// Runs one queued job (the queue consumer's work) with a fresh budget.
    pub async fn run_job(&self, job: SweepJob) -> TargetReport {
        self.run_sweep_job(job).await.0
    }

    async fn run_sweep_job(&self, job: SweepJob) -> (TargetReport, Option<String>) {
        let budget = OpBudget::new(OPS_PER_INVOCATION);
        let mut outcome = InvalidationOutcome::default();
        let report = self.sweep_and_follow_up(job, &budget, &mut outcome).await;
        (report, outcome.queue_error)
    }

    /// Runs one message of the job queue. `Ok` (a summary for the log): acknowledge it.
    /// `Err`: part of the work failed (a page that could not be marked, a continuation that
    /// could not be queued) and the message must be delivered again (the queue retries it up to
    /// `max_retries`, then moves it to the dead-letter queue). Running a sweep again is
    /// harmless: pages already marked by this invalidation cost one read and no write.
    /// Pre-render batches and cleanups are best effort (a page left unrendered renders on its
    /// first visit; the next cron run continues a cleanup).
    pub async fn run_queued(&self, job: Job) -> Result<String, String> {
        match job {
            Job::Sweep(job) => {
                // Every invalidation's re-check (and continuation) also sends Workers Cache
                // purges still due in the coordinator: a backstop that needs no visitor (a site
                // whose views are all tier HITs runs no worker to hear of them otherwise).
                self.help_purge();
                let pass = job.pass;
                let (report, queue_error) = self.run_sweep_job(job).await;
                let summary = format!("invalidation job (pass {pass}) reached {} page(s), marked {}", report.pages, report.marked);
                if let Some(e) = queue_error {
                    Err(format!("{summary}; queueing its continuation failed: {e}"))
                } else if report.failed > 0 {
                    Err(format!("{summary}; {} page(s) could not be marked", report.failed))
                } else {
                    Ok(summary)
                }
            }
            Job::Prerender(job) => {
                let report = self.run_prerender(job).await;
                Ok(format!("pre-render batch rendered {} page(s), {} already fresh", report.rendered, report.fresh))
            },
            // Errors are in the summary; whatever is left, the next cron run continues.
            Job::Cleanup(job) => {
                let version = job.cleanup_version.clone();
                let report = self.run_cleanup(job).await;
                Ok(format!("cleanup of cache version {version} deleted {} key(s); {:?}", report.deleted, report.errors))
            }
        }
    }

    /// Sweeps as far as the budget allows, then queues the continuation (or, after a complete
    /// first pass, the re-check), noting in `outcome` whether it was queued or why not.
    async fn sweep_and_follow_up(&self, job: SweepJob, budget: &OpBudget, outcome: &mut InvalidationOutcome) -> TargetReport {
        let (report, continuation) = self.sweep(&job, budget).await;
        let follow_up = match continuation {
            Some(next) => Some((next, 0)),
            None if job.pass == 1 => Some((
                SweepJob {
                    cursor: None,
                    pass: 2,
                    ..job
                },
                recheck_delay_s(&self.config),
            )),
            None => None,
        };
        let Some((next, delay)) = follow_up else {
            return report;
        };
        match &self.jobs {
            Some(queue) => match queue.enqueue(Job::Sweep(next), delay).await {
                Ok(()) => outcome.queued = true,
                Err(e) => {
                    self.log_event(Level::Error, "invalidation_queue_failed", "", &format!("queueing invalidation work failed: {e}"));
                    outcome.queue_error = Some(format!("queueing invalidation work failed ({e})"));
                }
            },
            None => self.log_event(
                Level::Warn,
                "invalidation_queue_missing",
                "",
                "no invalidation queue is bound (INVALIDATIONS): large invalidations stop at one invocation and the re-check pass is skipped",
            ),
        }
        report
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
                    report.complete = report.failed == 0;
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
                    // Long ids are stored shortened (their start and a hash): list by the part
                    // of the prefix every stored id keeps, then match each id below.
                    _ => layout::page_prefix(version, key::listing_prefix(target_value(&job.target))),
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
                            self.log_event(Level::Warn, "invalidation_list_failed", &prefix, &format!("{e}; continuing later"));
                            return (report, Some(SweepJob { cursor, ..job.clone() }));
                        }
                    };
                    budget.take(2 * page.keys.len() as u32);
                    let keys = page
                        .keys
                        .iter()
                        .filter(|k| match &job.target {
                            // The listed metadata already says whether a page needs marking.
                            SweepTarget::Prefix(wanted) => {
                                let id = k.name.get(layout::page_prefix(version, "").len()..).unwrap_or("");
                                key::id_may_start_with(id, wanted) && needs_mark(k.metadata.as_deref(), job, &mut report)
                            }
                            _ => true,
                        })
                        .map(|k| match &job.target {
                            SweepTarget::Tag(_) => layout::page_key(version, &k.name[prefix.len()..]),
                            _ => k.name.clone(),
                        })
                        .collect();
                    self.mark_pages(keys, job, &mut report).await;
                    if page.complete {
                        report.complete = report.failed == 0;
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
                Err(e) => {
                    report.failed += 1;
                    self.log_event(Level::Warn, "mark_stale_failed", &key, &format!("{e}; the re-check pass (or the queue's retry) tries again"));
                }
            }
        }
    }

    /// Marks one page stale (or expired) as of `at`, unless it was rendered since. A 429 means
    /// another writer (a regeneration, another mark) wrote the page within the last second: the
    /// page is read and judged again before each retry, so a newer page is never overwritten
    /// with the older body that was read first.
    pub(crate) async fn mark_page(&self, page_key: &str, at: u64, mode: InvalidationMode) -> Result<PageMark, StoreError> {
        let mut attempt = 0;
        loop {
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
            apply_mark(&mut meta, at, mode);
            let Ok(metadata) = meta.encode() else {
                return Ok(PageMark::Missing);
            };
            let opts = PutOptions {
                metadata: Some(metadata),
                expiration_ttl: meta.expiration_ttl_s(self.clock.now_ms()),
            };
            match self.store.put(page_key, stored.value, opts).await {
                Err(StoreError::RateLimited) if attempt < super::write::WRITE_RETRIES => {
                    attempt += 1;
                    self.clock.sleep(super::write::retry_backoff_ms(attempt)).await;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(PageMark::Marked),
            }
        }
    }

    /// The page id of `path` on `host`, keyed as a request for it would be, or why none can be.
    fn page_id_for(&self, host: &str, path: &str) -> Result<String, String> {
        key::normalise(&format!("https://{host}{path}"), &self.config)
            .map(|k| k.page_id())
            .map_err(|e| format!("matches no page: {e}"))
    }
}

/// Whether `meta` needs marking for an invalidation at `at` in `mode`: unless it was rendered
/// since, or already carries an invalidation at least as late and as strong. A later
/// invalidation is written even on a page already stale, so that it is the one a render in
/// flight is judged against.
fn classify_mark(meta: &PageMeta, at: u64, mode: InvalidationMode) -> PageMark {
    if meta.rendered_at >= at {
        return PageMark::Newer;
    }
    let expire = mode == InvalidationMode::Expire;
    let covered = meta.invalidated_at.is_some_and(|t| t >= at);
    if covered && (meta.expired || !expire) {
        return PageMark::AlreadyStale;
    }
    PageMark::Marked
}

/// Marks `meta` as invalidated at `at`: the latest invalidation is kept, and a page once expired
/// stays expired (it was rendered before a hard purge).
fn apply_mark(meta: &mut PageMeta, at: u64, mode: InvalidationMode) {
    meta.invalidated_at = Some(meta.invalidated_at.map_or(at, |t| t.max(at)));
    meta.expired |= mode == InvalidationMode::Expire;
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

/// A prefix is normalised like the path of a request (percent-encoded as the runtime delivers
/// it: `/café/` is `/caf%C3%A9/`), keeping its trailing slash (`/blog/` ≠ `/blog`).
fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let url = key::parse_url(&format!("https://prefix.invalid{prefix}")).map_err(|e| format!("matches no page: {e}"))?;
    Ok(normalise_path(url.path(), TrailingSlash::Keep))
}

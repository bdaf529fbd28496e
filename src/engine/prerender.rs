//! Pre-rendering (`generateStaticParams`) and the static-parameter check (`dynamicParams`).
//!
//! On the cron trigger (and from the admin page) every route with static parameters lists them
//! (from its configuration, or from a CMS listing), and the pages that are missing or stale are
//! rendered in batches. A batch is small enough for one invocation's limits (each page costs a
//! few subrequests and KV operations), so batches go through the job queue, one per message;
//! without a queue they run one after another in the current invocation's background time.
//!
//! A listing's result is kept in KV (`s/…`) for the route's revalidate time, so that the
//! `dynamicParams = false` check on a MISS costs one KV read, not a CMS request.

use super::Engine;
use crate::http::Body;
use crate::engine::jobs::Job;
use crate::rules::key::CacheKey;
use crate::store::layout;
use crate::runtime::log::Level;
use crate::runtime::origin::Origin;
use crate::site::{Params, RegisteredRoute, RenderContext, RenderError, StaticParams};
use crate::store::{KvStore, PutOptions};
use crate::rules::freshness::{freshness, Freshness};
use serde::{Deserialize, Serialize};

/// Pages per pre-render batch: each costs up to a few CMS fetches (subrequests; 50 per
/// invocation on the free plan) and about five KV operations.
pub const PRERENDER_BATCH: usize = 10;

/// A batch of pages to pre-render, carried by the job queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrerenderJob {
    /// Host of the pages' keys.
    pub host: String,
    /// Paths to render when missing or stale.
    pub prerender: Vec<String>,
}

/// What a pre-render request did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrerenderReport {
    /// Paths listed by all routes.
    pub paths: u32,
    /// Batches handed to the queue.
    pub queued_batches: u32,
    /// Pages rendered now (without a queue).
    pub rendered: u32,
    /// Pages already stored and fresh.
    pub fresh: u32,
    /// Routes whose parameters could not be listed.
    pub errors: Vec<String>,
}

/// A listing kept in KV.
#[derive(Serialize, Deserialize)]
struct CachedListing {
    at: u64,
    params: Vec<Vec<(String, String)>>,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// The static parameters of `route` (an empty list for routes without any).
    pub(crate) async fn static_params(&self, route: &RegisteredRoute) -> Result<Vec<Params>, RenderError> {
        let (url, items, fields) = match &route.route.static_params {
            None => return Ok(Vec::new()),
            Some(StaticParams::List(list)) => return Ok(list.clone()),
            Some(StaticParams::Listing { url, items, fields }) => (url, items, fields),
        };
        let key = layout::listing_key(&self.config.cache_version, &route.pattern);
        let now = self.clock.now_ms();
        let max_age = u64::from(route.route.revalidate.unwrap_or(self.config.default_revalidate_s)) * 1000;
        if let Ok(Some(v)) = self.store.get(&key).await {
            if let Ok(cached) = serde_json::from_slice::<CachedListing>(&v.value) {
                if now.saturating_sub(cached.at) < max_age {
                    return Ok(cached.params.into_iter().map(Params::new).collect());
                }
            }
        }
        let cx = RenderContext::new(String::new(), Params::default(), self.origin.clone(), Some(self.config.cms_url.clone()), self.config.origin_timeout_ms);
        let listing = cx.fetch_json(url, Default::default()).await?;
        let params = params_from_listing(&listing, items, fields, &route.params)?;
        let cached = CachedListing {
            at: now,
            params: params.iter().map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect(),
        };
        let body = Body::from(serde_json::to_vec(&cached).unwrap_or_default());
        if let Err(e) = self.store.put(&key, body, PutOptions::default()).await {
            self.log_event(Level::Warn, "listing_write_failed", &route.pattern, &format!("keeping the listing failed: {e}"));
        }
        Ok(params)
    }

    /// Pre-renders the static pages of every route for `host`: queued in batches when there is
    /// a job queue, else rendered now (bounded by the caller's invocation).
    pub async fn prerender(&self, host: &str) -> PrerenderReport {
        let mut report = PrerenderReport::default();
        let mut paths = Vec::new();
        for route in self.site.routes() {
            if route.route.static_params.is_none() {
                continue;
            }
            match self.static_params(route).await {
                Ok(list) => {
                    for params in &list {
                        match route.path_for(params) {
                            Ok(path) => paths.push(path),
                            Err(e) => report.errors.push(format!("{}: {e}", route.pattern)),
                        }
                    }
                }
                Err(e) => {
                    self.log_event(Level::Warn, "static_params_list_failed", &route.pattern, &e.to_string());
                    report.errors.push(format!("{}: {e}", route.pattern));
                }
            }
        }
        for sitemap in self.site.sitemaps() {
            match self.sitemap_paths(sitemap).await {
                Ok(found) => paths.extend(found),
                Err(e) => {
                    self.log_event(Level::Warn, "sitemap_read_failed", sitemap, &e.to_string());
                    report.errors.push(format!("{sitemap}: {e}"));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        report.paths = paths.len() as u32;
        for batch in paths.chunks(PRERENDER_BATCH) {
            let job = PrerenderJob {
                host: host.to_string(),
                prerender: batch.to_vec(),
            };
            if let Some(jobs) = &self.jobs {
                match jobs.enqueue(Job::Prerender(job.clone()), 0).await {
                    Ok(()) => {
                        report.queued_batches += 1;
                        continue;
                    }
                    Err(e) => self.log_event(Level::Warn, "prerender_queue_failed", "", &format!("queueing a pre-render batch failed ({e}); rendering it now")),
                }
            }
            let done = self.run_prerender(job).await;
            report.rendered += done.rendered;
            report.fresh += done.fresh;
        }
        self.log_event(
            Level::Info,
            "prerendered",
            "",
            &format!(
                "{} path(s), {} batch(es) queued, {} rendered now, {} already fresh",
                report.paths, report.queued_batches, report.rendered, report.fresh
            ),
        );
        report
    }

    /// The normalised paths of a sitemap's `<loc>` entries.
    async fn sitemap_paths(&self, url: &str) -> Result<Vec<String>, RenderError> {
        let cx = RenderContext::new(String::new(), Params::default(), self.origin.clone(), Some(self.config.cms_url.clone()), self.config.origin_timeout_ms);
        let resp = cx.fetch(url, Default::default()).await?;
        if resp.status != 200 {
            return Err(RenderError::Data(format!("{url} answered {}", resp.status)));
        }
        let text = String::from_utf8_lossy(&resp.body);
        Ok(sitemap_locations(&text)
            .filter_map(|loc| crate::rules::key::parse_url(&loc).ok())
            .map(|u| crate::rules::key::normalise_path(u.path(), self.config.trailing_slash))
            .take(MAX_SITEMAP_URLS)
            .collect())
    }

    /// Renders the pages of one batch that are missing or stale.
    pub async fn run_prerender(&self, job: PrerenderJob) -> PrerenderReport {
        let mut report = PrerenderReport::default();
        for path in job.prerender {
            let key = CacheKey {
                host: job.host.clone(),
                path,
                query: String::new(),
            };
            let page_key = layout::page_key(&self.config.cache_version, &key.page_id());
            let previous = self.read_page(&page_key).await;
            if let Some(page) = &previous {
                if freshness(&page.meta, self.clock.now_ms()) == Freshness::Fresh {
                    report.fresh += 1;
                    continue;
                }
            }
            let started = self.clock.now_ms();
            let produced = match self.produce(&key, "prerender", None, self.config.regenerate_timeout_ms).await {
                Ok(p) => p,
                Err(e) => {
                    self.log_event(Level::Warn, "prerender_failed", &key.path, &e.to_string());
                    continue;
                }
            };
            match self.prepare_page(&produced.resp, started, &produced.hints) {
                Ok(prepared) => {
                    if self.write_page(&page_key, prepared, previous.as_ref().map(|p| &p.meta)).await {
                        report.rendered += 1;
                    }
                }
                Err(reason) => self.log_event(
                    Level::Warn,
                    "prerender_not_stored",
                    &key.path,
                    reason.as_str(),
                ),
            }
        }
        report
    }
}

/// Most URLs read from one sitemap (the sitemap protocol's own limit).
pub const MAX_SITEMAP_URLS: usize = 50_000;

/// The text of every `<loc>` element of a sitemap, with XML's five entities decoded.
pub fn sitemap_locations(xml: &str) -> impl Iterator<Item = String> + '_ {
    xml.split("<loc>").skip(1).filter_map(|rest| {
        let loc = rest.split("</loc>").next()?.trim();
        Some(
            loc.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        )
    })
}

/// Reads parameters out of a CMS listing: the array at JSON pointer `items`, one parameter set
/// per element, parameter `p` from the element's field `fields[p]` (default: field `p`).
/// Elements lacking a field are skipped; numbers are accepted as text.
pub fn params_from_listing(listing: &serde_json::Value, items: &str, fields: &[(String, String)], names: &[String]) -> Result<Vec<Params>, RenderError> {
    let array = listing
        .pointer(items)
        .and_then(|v| v.as_array())
        .ok_or_else(|| RenderError::Data(format!("the listing has no array at {items:?}")))?;
    let field_of = |name: &str| -> String {
        fields.iter().find(|(p, _)| p == name).map_or(name, |(_, f)| f.as_str()).to_string()
    };
    Ok(array
        .iter()
        .filter_map(|item| {
            let pairs: Option<Vec<(String, String)>> = names
                .iter()
                .map(|n| {
                    let v = item.get(field_of(n).as_str())?;
                    let text = v.as_str().map(String::from).or_else(|| v.as_number().map(|n| n.to_string()))?;
                    Some((n.clone(), text))
                })
                .collect();
            pairs.filter(|p| p.iter().all(|(_, v)| !v.is_empty())).map(Params::new)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sitemap_locations_are_read_and_unescaped() {
        let xml = "<?xml version=\"1.0\"?><urlset><url><loc> https://s.test/a </loc></url>\n<url><loc>https://s.test/b?x=1&amp;y=2</loc><lastmod>2026</lastmod></url></urlset>";
        let locs: Vec<String> = sitemap_locations(xml).collect();
        assert_eq!(locs, ["https://s.test/a", "https://s.test/b?x=1&y=2"]);
        assert_eq!(sitemap_locations("<urlset></urlset>").count(), 0);
    }

    #[test]
    fn listings_yield_parameters_by_field() {
        let listing = json!({"data": [{"slug": "a", "id": 1}, {"slug": "b", "id": 2}, {"title": "no slug"}]});
        let names = vec!["slug".to_string()];
        let got = params_from_listing(&listing, "/data", &[], &names).unwrap();
        assert_eq!(got.iter().map(|p| p.get("slug").unwrap()).collect::<Vec<_>>(), ["a", "b"]);
        let by_id = params_from_listing(&listing, "/data", &[("slug".into(), "id".into())], &names).unwrap();
        assert_eq!(by_id.iter().map(|p| p.get("slug").unwrap()).collect::<Vec<_>>(), ["1", "2"]);
        assert!(params_from_listing(&listing, "/nope", &[], &names).is_err());
        assert_eq!(params_from_listing(&json!([{"slug": "x"}]), "", &[], &names).unwrap().len(), 1);
    }
}

//! Making a page: the route of the key picks the renderer (the origin proxy, or a render
//! function), and its answer becomes a response plus the route's caching hints.

use super::Engine;
use crate::http::{Request, Response};
use crate::rules::key::CacheKey;
use crate::runtime::log::Level;
use crate::rules::meta::PageMeta;
use crate::runtime::origin::{Origin, OriginError};
use crate::site::{Matched, Page, RenderContext, RenderError, Renderer};
use crate::store::KvStore;

/// Caching rules a route adds to what its response's headers say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// Revalidate time used when the response has no `Cache-Control` of its own.
    pub revalidate_s: Option<u32>,
    /// Tags added to those of the response's tag headers.
    pub tags: Vec<String>,
}

/// A page made for the cache: the response, and the route's hints.
pub(crate) struct Produced {
    pub resp: Response,
    pub hints: Hints,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Makes the page for `key` with its route's renderer. `purpose` ("miss", "regenerate",
    /// "prerender", "bypass") is sent to proxy origins as `x-isr-render`; `previous` gives the
    /// proxy the stored page's validators. `Err` means no answer at all (network, timeout):
    /// the caller keeps the stored page, or answers 502/504.
    pub(crate) async fn produce(&self, key: &CacheKey, purpose: &str, previous: Option<&PageMeta>, timeout_ms: u64) -> Result<Produced, OriginError> {
        self.produce_counted(key, purpose, previous, timeout_ms, false).await
    }

    /// [`Engine::produce`] for a MISS: a proxied page comes with its body still arriving
    /// ([`Origin::fetch_streamed`]; `timeout_ms` bounds the wait for its head, and the render
    /// is counted with the time to its head). Pages a route renders come whole, as always.
    pub(crate) async fn produce_streamed(&self, key: &CacheKey, purpose: &str, timeout_ms: u64) -> Result<Produced, OriginError> {
        self.produce_counted(key, purpose, None, timeout_ms, true).await
    }

    async fn produce_counted(&self, key: &CacheKey, purpose: &str, previous: Option<&PageMeta>, timeout_ms: u64, streamed: bool) -> Result<Produced, OriginError> {
        let started = self.clock.now_ms();
        let produced = self.produce_uncounted(key, purpose, previous, timeout_ms, streamed).await;
        let failed = produced.as_ref().map_or(true, |p| crate::rules::freshness::is_origin_failure(p.resp.status));
        self.count_render(purpose, started, failed);
        produced
    }

    async fn produce_uncounted(&self, key: &CacheKey, purpose: &str, previous: Option<&PageMeta>, timeout_ms: u64, streamed: bool) -> Result<Produced, OriginError> {
        let matched = self.site.route_for(&key.path);
        let route = &matched.route.route;
        let tags = matched.route.tags_for(&matched.params);
        match &route.renderer {
            Renderer::Proxy(base) => {
                let resp = match (base, streamed) {
                    (Some(base), false) => self.origin.fetch(self.origin_request(key, purpose, previous, base), timeout_ms).await?,
                    (Some(base), true) => self.origin.fetch_streamed(self.origin_request(key, purpose, previous, base), timeout_ms).await?,
                    // The site's own origin: ORIGIN_URL, or the ORIGIN_SERVICE Worker.
                    (None, false) => self.origin.fetch_page(self.origin_request(key, purpose, previous, &self.page_base(key)), timeout_ms).await?,
                    (None, true) => self.origin.fetch_page_streamed(self.origin_request(key, purpose, previous, &self.page_base(key)), timeout_ms).await?,
                };
                let hints = Hints {
                    revalidate_s: route.revalidate,
                    tags,
                };
                Ok(Produced { resp, hints })
            }
            Renderer::Render(render) => {
                let page = if let Some(why) = &matched.refused {
                    // A `/` or `..` smuggled into a parameter (`/blog/..%2Fx`): no such page,
                    // and nothing is fetched with it.
                    self.log_event(Level::Info, "not_found_without_rendering", &key.path, &why.to_string());
                    self.site.error_page(&RenderError::NotFound, &key.path)
                } else if route.dynamic_params || self.is_static_param(&matched).await {
                    let cx = RenderContext::new(
                        key.path.clone(),
                        matched.params.clone(),
                        self.origin.clone(),
                        Some(self.config.cms_url.clone()),
                        timeout_ms,
                    );
                    match render(cx.clone()).await {
                        Ok(page) => page_with_fetch_hints(page, &cx, route.revalidate),
                        Err(RenderError::Upstream(e)) => return Err(e),
                        Err(e) => {
                            if e != RenderError::NotFound {
                                self.log_event(Level::Error, "render_failed", &key.path, &format!("route {}: {e}", matched.route.pattern));
                            }
                            self.site.error_page(&e, &key.path)
                        }
                    }
                } else {
                    self.site.error_page(&RenderError::NotFound, &key.path)
                };
                let mut all_tags = tags;
                for t in page.tags {
                    if !all_tags.contains(&t) {
                        all_tags.push(t);
                    }
                }
                let mut resp = Response::new(page.status).with_body(page.body);
                resp.headers = page.headers;
                Ok(Produced {
                    resp,
                    hints: Hints {
                        revalidate_s: page.revalidate,
                        tags: all_tags,
                    },
                })
            }
        }
    }

    /// Renders a request that must not be cached (credentials, preview cookies) on a render
    /// route: the visitor gets a fresh page, nothing is stored.
    pub(crate) async fn render_uncached(&self, req: &Request, key: &CacheKey) -> Response {
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Response::json_error(405, "this path is rendered by the worker: only GET and HEAD are allowed")
                .with_header("allow", "GET, HEAD");
        }
        match self.produce(key, "bypass", None, self.config.origin_timeout_ms).await {
            Ok(p) => {
                let mut resp = p.resp;
                if req.method == "HEAD" {
                    resp.body = Default::default();
                }
                resp
            }
            Err(e) => self.origin_error_response(&key.path, &e),
        }
    }

    /// Whether the matched parameters are among the route's static parameters.
    async fn is_static_param(&self, matched: &Matched<'_>) -> bool {
        match self.static_params(matched.route).await {
            Ok(list) => list.iter().any(|p| p == &matched.params),
            Err(e) => {
                // Unknown is not "absent": render rather than answer 404 for a real page.
                self.log_event(Level::Warn, "static_params_unavailable", &matched.route.pattern, &format!("{e}; rendering on demand"));
                true
            }
        }
    }
}

/// The page's revalidate time: its own, else the smallest of its route's and its fetches'; and
/// its tags: its own plus its fetches'.
fn page_with_fetch_hints(mut page: Page, cx: &RenderContext, route_revalidate: Option<u32>) -> Page {
    let collected = cx.collected();
    if page.revalidate.is_none() {
        page.revalidate = match (route_revalidate, collected.revalidate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    for t in collected.tags {
        if !page.tags.contains(&t) {
            page.tags.push(t);
        }
    }
    page
}

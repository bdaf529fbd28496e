//! What each request URL is to the engine (the webhook, the admin page, the tier's test route,
//! or a page with its key), remembered per isolate.
//!
//! Why: parsing a URL (`url`'s WHATWG parser), normalising it into the cache key and naming the
//! page's KV key was the largest share of the engine's own work on a HIT (BENCHMARKS.md, issue
//! 15), and a page's visitors ask for the same URL again and again. What a URL is depends only
//! on the URL and the configuration, so the answer is kept for the URLs seen last: at most
//! [`MAX_URLS`] of them, of at most [`MAX_URL_BYTES`] each, all forgotten at once when full (a
//! flood of distinct URLs costs one insert each and never more memory than that), and all
//! forgotten when the configuration is another one ([`super::memo`]).

use super::Engine;
use crate::rules::config::Config;
use crate::runtime::origin::Origin;
use crate::store::KvStore;
use crate::rules::key::{self, CacheKey};
use crate::store::layout;
use super::memo::Memo;
use std::rc::Rc;

/// How many URLs an isolate remembers (about 200 bytes each).
pub(crate) const MAX_URLS: usize = 1024;

/// The longest URL remembered: longer ones (Workers takes URLs of up to 16 KiB) are worked out
/// each time, so that the memo stays within a megabyte or two whatever visitors send.
pub(crate) const MAX_URL_BYTES: usize = 512;

/// What a request URL is to the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UrlRoute {
    /// The revalidation webhook's path.
    Webhook,
    /// The admin page.
    Admin,
    /// The e2e-only route of the Workers Cache test double.
    TierTestRoute,
    /// A page: its key and KV key, or `None` when the URL cannot be keyed (not http(s), no
    /// host, a path too long...).
    Page(Option<Rc<PageAt>>),
}

/// A page's cache key and the KV key it is stored under (shared, not copied, by the requests
/// that read it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageAt {
    pub key: CacheKey,
    pub page_key: String,
}

/// The isolate's remembered URLs, for one configuration.
pub(crate) struct UrlRoutes {
    config: Option<Rc<Config>>,
    routes: Memo<Rc<UrlRoute>>,
}

impl Default for UrlRoutes {
    fn default() -> Self {
        UrlRoutes { config: None, routes: Memo::new(MAX_URLS) }
    }
}

#[cfg(test)]
impl UrlRoutes {
    /// How many URLs are remembered.
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// What `url` is (remembered, see the module's doc).
    pub(crate) fn route_of(&self, url: &str) -> Rc<UrlRoute> {
        let mut memo = self.isolate.url_routes.borrow_mut();
        if !memo.config.as_ref().is_some_and(|c| Rc::ptr_eq(c, &self.config)) {
            *memo = UrlRoutes { config: Some(self.config.clone()), routes: Memo::new(MAX_URLS) };
        }
        if let Some(route) = memo.routes.get(url) {
            return route.clone();
        }
        let route = Rc::new(self.route_unremembered(url));
        if url.len() <= MAX_URL_BYTES {
            memo.routes.insert(url, route.clone());
        }
        route
    }

    /// What `url` is, worked out.
    pub(crate) fn route_unremembered(&self, url: &str) -> UrlRoute {
        let parsed = key::parse_url(url).ok();
        if let Some(path) = parsed.as_ref().map(|u| u.path()) {
            if path == self.config.revalidate_path {
                return UrlRoute::Webhook;
            }
            if super::admin::is_admin_path(path) {
                return UrlRoute::Admin;
            }
            if self.is_tier_test_route(path) {
                return UrlRoute::TierTestRoute;
            }
        }
        UrlRoute::Page(parsed.and_then(|u| key::normalise_parsed(&u, &self.config).ok()).map(|key| {
            let page_key = layout::page_key(&self.config.cache_version, &key.page_id());
            Rc::new(PageAt { key, page_key })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config_with, Bench};

    const URLS: [&str; 9] = [
        "https://site.test/a",
        "https://site.test/a?b=2&a=1",
        "https://SITE.test/caf%C3%A9/",
        "https://site.test/api/revalidate",
        "https://site.test/__isr/admin",
        "ftp://site.test/a",
        "not a url",
        "https://site.test/a/../b",
        "https://xn--caf-dma.test/",
    ];

    #[test]
    fn a_remembered_url_is_what_it_would_be_worked_out_again() {
        let b = Bench::with_config(config_with(&[("CACHE_QUERY_PARAMS", "a")]));
        let engine = b.engine();
        for url in URLS {
            let first = engine.route_of(url);
            assert_eq!(*first, engine.route_unremembered(url), "{url}");
            assert!(Rc::ptr_eq(&first, &engine.route_of(url)), "{url} is remembered");
        }
        assert_eq!(*engine.route_of("https://site.test/api/revalidate"), UrlRoute::Webhook);
        assert_eq!(*engine.route_of("https://site.test/__isr/admin"), UrlRoute::Admin);
        assert_eq!(*engine.route_of("ftp://site.test/a"), UrlRoute::Page(None));
        let UrlRoute::Page(Some(page)) = &*engine.route_of("https://site.test/a?b=2&a=1") else { panic!("a page") };
        assert_eq!((page.key.path.as_str(), page.key.query.as_str()), ("/a", "a=1"));
    }

    #[test]
    fn at_most_max_urls_are_remembered() {
        let b = Bench::new();
        let engine = b.engine();
        for i in 0..MAX_URLS + 10 {
            engine.route_of(&format!("https://site.test/p{i}"));
            assert!(b.isolate.url_routes.borrow().len() <= MAX_URLS);
        }
        assert_eq!(b.isolate.url_routes.borrow().len(), 10, "forgotten all at once when full");
        // A long URL is worked out, not remembered.
        let long = format!("https://site.test/{}", "a".repeat(MAX_URL_BYTES));
        let UrlRoute::Page(Some(page)) = &*engine.route_of(&long) else { panic!("a page") };
        assert_eq!(page.key.path.len(), MAX_URL_BYTES + 1);
        assert_eq!(b.isolate.url_routes.borrow().len(), 10);
    }

    #[test]
    fn another_configuration_forgets_what_the_last_one_said() {
        let b = Bench::new();
        let before = b.engine().route_of("https://site.test/a?a=1");
        let UrlRoute::Page(Some(page)) = &*before else { panic!("a page") };
        assert_eq!(page.key.query, "");
        let mut other = b.engine();
        other.config = Rc::new(config_with(&[("CACHE_QUERY_PARAMS", "a")]));
        let UrlRoute::Page(Some(page)) = &*other.route_of("https://site.test/a?a=1") else { panic!("a page") };
        assert_eq!(page.key.query, "a=1");
        assert_eq!(b.isolate.url_routes.borrow().len(), 1);
    }
}

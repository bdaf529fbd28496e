//! Sites: which renderer makes which page.
//!
//! A [`Site`] is a list of routes (`/blog/:slug`), each with a renderer, a revalidate time, tag
//! templates filled from its parameters (`post-{slug}`), and optionally the list of parameters
//! to pre-render (`generateStaticParams`) and whether other parameters are rendered on demand
//! (`dynamicParams`). Paths that match no route go to the fallback, by default the proxy to
//! `ORIGIN_URL`: proxy mode is one renderer among others.
//!
//! ```
//! use edge_isr::site::{Page, Route, Site, FetchOptions};
//!
//! let site = Site::new()
//!     .route("/hello/:name", Route::render(|cx| async move {
//!         Ok(Page::html(format!("<h1>Hello, {}!</h1>", cx.param("name"))))
//!     }).revalidate(3600).tags(["hello-{name}", "hello"]))
//!     .route("/blog/:slug", Route::render(|cx| async move {
//!         let post = cx.fetch_json(&cx.url("/api/posts/{slug}")?, FetchOptions::tags(["posts"])).await?;
//!         Ok(Page::html(format!("<h1>{}</h1>", post["title"].as_str().unwrap_or(""))))
//!     }).revalidate(60).tags(["post-{slug}"]));
//! assert!(site.find("/hello/ada").is_some());
//! ```

mod pattern;
mod render;
pub mod template;

pub use pattern::{check_value, to_matchit, Params, PatternError, Template};
pub use render::{Collected, FetchOptions, Fetcher, Page, RenderContext, RenderError, RenderFn};

use std::future::Future;
use std::rc::Rc;

/// How a route's pages are made.
#[derive(Clone)]
pub enum Renderer {
    /// Fetched from an HTTP origin: `None` is `ORIGIN_URL`, `Some` another base URL.
    Proxy(Option<url::Url>),
    /// Made by a function in the worker.
    Render(RenderFn),
}

/// Where the parameters to pre-render come from (`generateStaticParams`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaticParams {
    /// Listed in the configuration.
    List(Vec<Params>),
    /// A JSON array from the CMS (`url`, relative to `CMS_URL` or absolute); `items` is a JSON
    /// pointer to the array inside the answer (empty: the answer itself); each element gives
    /// parameter `name` from its field `fields[name]` (by default a field of the same name).
    Listing {
        /// The listing's URL.
        url: String,
        /// JSON pointer to the array (e.g. `/data/posts`), or empty.
        items: String,
        /// `(parameter, field)` pairs; parameters not listed use the field of their own name.
        fields: Vec<(String, String)>,
    },
}

/// One route: a renderer and its caching rules.
#[derive(Clone)]
pub struct Route {
    pub(crate) renderer: Renderer,
    pub(crate) revalidate: Option<u32>,
    pub(crate) tags: Vec<String>,
    pub(crate) static_params: Option<StaticParams>,
    pub(crate) dynamic_params: bool,
}

impl Route {
    /// A route rendered by `f`.
    pub fn render<F, Fut>(f: F) -> Route
    where
        F: Fn(RenderContext) -> Fut + 'static,
        Fut: Future<Output = Result<Page, RenderError>> + 'static,
    {
        Route::with_renderer(Renderer::Render(Rc::new(move |cx| Box::pin(f(cx)))))
    }

    /// A route proxied to `ORIGIN_URL`.
    pub fn proxy() -> Route {
        Route::with_renderer(Renderer::Proxy(None))
    }

    /// A route proxied to another origin (its path and query are appended to `base`).
    pub fn proxy_to(base: url::Url) -> Route {
        Route::with_renderer(Renderer::Proxy(Some(base)))
    }

    fn with_renderer(renderer: Renderer) -> Route {
        Route {
            renderer,
            revalidate: None,
            tags: Vec::new(),
            static_params: None,
            dynamic_params: true,
        }
    }

    /// Seconds pages of this route stay fresh (Next.js's `export const revalidate`).
    /// For proxy routes the origin's `Cache-Control` still wins when it says something.
    pub fn revalidate(mut self, seconds: u32) -> Route {
        self.revalidate = Some(seconds);
        self
    }

    /// Tag templates (`post-{slug}`), filled from the route's parameters.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Route {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Parameters to pre-render on deploy and on the cron trigger (`generateStaticParams`).
    pub fn static_params(mut self, params: StaticParams) -> Route {
        self.static_params = Some(params);
        self
    }

    /// `false`: parameters outside [`Route::static_params`] answer 404 instead of being
    /// rendered on demand (Next.js's `export const dynamicParams = false`).
    pub fn dynamic_params(mut self, allowed: bool) -> Route {
        self.dynamic_params = allowed;
        self
    }
}

/// A route as registered: its pattern checked, its templates parsed.
pub struct RegisteredRoute {
    /// The pattern as written (`/blog/:slug`).
    pub pattern: String,
    /// Parameter names, in order.
    pub params: Vec<String>,
    /// The route.
    pub route: Route,
    /// The catch-all parameter (`*rest`), if the pattern ends with one.
    pub catch_all: Option<String>,
    tags: Vec<Template>,
    path: Template,
}

impl RegisteredRoute {
    fn new(pattern: &str, route: Route) -> Result<(RegisteredRoute, String), PatternError> {
        let (matchit_pattern, params) = to_matchit(pattern)?;
        let tags = route
            .tags
            .iter()
            .map(|t| Template::parse(t, &params))
            .collect::<Result<Vec<_>, _>>()?;
        if route.static_params.is_none() && !route.dynamic_params {
            return Err(PatternError(format!(
                "route {pattern:?}: dynamic_params(false) needs static_params, or every path would be 404"
            )));
        }
        let path = Template::parse(&matchit_pattern.replace("{*", "{"), &params)?;
        let catch_all = params.last().filter(|name| matchit_pattern.ends_with(&format!("{{*{name}}}"))).cloned();
        Ok((
            RegisteredRoute {
                pattern: pattern.to_string(),
                params,
                route,
                catch_all,
                tags,
                path,
            },
            matchit_pattern,
        ))
    }

    /// The route's tags for one page.
    pub fn tags_for(&self, params: &Params) -> Vec<String> {
        self.tags.iter().map(|t| t.fill(params)).collect()
    }

    /// The path of the page with these parameters (for pre-rendering), or why these values
    /// cannot be this route's (see [`check_value`]).
    pub fn path_for(&self, params: &Params) -> Result<String, PatternError> {
        let mut params = params.clone();
        if let Some(name) = &self.catch_all {
            params = params.with_catch_all(name);
        }
        self.path.fill_url(&params)
    }
}

/// The routes of a site, and what answers paths that match none.
pub struct Site {
    router: matchit::Router<usize>,
    routes: Vec<RegisteredRoute>,
    fallback: RegisteredRoute,
    templates: Option<Rc<template::Templates>>,
    sitemaps: Vec<String>,
}

impl Default for Site {
    fn default() -> Self {
        Site::new()
    }
}

/// A site made on its first use: a HIT answers from the store without looking at any route, so
/// a worker whose first requests are HITs never compiles the site's templates nor parses its
/// configuration (the cold start of a fresh isolate; see BENCHMARKS.md). Reads as a [`Site`].
pub struct LazySite {
    site: std::cell::OnceCell<Rc<Site>>,
    make: Box<dyn Fn() -> Rc<Site>>,
}

impl LazySite {
    /// A site made by `make` when it is first used.
    pub fn new(make: impl Fn() -> Rc<Site> + 'static) -> LazySite {
        LazySite { site: std::cell::OnceCell::new(), make: Box::new(make) }
    }

    /// A site already made.
    pub fn ready(site: Rc<Site>) -> LazySite {
        LazySite { site: std::cell::OnceCell::from(site), make: Box::new(|| Rc::new(Site::new())) }
    }

    /// Whether the site has been made.
    pub fn is_made(&self) -> bool {
        self.site.get().is_some()
    }
}

impl std::ops::Deref for LazySite {
    type Target = Site;

    fn deref(&self) -> &Site {
        self.site.get_or_init(|| (self.make)())
    }
}

/// A path matched to its route.
pub struct Matched<'a> {
    /// The route (the fallback when no pattern matched).
    pub route: &'a RegisteredRoute,
    /// The parameters' values, percent-decoded.
    pub params: Params,
    /// Why the values cannot be this route's (a `/` or `..` smuggled in with `%2F`, see
    /// [`check_value`]): such a path is answered 404 without rendering.
    pub refused: Option<PatternError>,
}

impl Site {
    /// A site with no routes: every path goes to the proxy (`ORIGIN_URL`).
    pub fn new() -> Site {
        Site {
            router: matchit::Router::new(),
            routes: Vec::new(),
            fallback: RegisteredRoute::new("/", Route::proxy()).expect("the root pattern is valid").0,
            templates: None,
            sitemaps: Vec::new(),
        }
    }

    /// Adds a route. Panics on a malformed pattern or tag template (a programming error, found
    /// on the first request); use [`Site::try_route`] for patterns read from configuration.
    pub fn route(mut self, pattern: &str, route: Route) -> Site {
        if let Err(e) = self.try_route(pattern, route) {
            panic!("{e}");
        }
        self
    }

    /// Adds a route, or says why it cannot be added.
    pub fn try_route(&mut self, pattern: &str, route: Route) -> Result<(), PatternError> {
        let (registered, matchit_pattern) = RegisteredRoute::new(pattern, route)?;
        self.router
            .insert(matchit_pattern, self.routes.len())
            .map_err(|e| PatternError(format!("route pattern {pattern:?}: {e}")))?;
        self.routes.push(registered);
        Ok(())
    }

    /// Sets what answers paths no route matches (by default [`Route::proxy`]).
    pub fn fallback(mut self, route: Route) -> Site {
        self.fallback = RegisteredRoute::new("/", route).expect("the root pattern is valid").0;
        self
    }

    /// The route for `path`, or `None` when only the fallback matches.
    pub fn find(&self, path: &str) -> Option<Matched<'_>> {
        let found = self.router.at(path).ok()?;
        let route = &self.routes[*found.value];
        let mut params = Params::new(found.params.iter().map(|(k, v)| (k.to_string(), percent_decode(v))).collect());
        if let Some(name) = &route.catch_all {
            params = params.with_catch_all(name);
        }
        Some(Matched {
            route,
            refused: params.refusal(),
            params,
        })
    }

    /// The route for `path`, the fallback included.
    pub fn route_for(&self, path: &str) -> Matched<'_> {
        self.find(path).unwrap_or(Matched {
            route: &self.fallback,
            params: Params::default(),
            refused: None,
        })
    }

    /// The page answered when a render fails: the site's `404.html` / `error.html` templates
    /// when it has them (see [`template::error_page`]).
    pub fn error_page(&self, error: &RenderError, path: &str) -> Page {
        template::error_page(self.templates.as_deref(), error, path)
    }

    /// Also pre-renders every page listed in the sitemap at `url` (absolute, or relative to
    /// `CMS_URL`; `<urlset>` only, not sitemap indexes).
    pub fn sitemap(mut self, url: &str) -> Site {
        self.sitemaps.push(url.to_string());
        self
    }

    /// The sitemaps to pre-render.
    pub fn sitemaps(&self) -> &[String] {
        &self.sitemaps
    }

    /// Every registered route (not the fallback), in registration order.
    pub fn routes(&self) -> impl Iterator<Item = &RegisteredRoute> {
        self.routes.iter()
    }
}

/// Decodes `%XX` escapes of a path parameter (invalid UTF-8 is replaced, never fails).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_site_is_made_once_on_first_use() {
        let made = Rc::new(std::cell::Cell::new(0));
        let counter = made.clone();
        let lazy = LazySite::new(move || {
            counter.set(counter.get() + 1);
            Rc::new(Site::new().route("/a/:x", Route::proxy()))
        });
        assert!(!lazy.is_made());
        assert_eq!(made.get(), 0, "not made before it is used");
        assert!(lazy.find("/a/1").is_some());
        assert!(lazy.find("/a/2").is_some());
        assert_eq!(made.get(), 1, "made once");
        assert!(LazySite::ready(Rc::new(Site::new())).is_made());
    }

    async fn page(_: RenderContext) -> Result<Page, RenderError> {
        Ok(Page::html("x"))
    }

    #[test]
    fn paths_find_their_route_and_parameters() {
        let site = Site::new()
            .route("/blog/:slug", Route::render(page).tags(["post-{slug}", "posts"]))
            .route("/docs/*rest", Route::render(page))
            .route("/", Route::render(page));
        let m = site.find("/blog/hello-world").unwrap();
        assert_eq!(m.route.pattern, "/blog/:slug");
        assert_eq!(m.params.get("slug"), Some("hello-world"));
        assert_eq!(m.route.tags_for(&m.params), vec!["post-hello-world", "posts"]);
        let m = site.find("/docs/a/b/c").unwrap();
        assert_eq!(m.params.get("rest"), Some("a/b/c"));
        assert_eq!(site.find("/").unwrap().route.pattern, "/");
        assert!(site.find("/blog/a/b").is_none(), "one segment only");
        assert!(site.find("/other").is_none());
        assert!(matches!(site.route_for("/other").route.route.renderer, Renderer::Proxy(None)));
    }

    #[test]
    fn static_segments_win_over_parameters() {
        let site = Site::new()
            .route("/blog/:slug", Route::render(page).tags(["dynamic"]))
            .route("/blog/archive", Route::render(page).tags(["archive"]));
        let m = site.find("/blog/archive").unwrap();
        assert_eq!(m.route.tags_for(&m.params), vec!["archive"]);
    }

    #[test]
    fn parameters_are_percent_decoded() {
        let site = Site::new().route("/t/:name", Route::render(page));
        assert_eq!(site.find("/t/caf%C3%A9%20au%20lait").unwrap().params.get("name"), Some("café au lait"));
        assert_eq!(site.find("/t/100%").unwrap().params.get("name"), Some("100%"));
        assert_eq!(site.find("/t/%zz").unwrap().params.get("name"), Some("%zz"));
    }

    #[test]
    fn parameters_that_smuggle_a_slash_or_dot_segment_are_refused() {
        let site = Site::new().route("/t/:name", Route::render(page)).route("/d/*rest", Route::render(page));
        for path in ["/t/..%2Fx", "/t/a%2Fb", "/t/..", "/t/.", "/d/a/..%2Fb", "/d/%2E%2E%2Fb"] {
            let m = site.find(path).unwrap();
            assert!(m.refused.is_some(), "{path}");
        }
        for path in ["/t/a.b", "/t/...", "/d/a/b", "/d/.well-known/x"] {
            assert!(site.find(path).unwrap().refused.is_none(), "{path}");
        }
        assert!(site.find("/d/a/b").unwrap().params.is_catch_all("rest"));
    }

    #[test]
    fn conflicting_or_malformed_routes_are_refused() {
        let mut site = Site::new();
        site.try_route("/blog/:slug", Route::render(page)).unwrap();
        assert!(site.try_route("/blog/:id", Route::render(page)).is_err(), "same shape, other name");
        assert!(site.try_route("/x/:a", Route::render(page).tags(["t-{b}"])).is_err());
        let err = site
            .try_route("/y/:a", Route::render(page).dynamic_params(false))
            .unwrap_err();
        assert!(err.0.contains("static_params"), "{err}");
    }

    #[test]
    fn pre_render_paths_are_built_from_parameters() {
        let site = Site::new().route("/blog/:slug", Route::render(page)).route("/docs/*rest", Route::render(page));
        let blog = site.routes().next().unwrap();
        let p = Params::new(vec![("slug".into(), "a b".into())]);
        assert_eq!(blog.path_for(&p).unwrap(), "/blog/a%20b");
        let p = Params::new(vec![("slug".into(), "../x".into())]);
        assert!(blog.path_for(&p).is_err(), "a listed value cannot name another page");
        let docs = site.routes().nth(1).unwrap();
        let p = Params::new(vec![("rest".into(), "x/y".into())]);
        assert_eq!(docs.path_for(&p).unwrap(), "/docs/x/y");
    }
}

//! Routes configured without code: fetch JSON from a CMS, render an HTML template.
//!
//! The configuration (`www/site.json` in the demo) lists routes; each names a template, the
//! data it needs (URLs with `{param}` holes, each with the tags it gives the page, like
//! Next.js's `fetch(url, { next: { tags } })`), its revalidate time and tags, and optionally
//! its static parameters:
//!
//! ```json
//! { "routes": [
//!   { "pattern": "/blog/:slug", "template": "post.html", "revalidate": 300,
//!     "tags": ["posts"],
//!     "data": { "post": { "url": "/api/posts/{slug}", "tags": ["post-{slug}"] } },
//!     "static_params": { "listing": "/api/posts", "fields": { "slug": "slug" } },
//!     "dynamic_params": false } ] }
//! ```
//!
//! Templates use the `upon` crate's Jinja-like syntax (`{{ post.title }}`, `{% if %}`,
//! `{% for %}`, `{% include "header.html" %}`, `{{ post?.author }}` for optional fields), and
//! every value is HTML-escaped. Each data entry is a template variable, beside `params` and `path`. A missing entry (the CMS
//! answers 404) renders `404.html` (stored, like `notFound()`); a CMS error, unusable JSON or a
//! template error renders `error.html` with status 500/502, which is never stored.

use super::pattern::{Params, PatternError, Template};
use super::render::{FetchOptions, Page, RenderContext, RenderError};
use super::{Route, Site, StaticParams};
use futures_util::future::join_all;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The site configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Template routes, matched before the fallback proxy.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Sitemaps whose pages are pre-rendered too: `{"sitemaps": ["/sitemap.xml"]}`.
    #[serde(default)]
    pub sitemaps: Vec<String>,
}

/// One configured route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `/blog/:slug`.
    pub pattern: String,
    /// Template file name (under `www/templates/`).
    pub template: String,
    /// Seconds a page stays fresh (default: `DEFAULT_REVALIDATE`).
    #[serde(default)]
    pub revalidate: Option<u32>,
    /// Tag templates.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Template variables and where their data comes from.
    #[serde(default)]
    pub data: BTreeMap<String, DataConfig>,
    /// Parameters to pre-render.
    #[serde(default)]
    pub static_params: Option<StaticParamsConfig>,
    /// `false`: only the static parameters exist; others are 404.
    #[serde(default = "yes")]
    pub dynamic_params: bool,
}

fn yes() -> bool {
    true
}

/// One data fetch of a route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// URL (relative to `CMS_URL`, or absolute) with `{param}` holes.
    pub url: String,
    /// Tags this data gives the page.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Seconds this data stays fresh (the page uses the smallest).
    #[serde(default)]
    pub revalidate: Option<u32>,
}

/// Where a route's static parameters come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticParamsConfig {
    /// Parameters listed here: `[{"slug": "hello"}]`.
    #[serde(default)]
    pub list: Option<Vec<BTreeMap<String, String>>>,
    /// Or: URL of a JSON listing in the CMS.
    #[serde(default)]
    pub listing: Option<String>,
    /// JSON pointer to the array in the listing (default: the whole answer).
    #[serde(default)]
    pub items: String,
    /// Parameter → field of each listed item (default: the field of the same name).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl StaticParamsConfig {
    fn to_static_params(&self, pattern: &str) -> Result<StaticParams, PatternError> {
        match (&self.list, &self.listing) {
            (Some(list), None) => Ok(StaticParams::List(
                list.iter().map(|m| Params::new(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())).collect(),
            )),
            (None, Some(url)) => Ok(StaticParams::Listing {
                url: url.clone(),
                items: self.items.clone(),
                fields: self.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }),
            _ => Err(PatternError(format!(
                "route {pattern:?}: static_params needs exactly one of \"list\" or \"listing\""
            ))),
        }
    }
}

/// A configuration or template that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteError(pub String);

impl std::fmt::Display for SiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SiteError {}

impl From<PatternError> for SiteError {
    fn from(e: PatternError) -> Self {
        SiteError(e.0)
    }
}

/// Compiled templates, shared by every route of a site.
pub struct Templates {
    engine: upon::Engine<'static>,
}

impl Templates {
    /// Compiles `(file name, source)` pairs; a syntax error names the file and line.
    pub fn new(files: &[(&'static str, &'static str)]) -> Result<Templates, SiteError> {
        let mut engine = upon::Engine::new();
        engine.set_default_formatter(&escape_html);
        for (name, source) in files {
            engine
                .add_template(*name, *source)
                .map_err(|e| SiteError(format!("template {name}: {}", one_line(&e))))?;
        }
        Ok(Templates { engine })
    }

    /// Whether a template of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.engine.get_template(name).is_some()
    }

    /// Renders `name` with `context`.
    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, RenderError> {
        let template = self
            .engine
            .get_template(name)
            .ok_or_else(|| RenderError::Template(format!("{name}: no such template")))?;
        template
            .render(context)
            .to_string()
            .map_err(|e| RenderError::Template(format!("{name}: {}", one_line(&e))))
    }

    /// The page for a failed render (see [`error_page`]).
    pub fn error_page(&self, error: &RenderError, path: &str) -> Page {
        error_page(Some(self), error, path)
    }
}

/// The page for a failed render: `404.html` for [`RenderError::NotFound`] (a page that is
/// stored like any other), otherwise `error.html` (or plain text) with status 500, or 502
/// when the CMS failed, marked `no-store` so it can never be cached.
pub fn error_page(templates: Option<&Templates>, error: &RenderError, path: &str) -> Page {
    let (status, template) = match error {
        RenderError::NotFound => (404, "404.html"),
        RenderError::Data(_) | RenderError::Upstream(_) => (502, "error.html"),
        RenderError::Template(_) => (500, "error.html"),
    };
    let context = serde_json::json!({ "status": status, "path": path });
    let body = match templates {
        Some(t) if t.has(template) => t.render(template, &context).ok(),
        _ => None,
    };
    let body = body.unwrap_or_else(|| match status {
        404 => "<!doctype html><title>Not found</title><h1>404: this page does not exist</h1>".into(),
        _ => "<!doctype html><title>Error</title><h1>This page could not be rendered</h1><p>Please try again in a moment.</p>".into(),
    });
    let page = Page::html(body).status(status);
    if status == 404 {
        page
    } else {
        page.header("cache-control", "no-store")
    }
}

/// An upon error on one line for the log: its message and the `line:column` of its pretty form.
fn one_line(e: &upon::Error) -> String {
    let pretty = format!("{e:#}");
    let at = pretty.lines().find_map(|l| l.trim().strip_prefix("--> ").map(str::to_string));
    match at {
        Some(at) => format!("{e} at {at}"),
        None => e.to_string(),
    }
}

/// upon's formatter for `{{ value }}`: strings HTML-escaped, other values as upon prints them.
fn escape_html(f: &mut upon::fmt::Formatter<'_>, value: &upon::Value) -> upon::fmt::Result {
    use std::fmt::Write as _;
    match value {
        upon::Value::String(s) => {
            for c in s.chars() {
                match c {
                    '&' => f.write_str("&amp;")?,
                    '<' => f.write_str("&lt;")?,
                    '>' => f.write_str("&gt;")?,
                    '"' => f.write_str("&quot;")?,
                    '\'' => f.write_str("&#39;")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
        other => upon::fmt::default(f, other),
    }
}

/// One template route, ready to render.
struct TemplateRoute {
    templates: Rc<Templates>,
    template: String,
    data: Vec<DataSource>,
}

/// One `data` entry of a route, parsed: the template variable it fills and its fetch.
struct DataSource {
    name: String,
    url: Template,
    tags: Vec<Template>,
    revalidate: Option<u32>,
}

impl TemplateRoute {
    async fn render(&self, cx: RenderContext) -> Result<Page, RenderError> {
        let fetches = self.data.iter().map(|source| {
            let url = source.url.fill_url(&cx.params).map_err(|e| RenderError::Data(e.0));
            let opts = FetchOptions {
                tags: source.tags.iter().map(|t| t.fill(&cx.params)).collect(),
                revalidate: source.revalidate,
            };
            let cx = cx.clone();
            async move { cx.fetch_json(&url?, opts).await }
        });
        let results = join_all(fetches).await;
        let mut context = serde_json::Map::new();
        for (source, result) in self.data.iter().zip(results) {
            context.insert(source.name.clone(), result?);
        }
        let params: serde_json::Map<String, serde_json::Value> =
            cx.params.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        context.insert("params".into(), params.into());
        context.insert("path".into(), cx.path.clone().into());
        let html = self.templates.render(&self.template, &context.into())?;
        Ok(Page::html(html))
    }
}

impl Site {
    /// Adds the routes of a configuration file (JSON), rendering with `templates`.
    pub fn with_config(mut self, json: &str, templates: Rc<Templates>) -> Result<Site, SiteError> {
        let config: SiteConfig = serde_json::from_str(json).map_err(|e| SiteError(format!("site configuration: {e}")))?;
        for rc in &config.routes {
            let route = template_route(rc, &templates)?;
            self.try_route(&rc.pattern, route)?;
        }
        self.sitemaps.extend(config.sitemaps);
        self.templates = Some(templates);
        Ok(self)
    }
}

fn template_route(rc: &RouteConfig, templates: &Rc<Templates>) -> Result<Route, SiteError> {
    if !templates.has(&rc.template) {
        return Err(SiteError(format!("route {:?}: no template named {:?}", rc.pattern, rc.template)));
    }
    let (_, params) = super::to_matchit(&rc.pattern)?;
    let mut data = Vec::new();
    for (name, d) in &rc.data {
        if matches!(name.as_str(), "params" | "path") {
            return Err(SiteError(format!("route {:?}: data name {name:?} is reserved", rc.pattern)));
        }
        let tags = d.tags.iter().map(|t| Template::parse(t, &params)).collect::<Result<_, _>>()?;
        data.push(DataSource {
            name: name.clone(),
            url: Template::parse(&d.url, &params)?,
            tags,
            revalidate: d.revalidate,
        });
    }
    let renderer = Rc::new(TemplateRoute {
        templates: templates.clone(),
        template: rc.template.clone(),
        data,
    });
    let mut route = Route::render(move |cx| {
        let renderer = renderer.clone();
        async move { renderer.render(cx).await }
    })
    .tags(rc.tags.iter().cloned())
    .dynamic_params(rc.dynamic_params);
    if let Some(r) = rc.revalidate {
        route = route.revalidate(r);
    }
    if let Some(sp) = &rc.static_params {
        route = route.static_params(sp.to_static_params(&rc.pattern)?);
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &str = "<h1>{{ post.title }}</h1>{{ post.body }}";

    fn templates() -> Rc<Templates> {
        Rc::new(Templates::new(&[("post.html", POST), ("404.html", "<p>no {{ path }}</p>")]).unwrap())
    }

    #[test]
    fn template_render_errors_say_where() {
        let t = Templates::new(&[("t.html", "line one\n{{ post.missing }}")]).unwrap();
        let err = t.render("t.html", &serde_json::json!({"post": {}})).unwrap_err();
        assert!(matches!(&err, RenderError::Template(m) if m.contains("t.html") && m.contains(":2:")), "{err}");
    }

    #[test]
    fn configured_routes_register_with_their_rules() {
        let json = r#"{"routes": [{"pattern": "/blog/:slug", "template": "post.html", "revalidate": 30,
            "tags": ["posts"], "data": {"post": {"url": "/api/posts/{slug}", "tags": ["post-{slug}"]}},
            "static_params": {"listing": "/api/posts"}, "dynamic_params": false}]}"#;
        let site = Site::new().with_config(json, templates()).unwrap();
        let m = site.find("/blog/a").unwrap();
        assert_eq!(m.route.route.revalidate, Some(30));
        assert!(!m.route.route.dynamic_params);
        assert_eq!(m.route.tags_for(&m.params), vec!["posts"]);
    }

    #[test]
    fn configuration_mistakes_are_reported_at_start_up() {
        let t = templates();
        let cases = [
            (r#"{"routes": [{"pattern": "/a", "template": "missing.html"}]}"#, "no template"),
            (r#"{"routes": [{"pattern": "/a/:x", "template": "post.html", "data": {"post": {"url": "/p/{y}"}}}]}"#, "{y}"),
            (r#"{"routes": [{"pattern": "/a", "template": "post.html", "colour": 1}]}"#, "colour"),
            (r#"{"routes": [{"pattern": "/a", "template": "post.html", "data": {"params": {"url": "/x"}}}]}"#, "reserved"),
            (r#"{"routes": [{"pattern": "/a/:x", "template": "post.html", "static_params": {}}]}"#, "exactly one"),
        ];
        for (json, needle) in cases {
            let err = Site::new().with_config(json, t.clone()).err().expect(json);
            assert!(err.0.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn template_syntax_errors_name_the_file() {
        let err = Templates::new(&[("bad.html", "{% if %}")]).err().unwrap();
        assert!(!err.0.contains('\n'), "one line for the log: {err}");
        assert!(err.0.contains("bad.html"), "{err}");
    }

    #[test]
    fn templates_escape_html_from_the_cms() {
        let out = templates()
            .render("post.html", &serde_json::json!({"post": {"title": "<script>x</script>", "body": "a&b"}}))
            .unwrap();
        assert_eq!(out, "<h1>&lt;script&gt;x&lt;/script&gt;</h1>a&amp;b");
    }

    #[test]
    fn error_pages_are_never_cacheable_but_not_found_pages_are() {
        let t = templates();
        let nf = t.error_page(&RenderError::NotFound, "/blog/x");
        assert_eq!(nf.status, 404);
        assert_eq!(std::str::from_utf8(&nf.body).unwrap(), "<p>no /blog/x</p>");
        assert_eq!(nf.headers.get("cache-control"), None);
        let e = t.error_page(&RenderError::Template("boom".into()), "/x");
        assert_eq!((e.status, e.headers.get("cache-control")), (500, Some("no-store")));
        let d = t.error_page(&RenderError::Data("cms 500".into()), "/x");
        assert_eq!(d.status, 502);
        assert!(!std::str::from_utf8(&d.body).unwrap().contains("cms 500"), "details go to the log, not to visitors");
    }
}

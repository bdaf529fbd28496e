//! The engine with a site's routes: render functions, template routes on a CMS, static
//! parameters and pre-rendering.

use crate::http::Request;
use crate::engine::jobs::{Job, MemoryJobQueue};
use crate::site::template::Templates;
use crate::site::{FetchOptions, Page, Params, Route, Site, StaticParams};
use crate::testing::{body, cache_state, Bench, Reply};
use futures::executor::block_on;
use std::rc::Rc;

const SITE: &str = r#"{"routes": [
  {"pattern": "/blog/:slug", "template": "post.html", "revalidate": 300, "tags": ["posts"],
   "data": {"post": {"url": "/api/posts/{slug}", "tags": ["post-{slug}"]}}},
  {"pattern": "/only/:slug", "template": "post.html",
   "data": {"post": {"url": "/api/posts/{slug}"}},
   "static_params": {"listing": "/api/posts", "items": "/posts"}, "dynamic_params": false}
]}"#;

fn templates() -> Rc<Templates> {
    Rc::new(
        Templates::new(&[
            ("post.html", "<h1>{{ post.title }}</h1>"),
            ("broken.html", "{{ post.title | no_such_filter }}"),
            ("404.html", "<p>nothing at {{ path }}</p>"),
        ])
        .unwrap(),
    )
}

fn cms_bench() -> Bench {
    Bench::new().with_site(Site::new().with_config(SITE, templates()).unwrap())
}

/// A stored value, read without counting against the test's invocation.
async fn peek(b: &Bench, key: &str) -> Option<crate::store::StoredValue> {
    crate::store::KvStore::get(&b.kv, key).await.unwrap()
}

async fn stored_meta(b: &Bench, id: &str) -> crate::rules::meta::PageMeta {
    let v = peek(b, &crate::store::layout::page_key("1", id)).await.expect("the page is stored");
    crate::rules::meta::PageMeta::decode(v.metadata.as_deref()).unwrap()
}

async fn tags_of(b: &Bench, path: &str) -> Vec<String> {
    let key = crate::store::layout::page_tags_key(&b.config.cache_version, &format!("site.test{path}"));
    let v = peek(b, &key).await.expect("the page has a tag list");
    let mut tags: Vec<String> = serde_json::from_slice(&v.value).unwrap();
    tags.sort();
    tags
}

#[test]
fn a_template_route_renders_cms_json_and_stores_it_with_its_tags() {
    let b = cms_bench();
    b.origin.reply("/api/posts/hello", Reply::Json(r#"{"title": "Hello <world>"}"#.into()));
    block_on(async {
        let first = b.get("/blog/hello").await;
        assert_eq!((first.status, cache_state(&first)), (200, "MISS"));
        assert_eq!(body(&first), "<h1>Hello &lt;world&gt;</h1>");
        assert_eq!(first.headers.get("content-type"), Some("text/html; charset=utf-8"));
        b.run_background().await;
        assert_eq!(tags_of(&b, "/blog/hello").await, ["post-hello", "posts"]);
        let meta = stored_meta(&b, "site.test/blog/hello").await;
        assert_eq!(meta.revalidate_s, 300, "the route's revalidate time");
        let hit = b.get("/blog/hello").await;
        assert_eq!(cache_state(&hit), "HIT");
        assert_eq!(b.origin.renders("/api/posts/hello"), 1, "one CMS fetch");
    });
}

#[test]
fn a_tag_from_a_data_fetch_invalidates_the_page() {
    let b = cms_bench();
    b.origin.reply("/api/posts/p", Reply::Json(r#"{"title": "v1"}"#.into()));
    block_on(async {
        b.get("/blog/p").await;
        b.run_background().await;
        b.clock.advance(1_500);
        b.kv.begin_invocation();
        let hosts = vec!["site.test".to_string()];
        let inv = crate::engine::jobs::Invalidation {
            tags: vec!["post-p".into()],
            ..Default::default()
        };
        b.engine().invalidate(&hosts, &inv).await;
        b.origin.reply("/api/posts/p", Reply::Json(r#"{"title": "v2"}"#.into()));
        let stale = b.get("/blog/p").await;
        assert_eq!((cache_state(&stale), body(&stale).as_str()), ("STALE", "<h1>v1</h1>"));
        b.run_background().await;
        let fresh = b.get("/blog/p").await;
        assert_eq!((cache_state(&fresh), body(&fresh).as_str()), ("HIT", "<h1>v2</h1>"));
    });
}

#[test]
fn cms_errors_give_an_error_page_that_is_never_stored() {
    let b = cms_bench();
    b.origin.reply("/api/posts/e", Reply::Status(500));
    block_on(async {
        let resp = b.get("/blog/e").await;
        assert_eq!(resp.status, 502);
        assert!(body(&resp).contains("could not be rendered"));
        b.run_background().await;
        assert!(peek(&b, &crate::store::layout::page_key("1", "site.test/blog/e")).await.is_none());
        assert_eq!(b.logger.count_event("render_failed", "/blog/e"), 1, "{:?}", b.logger.lines());
        b.origin.reply("/api/posts/e", Reply::Json("not json".into()));
        assert_eq!(b.get("/blog/e").await.status, 502);
    });
}

#[test]
fn a_failing_cms_never_replaces_a_good_page() {
    let b = cms_bench();
    b.origin.reply("/api/posts/g", Reply::Json(r#"{"title": "good"}"#.into()));
    block_on(async {
        b.get("/blog/g").await;
        b.run_background().await;
        b.clock.advance(301_000);
        for failure in [Reply::Status(500), Reply::Json("{".into()), Reply::Network] {
            b.origin.reply("/api/posts/g", failure);
            b.isolate.regenerations.clear_backoff(&crate::store::layout::page_key("1", "site.test/blog/g"));
            b.clock.advance(600_000); // past any lease back-off
            let resp = b.get("/blog/g").await;
            assert_eq!((cache_state(&resp), body(&resp).as_str()), ("STALE", "<h1>good</h1>"));
            b.run_background().await;
        }
        let resp = b.get("/blog/g").await;
        assert_eq!(body(&resp), "<h1>good</h1>");
    });
}

#[test]
fn a_template_error_is_an_uncached_500_and_is_logged() {
    let site = Site::new()
        .with_config(r#"{"routes": [{"pattern": "/t/:x", "template": "broken.html", "data": {"post": {"url": "/api/x"}}}]}"#, templates())
        .unwrap();
    let b = Bench::new().with_site(site);
    b.origin.reply("/api/x", Reply::Json(r#"{"title": "t"}"#.into()));
    block_on(async {
        let resp = b.get("/t/1").await;
        assert_eq!(resp.status, 500);
        assert_eq!(resp.headers.get("cache-control"), Some("no-store"));
        b.run_background().await;
        assert!(peek(&b, &crate::store::layout::page_key("1", "site.test/t/1")).await.is_none());
        assert!(b.logger.count("broken.html") == 1, "{:?}", b.logger.lines());
    });
}

#[test]
fn missing_cms_content_is_a_stored_404_page() {
    let b = cms_bench();
    b.origin.reply("/api/posts/gone", Reply::Status(404));
    block_on(async {
        let resp = b.get("/blog/gone").await;
        assert_eq!(resp.status, 404);
        assert_eq!(body(&resp), "<p>nothing at /blog/gone</p>");
        b.run_background().await;
        let meta = stored_meta(&b, "site.test/blog/gone").await;
        assert_eq!(meta.revalidate_s, b.config.not_found_revalidate_s);
        assert_eq!(cache_state(&b.get("/blog/gone").await), "HIT");
    });
}

#[test]
fn render_functions_get_parameters_route_tags_and_fetch_tags() {
    let site = Site::new().route(
        "/hello/:name",
        Route::render(|cx| async move {
            let data = cx.fetch_json("/api/greeting", FetchOptions { tags: vec!["greetings".into()], revalidate: Some(20) }).await?;
            Ok(Page::html(format!("{} {}", data["word"].as_str().unwrap_or("?"), cx.param("name"))).tag("extra"))
        })
        .revalidate(100)
        .tags(["hello-{name}"]),
    );
    let b = Bench::new().with_site(site);
    b.origin.reply("/api/greeting", Reply::Json(r#"{"word": "Hi"}"#.into()));
    block_on(async {
        assert_eq!(body(&b.get("/hello/ada").await), "Hi ada");
        b.run_background().await;
        assert_eq!(tags_of(&b, "/hello/ada").await, ["extra", "greetings", "hello-ada"]);
        let meta = stored_meta(&b, "site.test/hello/ada").await;
        assert_eq!(meta.revalidate_s, 20, "the smallest of the route's and the fetch's");
        // Paths outside the routes still go to the origin.
        let other = b.get("/elsewhere").await;
        assert_eq!(body(&other), "page /elsewhere render=1");
    });
}

#[test]
fn requests_with_credentials_on_render_routes_are_rendered_but_not_stored() {
    let site = Site::new().route("/me", Route::render(|_| async { Ok(Page::html("hello")) }));
    let b = Bench::new().with_site(site);
    block_on(async {
        let req = Request::new("GET", "https://site.test/me").with_header("authorization", "Bearer x");
        let resp = b.send(req).await;
        assert_eq!((resp.status, cache_state(&resp), body(&resp).as_str()), (200, "BYPASS", "hello"));
        b.run_background().await;
        assert!(peek(&b, &crate::store::layout::page_key("1", "site.test/me")).await.is_none());
        let post = b.send(Request::new("POST", "https://site.test/me")).await;
        assert_eq!(post.status, 405);
    });
}

#[test]
fn dynamic_params_false_answers_404_outside_the_listing() {
    let b = cms_bench();
    b.origin.reply("/api/posts", Reply::Json(r#"{"posts": [{"slug": "a"}, {"slug": "b"}]}"#.into()));
    b.origin.reply("/api/posts/a", Reply::Json(r#"{"title": "A"}"#.into()));
    block_on(async {
        assert_eq!(body(&b.get("/only/a").await), "<h1>A</h1>");
        let unknown = b.get("/only/zzz").await;
        assert_eq!(unknown.status, 404);
        assert_eq!(b.origin.renders("/api/posts/zzz"), 0, "never asks the CMS for it");
        assert_eq!(b.origin.renders("/api/posts"), 1, "the listing is kept in KV");
        b.run_background().await;
        b.get("/only/other").await;
        assert_eq!(b.origin.renders("/api/posts"), 1);
    });
}

#[test]
fn prerendering_queues_batches_and_renders_only_missing_or_stale_pages() {
    let listing: Vec<serde_json::Value> = (0..25).map(|i| serde_json::json!({"slug": format!("p{i}")})).collect();
    let site = Site::new().route(
        "/list/:slug",
        Route::render(|cx| async move { Ok(Page::html(cx.param("slug").to_string())) })
            .static_params(StaticParams::Listing { url: "/api/all".into(), items: String::new(), fields: vec![] }),
    )
    .route(
        "/fixed/:id",
        Route::render(|cx| async move { Ok(Page::html(cx.param("id").to_string())) })
            .static_params(StaticParams::List(vec![Params::new(vec![("id".into(), "1".into())])])),
    );
    let b = Bench::new().with_site(site);
    b.origin.reply("/api/all", Reply::Json(serde_json::Value::from(listing).to_string()));
    let jobs = Rc::new(MemoryJobQueue::new());
    block_on(async {
        b.get("/list/p0").await; // already stored and fresh: skipped
        b.run_background().await;
        b.kv.begin_invocation();
        let report = b.engine().with_jobs(jobs.clone()).prerender("site.test").await;
        assert_eq!((report.paths, report.queued_batches), (26, 3));
        let mut rendered = 0;
        let mut fresh = 0;
        for (job, delay) in jobs.take_all_jobs() {
            assert_eq!(delay, 0);
            let Job::Prerender(job) = job else { panic!("a pre-render job") };
            assert!(job.prerender.len() <= crate::engine::PRERENDER_BATCH);
            b.kv.begin_invocation(); // one batch per invocation, within its KV operations
            let r = b.engine().run_prerender(job).await;
            rendered += r.rendered;
            fresh += r.fresh;
        }
        assert_eq!((rendered, fresh), (25, 1));
        assert_eq!(cache_state(&b.get("/list/p24").await), "HIT");
        assert_eq!(cache_state(&b.get("/fixed/1").await), "HIT");
        // Without a queue, the batches run in this invocation.
        b.clock.advance(3_600_000);
        b.kv.begin_invocation();
        let report = b.engine().prerender("site.test").await;
        assert_eq!((report.queued_batches, report.rendered), (0, 26));
    });
}

#[test]
fn pages_listed_in_a_sitemap_are_prerendered() {
    let site = Site::new()
        .route("/hello/:name", Route::render(|cx| async move { Ok(Page::html(format!("hi {}", cx.param("name")))) }))
        .sitemap("/sitemap.xml");
    let b = Bench::new().with_site(site);
    b.origin.reply(
        "/sitemap.xml",
        Reply::page("<urlset><url><loc>https://site.test/hello/a</loc></url><url><loc>https://site.test//about/./</loc></url></urlset>", &[]),
    );
    block_on(async {
        b.kv.begin_invocation();
        let report = b.engine().prerender("site.test").await;
        assert_eq!((report.paths, report.rendered), (2, 2), "{report:?}");
        assert_eq!(cache_state(&b.get("/hello/a").await), "HIT");
        assert_eq!(cache_state(&b.get("/about/").await), "HIT", "proxied pages too, at their normalised path");
    });
}

/// Issue 12: `GET /blog/..%2F..%2F..%2Fx` made the worker fetch `CMS_URL/x`.
#[test]
fn route_parameters_stay_inside_their_data_url() {
    const ROUTES: &str = r#"{"routes": [
      {"pattern": "/blog/:slug", "template": "post.html", "data": {"post": {"url": "/cms/api/posts/{slug}?lang=en"}}},
      {"pattern": "/docs/*rest", "template": "post.html", "data": {"post": {"url": "/cms/api/docs/{rest}"}}},
      {"pattern": "/search/:q", "template": "post.html", "data": {"post": {"url": "/cms/api/search?q={q}"}}}
    ]}"#;
    let b = Bench::new().with_site(Site::new().with_config(ROUTES, templates()).unwrap());
    block_on(async {
        for path in ["/blog/..%2F..%2F..%2Fx", "/blog/a%2Fb", "/blog/.%2E%2Fx", "/docs/a/..%2F..%2F..%2Fx", "/docs/%2E%2E%2Fx", "/docs/a%2F.%2Fb"] {
            let resp = b.get(path).await;
            assert_eq!(resp.status, 404, "{path}: {}", body(&resp));
        }
        let asked: Vec<String> = b.origin.requests().iter().map(|r| r.url.clone()).collect();
        assert!(asked.iter().all(|u| u.starts_with("http://origin.test/cms/api/")), "escaped the data URL: {asked:?}");
        assert!(asked.is_empty() || !asked.iter().any(|u| u.contains("/x")), "{asked:?}");

        // Values that are fine are encoded so they add no segment, query or fragment.
        b.get("/blog/a%3Fb%23c%26d").await;
        b.get("/docs/x/y%3Fz%23w").await;
        b.get("/search/a%26b%3Dc%20d%2Be").await;
        let asked: Vec<String> = b.origin.requests().iter().map(|r| r.url.clone()).collect();
        assert_eq!(
            asked,
            vec![
                "http://origin.test/cms/api/posts/a%3Fb%23c%26d?lang=en".to_string(),
                "http://origin.test/cms/api/docs/x/y%3Fz%23w".to_string(),
                "http://origin.test/cms/api/search?q=a%26b%3Dc+d%2Be".to_string(),
            ]
        );
    });
}

/// The Rust API's safe way to build a data URL from parameters.
#[test]
fn render_functions_build_data_urls_with_cx_url() {
    let site = Site::new().route(
        "/p/:slug",
        Route::render(|cx| async move {
            let post = cx.fetch_json(&cx.url("/api/posts/{slug}?v={slug}")?, FetchOptions::default()).await?;
            Ok(Page::html(post["title"].as_str().unwrap_or("").to_string()))
        }),
    );
    let b = Bench::new().with_site(site);
    b.origin.reply("/api/posts/a%20b%3F?v=a+b%3F", Reply::Json(r#"{"title": "ok"}"#.into()));
    block_on(async {
        assert_eq!(body(&b.get("/p/a%20b%3F").await), "ok");
        assert_eq!(b.get("/p/..%2Fx").await.status, 404);
        assert_eq!(b.origin.request_count(), 1);
    });
}

#[test]
fn a_hit_never_makes_a_lazy_site_and_a_miss_does() {
    let b = cms_bench();
    b.origin.reply("/api/posts/lazy", Reply::Json(r#"{"title": "Lazy"}"#.into()));
    let made = Rc::new(std::cell::Cell::new(0));
    let lazy = || {
        let made = made.clone();
        Rc::new(crate::site::LazySite::new(move || {
            made.set(made.get() + 1);
            Rc::new(Site::new().with_config(SITE, templates()).unwrap())
        }))
    };
    let get = |site: Rc<crate::site::LazySite>, path: &str| {
        b.kv.begin_invocation();
        let engine = b.engine().with_lazy_site(site);
        let req = Request::new("GET", &format!("https://site.test{path}"));
        async move { engine.handle(req).await }
    };
    block_on(async {
        let first = lazy();
        let miss = get(first.clone(), "/blog/lazy").await;
        assert_eq!(cache_state(&miss), "MISS");
        assert!(first.is_made(), "a MISS renders: the site is made");
        b.run_background().await;
        // A fresh isolate whose first request is a HIT.
        let fresh = lazy();
        let hit = get(fresh.clone(), "/blog/lazy").await;
        assert_eq!((cache_state(&hit), body(&hit).as_str()), ("HIT", "<h1>Lazy</h1>"));
        assert!(!fresh.is_made(), "a HIT needs no route");
        assert_eq!(made.get(), 1);
    });
}

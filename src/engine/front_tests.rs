//! A Worker as the origin (`ORIGIN_SERVICE`) and `Server-Timing` on every answer.

use crate::http::Request;
use crate::rules::config::Config;
use crate::site::{FetchOptions, Page, Route, Site};
use crate::testing::{body, cache_state, Bench, Reply};
use futures::executor::block_on;

fn service_bench() -> Bench {
    let config = Config::from_vars(|name| match name {
        "ORIGIN_SERVICE" => Some("APP".into()),
        "CMS_URL" => Some("http://cms.test".into()),
        "CACHE_HOSTS" => Some("www.site.test".into()),
        _ => None,
    })
    .unwrap();
    Bench::with_config(config)
}

fn timing(resp: &crate::http::Response) -> &str {
    resp.headers.get("server-timing").unwrap_or("")
}

#[test]
fn a_worker_origin_gets_the_pages_public_url_through_fetch_page() {
    let b = service_bench();
    b.origin.reply("/a?", Reply::page("unused", &[]));
    block_on(async {
        // Another host, port and scheme are keyed as the first CACHE_HOSTS host: the Worker
        // sees https://www.site.test/a, whatever the visitor typed.
        let first = b.send(Request::new("GET", "http://Other.test:8787/a")).await;
        assert_eq!(cache_state(&first), "MISS");
        b.run_background().await;
        assert_eq!(cache_state(&b.get("/a").await), "HIT");
        assert_eq!(b.origin.page_requests(), ["https://www.site.test/a"]);
        let sent = &b.origin.requests()[0];
        assert_eq!(sent.headers.get("x-forwarded-host"), Some("www.site.test"));
        assert_eq!(sent.headers.get("cookie"), None);
    });
}

#[test]
fn a_worker_origin_gets_conditional_regenerations_and_failures_keep_the_page() {
    let b = service_bench();
    b.origin.reply("/c", Reply::page("v", &[("cache-control", "s-maxage=10"), ("etag", "\"o1\"")]));
    block_on(async {
        b.get("/c").await;
        b.run_background().await;
        b.clock.advance(10_000);
        assert_eq!(cache_state(&b.get("/c").await), "STALE");
        b.run_background().await;
        assert_eq!(b.origin.not_modified("/c"), 1, "the regeneration asked with If-None-Match");
        assert_eq!(b.origin.page_requests().len(), 2);
        b.origin.reply("/c", Reply::Network);
        b.clock.advance(10_000);
        let stale = b.get("/c").await;
        assert_eq!(cache_state(&stale), "STALE");
        b.run_background().await;
        let kept = b.get("/c").await;
        assert_eq!(body(&kept), "v render=1", "a failing Worker never replaces the page");
        // A MISS whose Worker fails answers 502, and nothing is stored.
        b.origin.reply("/down", Reply::Network);
        let failed = b.get("/down").await;
        assert_eq!((failed.status, cache_state(&failed)), (502, "MISS"));
        b.origin.reply("/down", Reply::page("back", &[]));
        assert_eq!(cache_state(&b.get("/down").await), "MISS");
    });
}

#[test]
fn with_a_worker_origin_cms_data_and_other_proxy_bases_still_go_over_http() {
    let site = Site::new()
        .route(
            "/post/:slug",
            Route::render(|cx| async move {
                let post = cx.fetch_json(&format!("/api/{}", cx.param("slug")), FetchOptions::default()).await?;
                Ok(Page::html(post["t"].as_str().unwrap_or_default().to_string()))
            }),
        )
        .route("/legacy/*rest", Route::proxy_to(url::Url::parse("http://legacy.test").unwrap()));
    let b = service_bench().with_site(site);
    b.origin.reply("/api/x", Reply::Json(r#"{"t": "x"}"#.into()));
    block_on(async {
        assert_eq!(body(&b.get("/post/x").await), "x");
        b.get("/legacy/y").await;
        b.get("/z").await;
        assert_eq!(b.origin.page_requests(), ["https://www.site.test/z"]);
        let urls: Vec<String> = b.origin.requests().into_iter().map(|r| r.url).collect();
        assert_eq!(urls, ["http://cms.test/api/x", "http://legacy.test/legacy/y", "https://www.site.test/z"]);
    });
}

#[test]
fn a_bypass_reaches_the_worker_origin_as_the_visitor_sent_it() {
    let b = service_bench();
    block_on(async {
        let mut post = Request::new("POST", "http://www.site.test:8787/form?x=1").with_header("cookie", "a=b");
        post.body = "hello".into();
        let resp = b.send(post).await;
        assert_eq!(cache_state(&resp), "BYPASS");
        assert_eq!(b.origin.page_requests(), ["http://www.site.test:8787/form?x=1"]);
        let sent = &b.origin.requests()[0];
        assert_eq!((sent.method.as_str(), &sent.body[..]), ("POST", &b"hello"[..]));
        assert_eq!(sent.headers.get("cookie"), Some("a=b"));
    });
}

#[test]
fn server_timing_names_the_state_and_measures_the_kv_read_and_the_origin() {
    let b = Bench::new();
    b.origin.reply("/t", Reply::page("v", &[("cache-control", "s-maxage=10")]));
    b.origin.set_latency(&b.clock, 120);
    let b = Bench { kv: b.kv.clone().with_read_latency(4), ..b };
    block_on(async {
        let miss = b.get("/t").await;
        // The visitor's one KV read, then the render it waited for (its KV writes are
        // background work, not the visitor's time).
        assert_eq!(timing(&miss), "cache;desc=MISS, kv;dur=4, origin;dur=120");
        b.run_background().await;
        let hit = b.get("/t").await;
        assert_eq!(timing(&hit), "cache;desc=HIT, kv;dur=4");
        b.clock.advance(10_000);
        let stale = b.get("/t").await;
        assert_eq!(timing(&stale), "cache;desc=STALE, kv;dur=4", "the regeneration is not the visitor's time");
        b.run_background().await;
        let fresh = b.get("/t").await;
        let etag = fresh.headers.get("etag").unwrap();
        let not_modified = b.send(Request::new("GET", "https://site.test/t").with_header("if-none-match", etag)).await;
        assert_eq!(not_modified.status, 304);
        assert!(timing(&not_modified).starts_with("cache;desc=HIT, kv;dur="), "{}", timing(&not_modified));
    });
}

#[test]
fn server_timing_on_bypass_errors_the_webhook_and_the_admin_page() {
    let b = Bench::new();
    b.origin.set_latency(&b.clock, 30);
    block_on(async {
        let bypass = b.send(Request::new("GET", "https://site.test/p").with_header("authorization", "Bearer x")).await;
        assert_eq!(timing(&bypass), "cache;desc=BYPASS, origin;dur=30");
        b.origin.reply("/down", Reply::Timeout);
        let failed = b.get("/down").await;
        assert_eq!(failed.status, 504);
        assert_eq!(timing(&failed), "cache;desc=MISS, kv;dur=0, origin;dur=30");
        let webhook = b.send(Request::new("POST", "https://site.test/api/revalidate")).await;
        assert_eq!(webhook.status, 401);
        assert_eq!(timing(&webhook), "cache;desc=BYPASS");
        let admin = b.get("/__isr/admin").await;
        assert_eq!(timing(&admin), "cache;desc=BYPASS");
    });
}

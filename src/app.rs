//! The worker's site: the demo blog of `www/` plus routes written in Rust.
//!
//! This is the file to edit to add a route in Rust. Routes here are matched before the
//! configured template routes of `www/site.json`; paths that match no route are proxied to
//! `ORIGIN_URL`. Every page, whatever renders it, is cached in KV, served HIT/STALE, regenerated
//! in the background and invalidated by tag or path.

use crate::site::template::{SiteError, Templates};
use crate::site::{Page, RenderError, Route, Site};
use std::rc::Rc;

mod www {
    include!(concat!(env!("OUT_DIR"), "/www.rs"));
}

/// The site this worker serves.
pub fn site() -> Result<Site, SiteError> {
    let templates = Rc::new(Templates::new(www::TEMPLATES)?);
    Site::new()
        // A route written in Rust: `/greet/ada` → "Hello, ada!", fresh for an hour, tagged
        // `greet-ada` and `greetings` (revalidate either with the webhook).
        .route(
            "/greet/:name",
            Route::render(|cx| async move {
                let name = html_escape(cx.param("name"));
                Ok(Page::html(format!("<!doctype html><title>Hello</title><h1>Hello, {name}!</h1>")))
            })
            .revalidate(3600)
            .tags(["greet-{name}", "greetings"]),
        )
        // The demo's CSS and images, from `www/static/`.
        .route(
            "/static/*file",
            Route::render(|cx| async move { static_file(cx.param("file")) }).revalidate(300),
        )
        .with_config(www::SITE_JSON, templates)
}

/// A file of `www/static/`, or not found.
fn static_file(name: &str) -> Result<Page, RenderError> {
    let (_, bytes) = www::STATIC_FILES.iter().find(|(n, _)| *n == name).ok_or(RenderError::NotFound)?;
    let content_type = match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    };
    Ok(Page::with_type(content_type, bytes.to_vec().into()))
}

/// Escapes text for HTML.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{body, cache_state, Bench};
    use futures::executor::block_on;

    #[test]
    fn the_demo_site_loads_and_routes() {
        let site = site().expect("www/ is valid");
        for (path, pattern) in [("/", "/"), ("/blog/hello-world", "/blog/:slug"), ("/greet/ada", "/greet/:name"), ("/static/style.css", "/static/*file")] {
            assert_eq!(site.find(path).map(|m| m.route.pattern.clone()).as_deref(), Some(pattern), "{path}");
        }
        assert!(site.find("/e2e/anything").is_none(), "everything else goes to the origin");
    }

    #[test]
    fn the_rust_route_and_static_files_render() {
        let b = Bench::new().with_site(site().unwrap());
        block_on(async {
            let greet = b.get("/greet/%3Cb%3E").await;
            assert_eq!(cache_state(&greet), "MISS");
            assert!(body(&greet).contains("Hello, &lt;b&gt;!"), "{}", body(&greet));
            let css = b.get("/static/style.css").await;
            assert_eq!(css.headers.get("content-type"), Some("text/css; charset=utf-8"));
            assert_eq!(b.get("/static/nope.css").await.status, 404);
        });
    }

    /// The README's example route, as written there.
    #[test]
    fn the_readme_example_route_works() {
        let site = Site::new().route(
            "/short/:slug",
            Route::render(|cx| async move {
                let post = cx
                    .fetch_json(&cx.url("/api/posts/{slug}")?, crate::site::FetchOptions::tags(["posts"]))
                    .await?;
                let title = html_escape(post["title"].as_str().unwrap_or("untitled"));
                Ok(Page::html(format!("<!doctype html><title>{title}</title><h1>{title}</h1>")))
            })
            .revalidate(120)
            .tags(["post-{slug}"]),
        );
        let b = Bench::new().with_site(site);
        b.origin.reply("/api/posts/hello-world", crate::testing::Reply::Json(r#"{"title": "Hi & bye"}"#.into()));
        b.origin.reply("/api/posts/nope", crate::testing::Reply::Status(404));
        b.origin.reply("/api/posts/a%3Fb", crate::testing::Reply::Json(r#"{"title": "a?b"}"#.into()));
        block_on(async {
            assert!(body(&b.get("/short/hello-world").await).contains("<h1>Hi &amp; bye</h1>"));
            assert_eq!(b.get("/short/nope").await.status, 404);
            assert_eq!(b.get("/short/..%2F..%2Fx").await.status, 404);
            assert_eq!(b.get("/short/a%3Fb").await.status, 200);
            let asked: Vec<String> = b.origin.requests().iter().map(|r| r.url.clone()).collect();
            assert_eq!(asked.last().map(String::as_str), Some("http://origin.test/api/posts/a%3Fb"));
            assert!(asked.iter().all(|u| u.starts_with("http://origin.test/api/posts/")), "{asked:?}");
        });
    }

    #[test]
    fn the_demo_blog_renders_the_content_files() {
        let b = Bench::new().with_site(site().unwrap());
        let post = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/content/posts/hello-world.json")).unwrap();
        b.origin.reply("/api/posts/hello-world", crate::testing::Reply::Json(post));
        block_on(async {
            let page = body(&b.get("/blog/hello-world").await);
            assert!(page.contains(r#"<h1 id="title">Hello, world</h1>"#), "{page}");
            assert!(page.contains("/static/style.css"));
        });
    }
}

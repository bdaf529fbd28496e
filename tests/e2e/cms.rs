//! Rendering in the worker, end to end: template routes on the demo CMS (the test origin's
//! `/api/` content), publishing through the webhook, pre-rendering on the cron trigger, and
//! the admin page, in a real browser too.

use crate::support::{node_path, poll, Suite, SECRET};
use crate::Test;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("cms_post_is_rendered_cached_and_republished", cms_post_is_rendered_cached_and_republished),
    ("cms_failure_keeps_the_last_good_page", cms_failure_keeps_the_last_good_page),
    ("cms_missing_post_is_a_404_page", cms_missing_post_is_a_404_page),
    ("cron_prerenders_every_listed_post", cron_prerenders_every_listed_post),
    ("admin_page_needs_the_password_and_lists_pages", admin_page_needs_the_password_and_lists_pages),
    ("browser_admin_page_revalidates_a_tag", browser_admin_page_revalidates_a_tag),
];

fn post(title: &str) -> serde_json::Value {
    json!({"title": title, "date": "2026-11-20", "summary": "e2e", "body": ["first paragraph"]})
}

fn title_of(body: &str) -> &str {
    body.split(r#"<h1 id="title">"#).nth(1).and_then(|r| r.split("</h1>").next()).unwrap_or("")
}

fn publish(s: &Suite, tag: &str) {
    s.revalidate(&json!({"tags": [tag]}));
}

fn wait_stored(s: &Suite, path: &str) {
    poll(&format!("{path} stored"), Duration::from_secs(10), || (s.get(path).state() == "HIT").then_some(()));
}

fn basic(password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")))
}

fn cms_post_is_rendered_cached_and_republished(s: &Suite) {
    let slug = "e2e-cms-publish";
    let path = format!("/blog/{slug}");
    s.write_post(slug, &post("First title"));
    let first = s.get(&path);
    assert_eq!((first.status, first.state()), (200, "MISS"));
    assert_eq!(title_of(&first.body), "First title");
    assert!(first.header("content-type").starts_with("text/html"));
    wait_stored(s, &path);
    let cms_path = format!("/api/posts/{slug}");
    assert_eq!(s.stats(&cms_path).renders, 1, "one CMS fetch for the MISS, none for HITs");
    // An editor changes the post and the CMS fires the webhook with the post's tag.
    s.write_post(slug, &post("Second title"));
    assert_eq!(title_of(&s.get(&path).body), "First title", "cached until published");
    publish(s, &format!("post-{slug}"));
    let stale = s.get(&path);
    assert_eq!((stale.state(), title_of(&stale.body)), ("STALE", "First title"));
    let fresh = poll("the new title", Duration::from_secs(10), || {
        let r = s.get(&path);
        (r.state() == "HIT" && title_of(&r.body) == "Second title").then_some(r)
    });
    assert_eq!(fresh.status, 200);
}

fn cms_failure_keeps_the_last_good_page(s: &Suite) {
    let slug = "e2e-cms-failure";
    let path = format!("/blog/{slug}");
    s.write_post(slug, &post("Good"));
    s.get(&path);
    wait_stored(s, &path);
    let cms_path = format!("/api/posts/{slug}");
    s.behave(&cms_path, json!({"fail": true}));
    publish(s, &format!("post-{slug}"));
    // The regeneration fails; every visitor still gets the good page.
    for _ in 0..5 {
        let r = s.get(&path);
        assert_eq!((r.status, title_of(&r.body)), (200, "Good"));
    }
    poll("the failed regeneration", Duration::from_secs(10), || (s.stats(&cms_path).failures >= 1).then_some(()));
    poll("the failure logged", Duration::from_secs(10), || (!s.log_events("regenerate_failed", &format!("p/1/127.0.0.1{path}"), "").is_empty()).then_some(()));
    let r = s.get(&path);
    assert_eq!((r.status, r.state(), title_of(&r.body)), (200, "STALE", "Good"));
    s.behave(&cms_path, json!({}));
}

fn cms_missing_post_is_a_404_page(s: &Suite) {
    let r = s.get("/blog/e2e-cms-never-written");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("Nothing is published at"), "{}", r.body);
    poll("the 404 page stored", Duration::from_secs(10), || {
        let r = s.get("/blog/e2e-cms-never-written");
        (r.status == 404 && r.state() == "HIT").then_some(())
    });
}

fn cron_prerenders_every_listed_post(s: &Suite) {
    let slugs = ["e2e-cron-a", "e2e-cron-b", "e2e-cron-c"];
    for slug in slugs {
        s.write_post(slug, &post(slug));
    }
    let r = s.get("/__scheduled?cron=*/30+*+*+*+*");
    assert_eq!(r.status, 200, "{}", r.body);
    for slug in slugs {
        let cms_path = format!("/api/posts/{slug}");
        poll(&format!("{slug} pre-rendered"), Duration::from_secs(20), || (s.stats(&cms_path).renders >= 1).then_some(()));
        // Never visited, yet stored: the first visit is a HIT.
        let path = format!("/blog/{slug}");
        let first = poll(&format!("{path} stored"), Duration::from_secs(10), || {
            let r = s.get(&path);
            (r.state() == "HIT").then_some(r)
        });
        assert_eq!(title_of(&first.body), slug);
    }
}

fn admin_page_needs_the_password_and_lists_pages(s: &Suite) {
    let path = "/blog/e2e-admin-list";
    s.write_post("e2e-admin-list", &post("Listed"));
    s.get(path);
    wait_stored(s, path);
    let denied = s.get("/__isr/admin");
    assert_eq!(denied.status, 401);
    assert!(denied.header("www-authenticate").starts_with("Basic"));
    assert_eq!(s.get_with("/__isr/admin", &[("authorization", &basic("wrong"))]).status, 401);
    let page = s.get_with("/__isr/admin", &[("authorization", &basic(SECRET))]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-page="/blog/e2e-admin-list""#), "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    // A cross-site form post cannot revalidate, even with the browser's credentials.
    let forged = s.send(
        "POST",
        "/__isr/admin/revalidate",
        &[("authorization", &basic(SECRET)), ("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")],
        Some("tags=posts"),
    );
    assert_eq!(forged.status, 403);
}

/// Opens the admin page in headless Chromium (Playwright): checks the last hour's charts,
/// searches by path prefix and by tag, pages through the list with KV's cursor, clicks
/// "revalidate tag" for a page's tag, and waits for the page's row to turn from fresh to
/// stale. Screenshots go to `target/e2e/` (`admin-charts.png`, `admin-search.png`,
/// `admin-before.png`, `admin-after.png`).
fn browser_admin_page_revalidates_a_tag(s: &Suite) {
    let slug = "e2e-browser";
    let path = format!("/blog/{slug}");
    s.write_post(slug, &post("Seen in a browser"));
    s.get(&path);
    wait_stored(s, &path);
    // A second page, so that the browser can page through the list one row at a time.
    s.write_post("e2e-paged-too", &post("Also listed"));
    s.get("/blog/e2e-paged-too");
    wait_stored(s, "/blog/e2e-paged-too");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/e2e");
    let status = Command::new("node")
        .current_dir(root)
        .env("PATH", node_path(root))
        .arg("tests/browser/admin.mjs")
        .env("WORKER_URL", &s.worker)
        .env("ADMIN_PASSWORD", SECRET)
        .env("PAGE_PATH", &path)
        .env("TAG", format!("post-{slug}"))
        .env("SCREENSHOT_DIR", &shots)
        .status()
        .expect("running node tests/browser/admin.mjs");
    assert!(status.success(), "the browser test failed (its output is above)");
    assert!(shots.join("admin-after.png").is_file());
    assert!(shots.join("admin-charts.png").is_file());
    assert_eq!(s.get(&path).state(), "STALE", "the click invalidated the page for visitors too");
}

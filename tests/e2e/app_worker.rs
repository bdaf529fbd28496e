//! A JavaScript app Worker as the origin (`ORIGIN_SERVICE`): `tests/e2e/app-worker/worker.js`
//! runs beside edge-isr in one `wrangler dev` (two configs, edge-isr's first), bound to it as
//! the service `APP`. A suite of its own, so the main suite's worker keeps `ORIGIN_URL`.

use crate::support::{let_age, poll, Resp, Setup, Suite};
use crate::Test;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Every test of this file (run on the suite [`start`] makes).
pub const TESTS: &[Test] = &[
    ("app_worker_miss_hit_stale_with_server_timing", app_worker_miss_hit_stale_with_server_timing),
    ("app_worker_cache_tags_from_its_headers", app_worker_cache_tags_from_its_headers),
    ("app_worker_regeneration_is_conditional", app_worker_regeneration_is_conditional),
    ("app_worker_throwing_keeps_the_stale_page", app_worker_throwing_keeps_the_stale_page),
    ("app_worker_stalling_times_out", app_worker_stalling_times_out),
];

const SHORT: Duration = Duration::from_secs(10);

/// Starts edge-isr with `ORIGIN_SERVICE = "APP"` bound to the app Worker. Both get names of
/// their own (and edge-isr its own queue): wrangler's dev registry is shared by every
/// `wrangler dev` on the machine, and other suites run edge-isr at the same time.
pub fn start(root: &Path) -> Result<Suite, String> {
    let id = std::process::id();
    let app_name = format!("edge-isr-e2e-app-worker-{id}");
    let app_dir = root.join("tests/e2e/app-worker");
    let app_config = std::fs::read_to_string(app_dir.join("wrangler.toml")).map_err(|e| format!("reading the app Worker's wrangler.toml: {e}"))?;
    let app_config = app_config
        .replace("name = \"edge-isr-example-app\"", &format!("name = {app_name:?}"))
        .replace("main = \"worker.js\"", &format!("main = {:?}", app_dir.join("worker.js").display().to_string()));
    let work = root.join("target/e2e");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let app_config_path = work.join("wrangler.app-worker.toml");
    std::fs::write(&app_config_path, app_config).map_err(|e| e.to_string())?;
    let setup = Setup {
        tag: "-app".into(),
        replace: vec![
            ("name = \"edge-isr\"".into(), format!("name = \"edge-isr-e2e-front-{id}\"")),
            ("\"edge-isr-invalidations\"".into(), format!("\"edge-isr-invalidations-e2e-front-{id}\"")),
        ],
        append: format!("\n[[services]]\nbinding = \"APP\"\nservice = {app_name:?}\n"),
        more_configs: vec![app_config_path],
        vars: vec![("ORIGIN_SERVICE".into(), "APP".into())],
    };
    Suite::start_with(root, &setup)
}

/// Changes how the app Worker answers `path` (through edge-isr: a PUT is passed through).
fn behave(s: &Suite, path: &str, behaviour: Value) {
    let r = s.send("PUT", &format!("/__app/behaviour?path={path}"), &[("content-type", "application/json")], Some(&behaviour.to_string()));
    assert_eq!((r.status, r.state()), (200, "BYPASS"), "setting the app's behaviour of {path}: {r:?}");
}

/// The app Worker's counters for `path`.
fn stats(s: &Suite, path: &str) -> Value {
    let r = s.send("POST", &format!("/__app/stats?path={path}"), &[], Some(""));
    assert_eq!(r.status, 200, "app stats of {path}: {r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("app stats of {path} ({e}): {}", r.body))
}

fn timing(r: &Resp) -> &str {
    r.header("server-timing")
}

/// The number after `name;dur=` in a `Server-Timing` value.
fn dur(r: &Resp, name: &str) -> Option<f64> {
    let after = timing(r).split(&format!("{name};dur=")).nth(1)?;
    after.split(|c: char| c != '.' && !c.is_ascii_digit()).next()?.parse().ok()
}

fn app_worker_miss_hit_stale_with_server_timing(s: &Suite) {
    let p = "/app/isr/page";
    behave(s, p, json!({"headers": {"cache-control": "public, s-maxage=1"}}));
    let first = s.get(p);
    assert_eq!((first.status, first.state()), (200, "MISS"), "{first:?}");
    assert_eq!(first.render(), 1);
    // The app saw the page's public URL: the key's host (CACHE_HOSTS), https, no port.
    assert!(first.body.contains("url=https://127.0.0.1/app/isr/page"), "{}", first.body);
    assert!(timing(&first).starts_with("cache;desc=MISS"), "{first:?}");
    assert!(dur(&first, "kv").is_some() && dur(&first, "origin").is_some(), "{}", timing(&first));
    let hit = poll("HIT from KV", SHORT, || Some(s.get(p)).filter(|r| r.state() == "HIT"));
    assert_eq!(hit.body, first.body);
    assert!(timing(&hit).starts_with("cache;desc=HIT, kv;dur="), "{}", timing(&hit));
    assert_eq!(dur(&hit, "origin"), None, "no origin on a HIT: {}", timing(&hit));
    behave(s, p, json!({"headers": {"cache-control": "public, s-maxage=1"}, "content": "v2"}));
    let_age(Duration::from_millis(1100));
    let stale = s.get(p);
    assert_eq!(stale.state(), "STALE", "{stale:?}");
    assert!(stale.body.contains("content=v1"), "{}", stale.body);
    assert!(timing(&stale).starts_with("cache;desc=STALE"), "{}", timing(&stale));
    let fresh = poll("the regenerated page", SHORT, || Some(s.get(p)).filter(|r| r.render() == 2));
    assert!(fresh.body.contains("content=v2"), "{}", fresh.body);
    assert_eq!(stats(s, p)["renders"], 2);
}

fn app_worker_cache_tags_from_its_headers(s: &Suite) {
    let p = "/app/tags/page";
    behave(s, p, json!({"headers": {"cache-tag": "app-e2e-tag, other"}}));
    assert_eq!(s.get(p).state(), "MISS");
    poll("HIT from KV", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    behave(s, p, json!({"headers": {"cache-tag": "app-e2e-tag, other"}, "content": "v2"}));
    // The tag index is written in the background after the MISS: poll until the tag finds it.
    poll("the app's Cache-Tag in the index", SHORT, || {
        let answer = s.revalidate(&json!({"tags": ["app-e2e-tag"]}));
        (answer["tags"]["app-e2e-tag"]["pages"] == 1).then_some(())
    });
    let stale = s.get(p);
    assert_eq!(stale.state(), "STALE", "{stale:?}");
    assert!(stale.body.contains("content=v1"));
    let fresh = poll("the regenerated page", SHORT, || Some(s.get(p)).filter(|r| r.body.contains("content=v2")));
    assert_eq!(fresh.render(), 2);
}

fn app_worker_regeneration_is_conditional(s: &Suite) {
    let p = "/app/conditional/page";
    behave(s, p, json!({"headers": {"cache-control": "s-maxage=1"}}));
    assert_eq!(s.get(p).state(), "MISS");
    poll("HIT from KV", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    let_age(Duration::from_millis(1100));
    assert_eq!(s.get(p).state(), "STALE");
    // The app answers the regeneration's If-None-Match with 304: refreshed, not re-rendered.
    poll("a 304 from the app", SHORT, || (stats(s, p)["not_modified"] == 1).then_some(()));
    let r = poll("the refreshed page", SHORT, || Some(s.get(p)).filter(|r| r.state() == "HIT"));
    assert_eq!(r.render(), 1);
    assert_eq!(stats(s, p)["renders"], 1);
}

fn app_worker_throwing_keeps_the_stale_page(s: &Suite) {
    let p = "/app/throws/page";
    behave(s, p, json!({"headers": {"cache-control": "s-maxage=1"}}));
    let first = s.get(p);
    assert_eq!(first.state(), "MISS");
    poll("HIT from KV", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    behave(s, p, json!({"throw": true}));
    let_age(Duration::from_millis(1100));
    let stale = s.get(p);
    assert_eq!((stale.status, stale.state()), (200, "STALE"), "{stale:?}");
    poll("the app to throw in the regeneration", SHORT, || (stats(s, p)["throws"].as_u64() >= Some(1)).then_some(()));
    // stale-if-error: the regeneration failed, the good page stays and is still served.
    for _ in 0..3 {
        let r = s.get(p);
        assert_eq!((r.status, r.state()), (200, "STALE"), "{r:?}");
        assert_eq!(r.body, first.body);
    }
    // A MISS on a throwing app is an error answer, never stored.
    let q = "/app/throws/never";
    behave(s, q, json!({"throw": true}));
    let failed = s.get(q);
    assert!(failed.status >= 500, "{failed:?}");
    behave(s, q, json!({}));
    // The failed MISS backs its key off (a couple of seconds, the error repeated without calling
    // the app); then the next MISS asks the app again and gets the page.
    let ok = poll("the back-off to end and the app to render", SHORT, || {
        let r = s.get(q);
        // (wrangler dev replaces a thrown error's answer, repeated ones too, with its own error
        // page, without edge-isr's headers: only the status can be checked here.)
        (r.status < 500).then_some(r)
    });
    assert_eq!((ok.status, ok.state()), (200, "MISS"), "{ok:?}");
}

fn app_worker_stalling_times_out(s: &Suite) {
    // ORIGIN_TIMEOUT_MS is 4 s in the suite: a MISS on an app that takes 6 s is a 504.
    let p = "/app/stalls/page";
    behave(s, p, json!({"stall_ms": 6000}));
    let started = std::time::Instant::now();
    let r = s.get(p);
    assert_eq!((r.status, r.state()), (504, "MISS"), "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(5500), "answered after {:?}", started.elapsed());
    // The visitor gets a generic message; the detail ("did not answer within 4000 ms") is logged.
    assert!(r.body.contains("the origin did not answer in time"), "{}", r.body);
}

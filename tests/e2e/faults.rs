//! Faults and load: the last good page survives a misbehaving origin, and a mix of hits, stale
//! hits, misses and webhooks at once gets no 5xx and loses no page. Last, the origin goes down
//! altogether (connections refused) and comes back.

use crate::support::{let_age, poll, Resp, Suite};
use crate::Test;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("truncated_bodies_are_never_stored", truncated_bodies_are_never_stored),
    ("a_flipping_origin_never_replaces_the_good_page", a_flipping_origin_never_replaces_the_good_page),
    ("mixed_load_has_no_5xx_and_loses_no_page", mixed_load_has_no_5xx_and_loses_no_page),
    ("spoofed_hosts_neither_fragment_nor_poison", spoofed_hosts_neither_fragment_nor_poison),
    ("a_panic_is_answered_and_the_next_requests_are_served", a_panic_is_answered_and_the_next_requests_are_served),
];

/// Tests that stop the origin every test shares: `main` runs them after all the others.
pub const ORIGIN_DOWN: &[Test] = &[("refused_origin_keeps_pages_then_recovers", refused_origin_keeps_pages_then_recovers)];

fn spoofed_hosts_neither_fragment_nor_poison(s: &Suite) {
    let p = "/e2e/host/page";
    let first = s.get_with(p, &[("host", "evil.test"), ("x-forwarded-host", "evil.test")]);
    assert_eq!(first.state(), "MISS");
    let sent = s.origin_requests(p);
    assert_eq!(sent[0]["headers"]["x-forwarded-host"], "127.0.0.1", "{sent:?}");
    poll("stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    let other = s.get_with(p, &[("host", "another.test")]);
    assert_eq!(other.state(), "HIT", "a spoofed host is keyed as the configured one");
    assert_eq!(other.body, first.body);
    assert_eq!(s.stats(p).renders, 1);
}

const SHORT: Duration = Duration::from_secs(10);

/// A Rust panic traps the wasm instance; the entry point (src/cloudflare/shim.mjs) must answer
/// the next requests on a new one. The suite runs the worker with `E2E_PANIC_ROUTE=1`, which
/// makes `/__e2e/panic` panic (see `E2E_PANIC_PATH` in src/cloudflare/mod.rs).
fn a_panic_is_answered_and_the_next_requests_are_served(s: &Suite) {
    let p = "/e2e/panic/page";
    assert_eq!(s.get(p).state(), "MISS");
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    let t0 = Instant::now();
    let crash = s.get("/__e2e/panic");
    assert!(crash.status >= 500, "the panicking request gets an error answer: {crash:?}");
    assert!(t0.elapsed() < SHORT, "and at once: {:?}", t0.elapsed());
    poll("the panic in the log", SHORT, || (!s.log_lines("the panic E2E_PANIC_ROUTE=1 asks for").is_empty()).then_some(()));
    for _ in 0..3 {
        let hit = s.get(p);
        assert_eq!((hit.status, hit.state()), (200, "HIT"), "a stored page after the panic: {hit:?}");
    }
    // A MISS after the panic: origin fetch, answer, and the write in the background, all on the
    // new instance.
    let fresh = "/e2e/panic/after";
    let miss = s.get(fresh);
    assert_eq!((miss.status, miss.state()), (200, "MISS"), "{miss:?}");
    poll("the page rendered after the panic stored", SHORT, || (s.get(fresh).state() == "HIT").then_some(()));
    assert_eq!(s.stats(fresh).renders, 1);
}

fn truncated_bodies_are_never_stored(s: &Suite) {
    // A MISS streams: the head went out before the body broke off, so the visitor's answer
    // breaks off too (the client cannot read it whole), and nothing is stored.
    let miss = "/e2e/truncated/miss";
    s.behave(miss, json!({"truncate": true}));
    let cut = s.raw("GET", miss).call().expect("the head of the MISS");
    assert_eq!((cut.status(), cut.header("x-isr-cache")), (200, Some("MISS")));
    assert!(cut.into_string().is_err(), "the visitor's answer is cut off like the origin's");
    s.behave(miss, json!({}));
    // (The failure backs the page off for 2 s, answering a 502 meanwhile.)
    let whole = poll("a whole page once the back-off has passed", SHORT, || {
        let r = s.get(miss);
        (r.status == 200 && r.body.contains("render")).then_some(r)
    });
    assert_eq!(whole.state(), "MISS", "the truncated answer was not stored");
    assert_eq!(s.stats(miss).renders, 2, "the cut render, then the whole one");

    // On a regeneration the last good page stays.
    let p = "/e2e/truncated/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "etag": false}));
    let good = s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "etag": false, "truncate": true}));
    let_age(Duration::from_millis(1100));
    assert_eq!(s.get(p).state(), "STALE");
    poll("the failed regeneration to be logged", SHORT, || {
        (!s.log_events("regenerate_failed", p, "").is_empty()).then_some(())
    });
    let r = s.get(p);
    assert_eq!((r.status, r.body.as_str()), (200, good.body.as_str()), "the last good page, whole");
}

fn a_flipping_origin_never_replaces_the_good_page(s: &Suite) {
    let p = "/e2e/flip/page";
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "etag": false}));
    s.get(p);
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));
    // From now on the origin alternates: a good render, then a 500, then a good one...
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=1"}, "etag": false, "flip": true}));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut answers = 0;
    while Instant::now() < deadline {
        let r = s.get(p);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains("render="), "{}", r.body);
        answers += 1;
        std::thread::sleep(Duration::from_millis(100)); // pacing, not ordering
    }
    assert!(answers > 10);
    let stats = s.stats(p);
    assert!(stats.renders >= 2, "some regenerations succeeded: {stats:?}");
}

fn mixed_load_has_no_5xx_and_loses_no_page(s: &Suite) {
    let pages: Vec<String> = (0..20).map(|i| format!("/e2e/load/p{i:02}")).collect();
    for p in &pages {
        s.behave(p, json!({"headers": {"cache-control": "s-maxage=1", "cache-tag": "load-e2e"}, "etag": false}));
        assert_eq!(s.get(p).status, 200);
    }
    let run_for = Duration::from_secs(4);
    const MIN_REQUESTS: u32 = 150;
    const LOAD_DEADLINE: Duration = Duration::from_secs(40);
    let stop = AtomicBool::new(false);
    let (requests, server_errors, webhooks) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Readers: hits and stale hits on the shared pages.
        for reader in 0..6u32 {
            let (pages, stop, requests, server_errors) = (&pages, &stop, &requests, &server_errors);
            scope.spawn(move || {
                let mut i = reader as usize;
                while !stop.load(Ordering::Relaxed) && requests.load(Ordering::Relaxed) < 20_000 {
                    i = (i * 7 + 3) % pages.len();
                    let r = s.get(&pages[i]);
                    requests.fetch_add(1, Ordering::Relaxed);
                    if r.status >= 500 || !r.body.contains("render=") {
                        server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Misses on new paths.
        let (stop2, requests2, errors2) = (&stop, &requests, &server_errors);
        scope.spawn(move || {
            let mut n = 0;
            while !stop2.load(Ordering::Relaxed) && n < 2_000 {
                let r = s.get(&format!("/e2e/load/new/{n}"));
                requests2.fetch_add(1, Ordering::Relaxed);
                if r.status >= 500 {
                    errors2.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        });
        // The CMS publishes every 300 ms.
        let (stop3, webhooks3) = (&stop, &webhooks);
        scope.spawn(move || {
            while !stop3.load(Ordering::Relaxed) {
                s.revalidate(&json!({"tags": ["load-e2e"]}));
                webhooks3.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(300)); // pacing, not ordering
            }
        });
        // At least `run_for`, and on a slow machine until enough requests ran (a count, not a
        // rate: how fast this machine is is the bench's business), within a deadline.
        while started.elapsed() < run_for || (requests.load(Ordering::Relaxed) < MIN_REQUESTS && started.elapsed() < LOAD_DEADLINE) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed_s = started.elapsed().as_secs() as u32 + 1;
    let (total, errors, hooks) = (requests.into_inner(), server_errors.into_inner(), webhooks.into_inner());
    println!("    mixed load: {total} requests and {hooks} webhooks in {elapsed_s} s");
    assert!(total >= MIN_REQUESTS, "the load ran ({total} requests in {elapsed_s} s)");
    assert_eq!(errors, 0, "no 5xx and no broken page under load");
    // No page was lost: every page still answers with a whole page.
    for p in &pages {
        let r = s.get(p);
        assert_eq!(r.status, 200, "{p}");
        assert!(r.body.contains("render="), "{p}");
        // Renders are bounded: the first, then at most one per revalidate second and one per
        // invalidation (each regeneration needs a stale page), with slack for the lease race.
        let renders = s.stats(p).renders;
        let bound = 1 + elapsed_s + hooks + 2;
        assert!(u64::from(bound) >= renders as u64, "{p}: {renders} renders > bound {bound}");
    }
}

/// Starts the origin again when dropped, so that a failing assertion while it is down does not
/// leave it down (a no-op once the test has restarted it).
struct RestartOnDrop<'a>(&'a Suite);

impl Drop for RestartOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.start_origin() {
            eprintln!("{e}");
        }
    }
}

fn refused_origin_keeps_pages_then_recovers(s: &Suite) {
    let p = "/e2e/refused/page";
    let never = "/e2e/refused/never";
    s.behave(p, json!({"content": "before"}));
    let good = s.get(p);
    assert_eq!((good.status, good.state()), (200, "MISS"), "{good:?}");
    poll("page stored", SHORT, || (s.get(p).state() == "HIT").then_some(()));

    // The origin goes down: its listener is closed, nothing else listens on the port.
    let _restart = RestartOnDrop(s);
    s.stop_origin();
    let addr = s.origin_addr();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connecting to {addr}: {e}"),
        Ok(_) => panic!("{addr} still accepts connections after the origin stopped"),
    }

    // The CMS publishes: the page is stale at once (the webhook only touches KV).
    let marked = s.revalidate(&json!({"paths": [p]}));
    assert_eq!(marked["paths"][p]["marked"], 1, "{marked}");

    // (a) The stored page is served, whole and unchanged, to every request; the first one starts
    // a regeneration, which is refused.
    let outage = Instant::now();
    let expect_old = |r: &Resp| {
        assert_eq!((r.status, r.state()), (200, "STALE"), "{r:?}");
        assert_eq!(r.body, good.body, "the stored page, unchanged");
    };
    // One JSON object per line: {"level":"warn","event":"regenerate_failed","key":"p/1/<host><p>","reason":"origin unreachable: ..."}.
    let failed = format!(r#"{p}","reason":"origin unreachable"#);
    let mut served = 0;
    poll("the refused regeneration to be logged", SHORT, || {
        expect_old(&s.get(p));
        served += 1;
        (!s.log_lines(&failed).is_empty()).then_some(())
    });
    for _ in 0..30 {
        expect_old(&s.get(p));
        served += 1;
    }
    let revalidating = s.get_with(p, &[("if-none-match", good.header("etag"))]);
    assert_eq!((revalidating.status, revalidating.state()), (304, "STALE"), "{revalidating:?}");

    // (b) A page never stored has nothing to fall back to: a JSON 502 every time, never stored.
    for _ in 0..3 {
        let r = s.get(never);
        assert_eq!((r.status, r.state()), (502, "MISS"), "{r:?}");
        assert!(r.header("content-type").starts_with("application/json"), "{r:?}");
        assert_eq!(r.header("cache-control"), "no-store", "{r:?}");
        let error: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body));
        let message = error["error"].as_str().unwrap_or_default();
        assert_eq!(message, "the origin could not be reached", "the network error's detail is only logged: {}", r.body);
    }

    // (c) The failure is logged once per attempt, and attempts back off (5 s, 10 s, ...), so
    // not once per request.
    let logged = s.log_lines(&failed);
    let attempts_allowed = 1 + outage.elapsed().as_secs() / 5;
    let line = logged[0].find('{').map_or(logged[0].as_str(), |i| &logged[0][i..]);
    let line = line.split('\u{1b}').next().unwrap_or_default(); // wrangler's colour codes
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line is one JSON object ({e}): {line}"));
    assert_eq!((parsed["level"].as_str(), parsed["event"].as_str()), (Some("warn"), Some("regenerate_failed")), "{line}");
    assert!(parsed["key"].as_str().is_some_and(|k| k.starts_with("p/") && k.ends_with(p)), "{line}");
    let message = parsed["reason"].as_str().unwrap_or_default();
    println!("    origin down: {served} stale answers in {:.1?}; logged: {message}", outage.elapsed());
    assert!(
        (1..=attempts_allowed).contains(&(logged.len() as u64)),
        "{} failure lines for {served} requests in {:?}: {logged:#?}",
        logged.len(),
        outage.elapsed()
    );

    // The origin comes back on the same port, with new content for the page. Once the back-off
    // of the last failure has passed, a stale hit regenerates it.
    s.start_origin().expect("origin restarted");
    s.behave(p, json!({"content": "after"}));
    let backoff = Duration::from_secs(5 << (logged.len() - 1).min(6));
    let fresh = poll("the page to regenerate after the origin came back", backoff + SHORT, || {
        let r = s.get(p);
        if test_origin::page_field(&r.body, "content") == Some("after") {
            return Some(r);
        }
        expect_old(&r);
        None
    });
    assert_eq!((fresh.status, fresh.state()), (200, "HIT"), "{fresh:?}");
    assert_eq!(s.stats(p).renders, 1, "one regeneration");
    let r = s.get(never);
    assert_eq!((r.status, r.state()), (200, "MISS"), "nothing was stored during the outage: {r:?}");
}

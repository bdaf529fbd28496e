//! The coordinator across locations, modelled natively: engines in two locations with their
//! own views of an eventually consistent KV (60 s propagation), one [`MemoryCoordinator`]
//! (the Durable Object's model), and a hand-advanced clock.

use crate::coordination::cache::{HARD_BOUND_MS, REFRESH_INTERVAL_MS};
use crate::coordination::coordinator::MemoryCoordinator;
use crate::http::{Request, Response};
use crate::rules::config::Config;
use crate::testing::{body, cache_state, Bench, Reply};
use futures::executor::block_on;
use futures::future::join_all;

const SECRET: &str = "s3cret";
const PROPAGATION_MS: u64 = 60_000;

fn config() -> Config {
    Config::from_vars(|n| match n {
        "ORIGIN_URL" => Some("http://origin.test".into()),
        "REVALIDATE_SECRET" => Some(SECRET.into()),
        _ => None,
    })
    .unwrap()
}

/// Location A (where the webhook lands) and location B, far away, sharing one coordinator
/// (or none, with `coordinated` false).
fn locations(coordinated: bool) -> (Bench, Bench) {
    let b = Bench::with_config(config());
    let b = Bench { kv: b.kv.clone().with_propagation_delay(PROPAGATION_MS), ..b };
    let a = if coordinated { b.with_coordinator() } else { b };
    let far = a.other_isolate(1);
    (a, far)
}

fn coordinator(b: &Bench) -> &MemoryCoordinator {
    b.coordinator.as_ref().expect("a coordinated bench")
}

async fn publish(b: &Bench, json: &str) -> Response {
    let mut req = Request::new("POST", "https://site.test/api/revalidate").with_header("authorization", &format!("Bearer {SECRET}"));
    req.body = json.to_string().into();
    b.send(req).await
}

/// Stores `/p` (tag `post-1`) through A and lets it reach B: both serve HIT.
async fn stored_everywhere(a: &Bench, far: &Bench) {
    a.origin.reply("/p", Reply::page("v1", &[("cache-tag", "post-1, posts"), ("cache-control", "s-maxage=3600")]));
    assert_eq!(cache_state(&a.get("/p").await), "MISS");
    a.run_background().await;
    a.clock.advance(PROPAGATION_MS);
    assert_eq!(cache_state(&far.get("/p").await), "HIT");
    far.run_background().await;
    a.origin.reply("/p", Reply::page("v2", &[("cache-tag", "post-1, posts"), ("cache-control", "s-maxage=3600")]));
}

/// Requests `/p` in B every 100 ms (running B's background work, as `waitUntil` does) until it
/// is not a HIT; returns that answer and the time since `from`.
async fn poll_far_until_not_hit(a: &Bench, far: &Bench, from: u64, give_up_ms: u64) -> (Response, u64) {
    loop {
        let r = far.get("/p").await;
        let waited = crate::runtime::clock::Clock::now_ms(&a.clock) - from;
        if cache_state(&r) != "HIT" || waited >= give_up_ms {
            return (r, waited);
        }
        far.run_background().await;
        a.clock.advance(100);
    }
}

#[test]
fn a_publish_through_a_is_stale_in_b_within_the_bound_then_new_content() {
    for tags_or_path in [r#"{"tags": ["post-1"]}"#, r#"{"paths": ["/p"]}"#, r#"{"prefixes": ["/"]}"#] {
        let (a, far) = locations(true);
        block_on(async {
            stored_everywhere(&a, &far).await;
            // B has just refreshed its copy of the log: the worst moment for the webhook.
            let ok = publish(&a, tags_or_path).await;
            assert_eq!(ok.status, 200, "{}", body(&ok));
            let answered = crate::runtime::clock::Clock::now_ms(&a.clock);
            assert_eq!(cache_state(&a.get("/p").await), "STALE", "where the webhook ran: at once");
            let (first, after) = poll_far_until_not_hit(&a, &far, answered, 10_000).await;
            assert_eq!(cache_state(&first), "STALE", "{tags_or_path}: B got {}", cache_state(&first));
            assert!(after <= HARD_BOUND_MS, "{tags_or_path}: STALE in B only {after} ms after the 200");
            assert!(body(&first).starts_with("v1"), "the stored page, at once");
            // B's regeneration (A's already holds nothing: A's queue has not run) renders v2 there.
            far.run_background().await;
            let next = far.get("/p").await;
            assert_eq!((cache_state(&next), body(&next).starts_with("v2")), ("HIT", true), "{}", body(&next));
        });
    }
}

#[test]
fn without_a_coordinator_b_keeps_serving_the_old_page_until_kv_propagates() {
    let (a, far) = locations(false);
    block_on(async {
        stored_everywhere(&a, &far).await;
        assert_eq!(publish(&a, r#"{"tags": ["post-1"]}"#).await.status, 200);
        let answered = crate::runtime::clock::Clock::now_ms(&a.clock);
        let (_, after) = poll_far_until_not_hit(&a, &far, answered, 5_000).await;
        assert_eq!(cache_state(&far.get("/p").await), "HIT", "still HIT {after} ms after the 200");
        a.clock.advance(PROPAGATION_MS);
        assert_eq!(cache_state(&far.get("/p").await), "STALE", "once KV's mark arrived");
        assert_eq!(a.logger.count("no coordinator bound"), 2, "said once per isolate (A and B share the logger): {:?}", a.logger.lines());
    });
}

#[test]
fn an_expire_through_a_renders_in_b_within_the_bound() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        assert_eq!(publish(&a, r#"{"tags": ["posts"], "mode": "expire"}"#).await.status, 200);
        let answered = crate::runtime::clock::Clock::now_ms(&a.clock);
        let (first, after) = poll_far_until_not_hit(&a, &far, answered, 10_000).await;
        assert_eq!((cache_state(&first), body(&first).starts_with("v2")), ("MISS", true));
        assert!(after <= HARD_BOUND_MS, "{after} ms");
    });
}

#[test]
fn pages_not_named_by_the_invalidation_stay_hit_in_b() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        assert_eq!(publish(&a, r#"{"tags": ["post-2"], "paths": ["/other"], "prefixes": ["/blog/"]}"#).await.status, 200);
        a.clock.advance(HARD_BOUND_MS);
        assert_eq!(cache_state(&far.get("/p").await), "HIT");
        far.run_background().await;
        a.clock.advance(HARD_BOUND_MS);
        assert_eq!(cache_state(&far.get("/p").await), "HIT");
    });
}

#[test]
fn one_regeneration_across_locations_at_a_time() {
    for coordinated in [true, false] {
        let (a, far) = locations(coordinated);
        block_on(async {
            stored_everywhere(&a, &far).await;
            // Stale everywhere at the same moment: by time (both locations have the page).
            a.clock.advance(3_600_000);
            let (sa, sb) = (a.get("/p").await, far.get("/p").await);
            assert_eq!((cache_state(&sa), cache_state(&sb)), ("STALE", "STALE"));
            // A regenerates; while its render is in flight (the origin holds it), B starts its
            // own 1.5 s later (KV's one-write-per-second limit does not hide the race then).
            let gate = a.origin.hold();
            let (in_a, in_b) = (a.queue.take_all(), far.queue.take_all());
            assert_eq!((in_a.len(), in_b.len()), (1, 1));
            let pause = || crate::runtime::clock::Clock::pause(&a.clock);
            let later = async {
                for _ in 0..5 {
                    pause().await;
                }
                a.clock.advance(1_500);
                join_all(in_b).await;
            };
            let run = futures::future::join(join_all(in_a), later);
            let open = async {
                for _ in 0..20 {
                    pause().await;
                }
                gate.open();
            };
            futures::future::join(run, open).await;
        });
        let renders = a.origin.renders("/p");
        if coordinated {
            assert_eq!(renders, 2, "the first render and one regeneration, worldwide");
        } else {
            assert_eq!(renders, 3, "KV's lease is not seen across locations before propagation (today's behaviour)");
        }
    }
}

#[test]
fn a_hit_is_one_kv_read_and_the_coordinator_is_asked_at_most_once_per_interval() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        coordinator(&a).reset_counts();
        far.kv.reset_counts();
        let mut hits = 0;
        // 10 s of traffic, 20 HITs a second, in B.
        for _ in 0..200 {
            let r = far.get("/p").await;
            hits += (cache_state(&r) == "HIT") as u32;
            far.run_background().await;
            a.clock.advance(50);
        }
        assert_eq!(hits, 200);
        let kv = far.kv.counts();
        assert_eq!((kv.gets, kv.puts), (200, 0), "one KV read per HIT, nothing else");
        let calls = coordinator(&a).counts();
        let seconds = 200 * 50 / REFRESH_INTERVAL_MS;
        assert!(calls.requests <= seconds + 1, "{} coordinator requests in {seconds} s", calls.requests);
        assert!(calls.requests >= seconds / 2, "{} coordinator requests in {seconds} s: still refreshing", calls.requests);
        assert_eq!(calls.rows_written, 0);
    });
}

#[test]
fn an_idle_isolate_costs_nothing() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        coordinator(&a).reset_counts();
        a.clock.advance(600_000);
        assert_eq!(coordinator(&a).counts().requests, 0);
        assert_eq!(cache_state(&far.get("/p").await), "HIT");
        assert_eq!(coordinator(&a).counts().requests, 1, "one refresh before answering after idling");
    });
}

#[test]
fn the_webhook_answers_503_when_the_coordinator_cannot_record_and_still_marks_kv() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        coordinator(&a).set_down(true);
        let r = publish(&a, r#"{"tags": ["post-1"]}"#).await;
        assert_eq!(r.status, 503);
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("coordinator"), "{json}");
        assert_eq!(json["complete"], false);
        assert_eq!(cache_state(&a.get("/p").await), "STALE", "the KV mark was written");
        // The CMS retries once the coordinator is back: B learns it within the bound.
        coordinator(&a).set_down(false);
        a.clock.advance(1_000);
        assert_eq!(publish(&a, r#"{"tags": ["post-1"]}"#).await.status, 200);
        let answered = crate::runtime::clock::Clock::now_ms(&a.clock);
        let (first, after) = poll_far_until_not_hit(&a, &far, answered, 10_000).await;
        assert_eq!(cache_state(&first), "STALE");
        assert!(after <= HARD_BOUND_MS);
    });
}

#[test]
fn a_coordinator_outage_keeps_hits_served_and_regenerations_on_the_kv_lease() {
    let (a, far) = locations(true);
    a.origin.reply("/s", Reply::page("s", &[("cache-control", "s-maxage=5")]));
    block_on(async {
        a.get("/s").await;
        a.run_background().await;
        coordinator(&a).set_down(true);
        coordinator(&a).reset_counts();
        for _ in 0..20 {
            assert_eq!(cache_state(&a.get("/s").await), "HIT");
            a.run_background().await;
            a.clock.advance(100);
        }
        assert!(coordinator(&a).counts().requests <= 2, "not asked on every HIT while down: {:?}", coordinator(&a).counts());
        a.clock.advance(5_000);
        assert_eq!(cache_state(&a.get("/s").await), "STALE");
        a.run_background().await;
        assert_eq!(a.origin.renders("/s"), 2, "regenerated with the KV lease");
        assert!(a.logger.count("using the KV lease") >= 1);
        let _ = far;
    });
}

#[test]
fn a_slow_coordinator_does_not_stretch_the_bound() {
    let (a, far) = locations(true);
    block_on(async {
        stored_everywhere(&a, &far).await;
        // Every call takes 400 ms: a copy's age counts from the refresh's start.
        coordinator(&a).set_latency_ms(400);
        assert_eq!(publish(&a, r#"{"paths": ["/p"]}"#).await.status, 200);
        let answered = crate::runtime::clock::Clock::now_ms(&a.clock);
        let (first, after) = poll_far_until_not_hit(&a, &far, answered, 10_000).await;
        assert_eq!(cache_state(&first), "STALE");
        assert!(after <= HARD_BOUND_MS + 400, "{after} ms");
    });
}

#[test]
fn the_admin_page_says_how_invalidations_reach_other_locations() {
    for coordinated in [true, false] {
        let (a, _) = locations(coordinated);
        let auth = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("admin:{SECRET}")));
        let page = block_on(a.send(Request::new("GET", "https://site.test/__isr/admin").with_header("authorization", &auth)));
        let html = String::from_utf8_lossy(&page.body).into_owned();
        if coordinated {
            assert!(html.contains("within 1.5 s"), "{html}");
        } else {
            assert!(html.contains("KV only") && html.contains("at worst 150 s"), "{html}");
        }
    }
}

#[test]
fn the_cost_per_action_is_as_stated_in_benchmarks() {
    let (a, far) = locations(true);
    a.origin.reply("/s", Reply::page("s", &[("cache-control", "s-maxage=5")]));
    block_on(async {
        a.get("/s").await;
        a.run_background().await;
        let c = coordinator(&a);
        // A webhook call: one request, one row written (nothing old to prune yet).
        c.reset_counts();
        assert_eq!(publish(&a, r#"{"tags": ["t"]}"#).await.status, 200);
        let n = c.counts();
        assert_eq!((n.requests, n.rows_written), (1, 1));
        // A regeneration: claim and release, no rows.
        a.clock.advance(60_000);
        c.reset_counts();
        assert_eq!(cache_state(&a.get("/s").await), "STALE");
        a.run_background().await;
        let n = c.counts();
        assert_eq!((n.claims, n.rows_written), (2, 0), "{n:?}");
        // A refresh that finds nothing new: one request, one row read (the index probe).
        c.reset_counts();
        a.clock.advance(2_000);
        far.get("/s").await;
        let n = c.counts();
        assert_eq!((n.requests, n.reads, n.rows_read, n.rows_written), (1, 1, 1, 0), "{n:?}");
    });
}

#[test]
fn one_regeneration_across_locations_after_a_publish_whatever_each_copy_s_render() {
    let (a, far) = locations(true);
    a.origin.reply("/own", Reply::page("v1", &[("cache-tag", "t"), ("cache-control", "s-maxage=3600")]));
    block_on(async {
        // Each location rendered its own copy (B could not see A's yet): two page versions.
        assert_eq!(cache_state(&a.get("/own").await), "MISS");
        a.run_background().await;
        a.clock.advance(1_000);
        assert_eq!(cache_state(&far.get("/own").await), "MISS");
        far.run_background().await;
        assert_eq!(a.origin.renders("/own"), 2);
        a.clock.advance(1_000);
        assert_eq!(publish(&a, r#"{"tags": ["t"]}"#).await.status, 200);
        a.clock.advance(HARD_BOUND_MS);
        assert_eq!(cache_state(&a.get("/own").await), "STALE");
        assert_eq!(cache_state(&far.get("/own").await), "STALE");
        let gate = a.origin.hold();
        let (in_a, in_b) = (a.queue.take_all(), far.queue.take_all());
        let pause = || crate::runtime::clock::Clock::pause(&a.clock);
        let later = async {
            for _ in 0..5 {
                pause().await;
            }
            join_all(in_b).await;
        };
        let open = async {
            for _ in 0..20 {
                pause().await;
            }
            gate.open();
        };
        futures::future::join(futures::future::join(join_all(in_a), later), open).await;
        assert_eq!(a.origin.renders("/own"), 3, "one regeneration for the publish, not one per location");
    });
}

#[test]
fn log_entries_match_pages_as_they_are_keyed() {
    let (a, far) = locations(true);
    block_on(async {
        for path in ["/caf%C3%A9/", "/q?page=2", "/blog/x"] {
            a.origin.reply(path, Reply::page("v1", &[("cache-control", "s-maxage=3600")]));
            assert_eq!(cache_state(&far.get(path).await), "MISS");
            far.run_background().await;
        }
        a.clock.advance(1_000);
        // Written as a CMS would: unencoded, and a prefix.
        let r = publish(&a, r#"{"paths": ["/café/"], "prefixes": ["/blog/"]}"#).await;
        assert_eq!(r.status, 200, "{}", body(&r));
        a.clock.advance(HARD_BOUND_MS);
        assert_eq!(cache_state(&far.get("/caf%C3%A9/").await), "STALE");
        assert_eq!(cache_state(&far.get("/blog/x").await), "STALE");
        assert_eq!(cache_state(&far.get("/q?page=2").await), "HIT", "not named");
    });
}

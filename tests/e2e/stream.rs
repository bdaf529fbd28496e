//! A MISS streams in the real worker: the visitor gets the origin's first bytes while the
//! origin still holds the rest, the page is stored once whole, and the time to first byte of a
//! 1 MiB MISS is measured against the origin's own.

use crate::support::{poll, Suite};
use crate::Test;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("a_miss_streams_before_the_origin_has_finished", a_miss_streams_before_the_origin_has_finished),
    ("a_1_mib_miss_first_byte_against_the_origins", a_1_mib_miss_first_byte_against_the_origins),
];

const SHORT: Duration = Duration::from_secs(10);

fn open_streams(s: &Suite) -> u64 {
    let r = s.send_origin("GET", "/__origin/events/open");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    v["open"].as_u64().unwrap_or(0)
}

fn a_miss_streams_before_the_origin_has_finished(s: &Suite) {
    let p = "/e2e/stream/held";
    let held = 64 * 1024;
    s.behave(p, json!({"headers": {"cache-control": "s-maxage=600"}, "etag": false, "size": 256 * 1024, "hold_at": held}));
    let resp = s.raw("GET", p).call().expect("a MISS through the worker");
    assert_eq!(resp.header("x-isr-cache"), Some("MISS"));
    let mut reader = resp.into_reader();
    let mut first = vec![0u8; held];
    reader.read_exact(&mut first).expect("the first bytes, while the origin holds the rest");
    assert_eq!(open_streams(s), 1, "the origin has not sent the rest yet");
    assert_eq!(s.stats(p).renders, 1);
    assert_eq!(s.send_origin("POST", "/__origin/events/release").status, 200);
    let mut whole = first;
    reader.read_to_end(&mut whole).expect("the rest");
    assert!(whole.len() >= 256 * 1024, "{} bytes", whole.len());
    let hit = poll("the streamed page stored", SHORT, || {
        let r = s.get(p);
        (r.state() == "HIT").then_some(r)
    });
    assert_eq!(hit.body.as_bytes(), &whole[..], "the stored page is the one that streamed");
    assert_ne!(hit.header("etag"), "", "computed from the stored body");
    assert_eq!(s.stats(p).renders, 1);
}

/// Time to the first body byte and to the last of a GET of `url`.
fn first_and_last_byte(url: &str) -> (Duration, Duration, Option<String>, String) {
    let t0 = Instant::now();
    let resp = ureq::get(url).timeout(Duration::from_secs(20)).call().expect("answered");
    let state = resp.header("x-isr-cache").map(str::to_string);
    let timing = resp.header("server-timing").unwrap_or_default().to_string();
    let mut reader = resp.into_reader();
    let mut byte = [0u8; 1];
    reader.read_exact(&mut byte).expect("a first byte");
    let first = t0.elapsed();
    std::io::copy(&mut reader, &mut std::io::sink()).expect("the rest");
    (first, t0.elapsed(), state, timing)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A measurement (BENCHMARKS.md quotes it), checked only for being seven MISSes.
fn a_1_mib_miss_first_byte_against_the_origins(s: &Suite) {
    let (mut origin_first, mut origin_last, mut miss_first, mut miss_last, mut timings) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..7 {
        let p = format!("/e2e/stream/mib{i}");
        s.behave(&p, json!({"headers": {"cache-control": "s-maxage=600"}, "size": 1024 * 1024}));
        let (first, last, _, _) = first_and_last_byte(&format!("{}{p}", s.origin_url()));
        origin_first.push(first);
        origin_last.push(last);
        let (first, last, state, timing) = first_and_last_byte(&format!("{}{p}", s.worker));
        assert_eq!(state.as_deref(), Some("MISS"), "{p}");
        timings.push(timing);
        miss_first.push(first);
        miss_last.push(last);
    }
    println!(
        "    1 MiB, median of 7: origin first byte {}, last {}; MISS first byte {}, last {}",
        ms(median(origin_first)),
        ms(median(origin_last)),
        ms(median(miss_first)),
        ms(median(miss_last))
    );
    println!("    the MISSes' Server-Timing: {}", timings.join(" | "));
    // The same pages as HITs: the first byte of this stack (wrangler dev's proxy, the isolate)
    // without the origin.
    let (mut hit_first, mut hit_last) = (vec![], vec![]);
    for i in 0..7 {
        let url = format!("{}/e2e/stream/mib{i}", s.worker);
        let (first, last, state, _) = poll("the page stored", SHORT, || Some(first_and_last_byte(&url)).filter(|r| r.2.as_deref() == Some("HIT")));
        assert_eq!(state.as_deref(), Some("HIT"));
        hit_first.push(first);
        hit_last.push(last);
    }
    println!("    the same pages as HITs (KV's stream passed on): first byte {}, last {}", ms(median(hit_first)), ms(median(hit_last)));
}

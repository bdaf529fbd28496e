//! A MISS streams in the real worker: the visitor gets the origin's first bytes while the
//! origin still holds the rest, and the page is stored once whole. (The time to first byte of
//! a 1 MiB MISS against the origin's own is measured by `make bench`, not here.)

use crate::support::{poll, Suite};
use crate::Test;
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("a_miss_streams_before_the_origin_has_finished", a_miss_streams_before_the_origin_has_finished),
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

//! Hostile input end to end (issue 12): route parameters smuggling `/` or `..`, a replayed
//! signature with targets added, bodies far over the limits, streams through BYPASS, the admin
//! page's framing headers, and what caches in front are told.

use crate::support::{poll, Suite, SECRET};
use crate::Test;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every test of this file.
pub const TESTS: &[Test] = &[
    ("hostile_route_parameters_stay_inside_their_data_url", hostile_route_parameters_stay_inside_their_data_url),
    ("hostile_signed_delivery_cannot_gain_query_targets", hostile_signed_delivery_cannot_gain_query_targets),
    ("hostile_webhook_bodies_over_the_limit_are_refused_unread", hostile_webhook_bodies_over_the_limit_are_refused_unread),
    ("hostile_bypass_bodies_are_streamed_not_buffered", hostile_bypass_bodies_are_streamed_not_buffered),
    ("hostile_bypass_streams_60_mib_both_ways_while_hits_go_on", hostile_bypass_streams_60_mib_both_ways_while_hits_go_on),
    ("hostile_event_stream_reaches_the_visitor_before_the_origin_ends", hostile_event_stream_reaches_the_visitor_before_the_origin_ends),
    ("hostile_admin_page_and_origin_errors", hostile_admin_page_and_origin_errors),
    ("hostile_caches_in_front_get_no_lifetime", hostile_caches_in_front_get_no_lifetime),
];

const MIB: usize = 1024 * 1024;

fn worker_addr(s: &Suite) -> String {
    s.worker.trim_start_matches("http://").to_string()
}

/// A raw connection to the worker (for bodies sent in part, and streams read as they come).
fn connect(s: &Suite) -> TcpStream {
    let stream = TcpStream::connect(worker_addr(s)).expect("connect to the worker");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream
}

/// Reads from `stream` until `needle` has arrived (or the stream ends or times out); returns
/// everything read.
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn stored(s: &Suite, path: &str) {
    poll(&format!("{path} stored"), Duration::from_secs(10), || (s.get(path).state() == "HIT").then_some(()));
}

fn hostile_route_parameters_stay_inside_their_data_url(s: &Suite) {
    // /blog/:slug fetches CMS_URL/api/posts/{slug}: this slug used to make it fetch /e2e-escape.
    let r = s.get("/blog/..%2F..%2F..%2Fe2e-escape");
    assert_eq!(r.status, 404, "{r:?}");
    let r = s.get("/blog/a%2F..%2F..%2F..%2Fe2e-escape");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(s.stats("/e2e-escape").requests, 0, "the CMS was asked for a path outside /api/posts/");
    // A slug with reserved characters stays one segment of the data URL.
    s.get("/blog/e2e%3Fq%3D1%23x");
    let asked = s.origin_requests("/api/posts/e2e%3Fq%3D1%23x");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["query"], "", "no query was added: {asked:?}");
}

fn sign(body: &str, t: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn hostile_signed_delivery_cannot_gain_query_targets(s: &Suite) {
    let (target, unrelated) = ("/e2e/hostile/signed/target", "/e2e/hostile/signed/unrelated");
    for p in [target, unrelated] {
        s.get(p);
        stored(s, p);
    }
    let body = json!({"paths": [target]}).to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let signature = sign(&body, now);
    let headers = [("content-type", "application/json"), ("x-isr-signature", signature.as_str())];
    // The captured delivery, replayed at once with a site-wide hard purge added.
    let replay = s.send("POST", "/api/revalidate?prefix=/&mode=expire", &headers, Some(&body));
    assert_eq!(replay.status, 400, "{replay:?}");
    let error: Value = serde_json::from_str(&replay.body).expect("a JSON error");
    assert!(error["error"].as_str().unwrap_or("").contains("not covered by the signature"), "{error}");
    assert_eq!(s.get(unrelated).state(), "HIT", "nothing was purged");
    assert_eq!(s.get(target).state(), "HIT");
    // The delivery as it was signed still works.
    let genuine = s.send("POST", "/api/revalidate", &headers, Some(&body));
    assert_eq!(genuine.status, 200, "{genuine:?}");
    assert_eq!(s.get(target).state(), "STALE");
    assert_eq!(s.get(unrelated).state(), "HIT");
}

/// Sends a request head and `sent` bytes of a body (in 64 KiB pieces, stopping if the worker
/// closes), then reads the answer.
///
/// wrangler dev's own proxy in front of the worker (a hop production does not have) answers
/// the request after an abandoned body now and then with its "Your worker restarted
/// mid-request" 503 without asking the worker; such an answer is sent again (at most twice).
fn partial_post(s: &Suite, path: &str, framing: &str, chunked: bool, sent: usize) -> (String, Duration) {
    let mut tries = 0;
    loop {
        let (answer, took) = partial_post_once(s, path, framing, chunked, sent);
        tries += 1;
        if !answer.contains("restarted mid-request") || tries == 3 {
            return (answer, took);
        }
    }
}

fn partial_post_once(s: &Suite, path: &str, framing: &str, chunked: bool, sent: usize) -> (String, Duration) {
    let mut stream = connect(s);
    let started = Instant::now();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nauthorization: Bearer {SECRET}\r\n{framing}\r\n",
        worker_addr(s)
    )
    .expect("send the head");
    let piece = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < sent {
        let result = if chunked {
            write!(stream, "{:x}\r\n", piece.len()).and_then(|_| stream.write_all(&piece)).and_then(|_| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(&piece)
        };
        if result.is_err() {
            break; // the worker answered and closed: fine
        }
        written += piece.len();
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let answer = read_until(&mut stream, "}");
    (answer, started.elapsed())
}

fn hostile_webhook_bodies_over_the_limit_are_refused_unread(s: &Suite) {
    // 60 MiB with a Content-Length: refused from it (nothing read into memory; the rest is
    // dropped as it arrives, so the client gets the 413 rather than a reset connection).
    let declared = format!("content-length: {}\r\n", 60 * MIB);
    for path in ["/api/revalidate", "/__isr/admin/revalidate"] {
        let (answer, took) = partial_post(s, path, &declared, false, 60 * MIB);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("65536"), "{answer}");
        assert!(took < Duration::from_secs(10), "{path}: took {took:?}");
        println!("    60 MiB body to {path} refused in {took:.1?}");
    }
    // 60 MiB chunked (no length): read up to the limit only, then refused.
    let (answer, took) = partial_post(s, "/api/revalidate", "transfer-encoding: chunked\r\n", true, 60 * MIB);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // wrangler dev's proxy in front of the worker may answer the next POST 503 ("restarted
    // mid-request", a local-only hop) after a body the worker stopped reading; then it recovers.
    poll("the webhook to answer again", Duration::from_secs(10), || {
        let r = s.send("POST", "/api/revalidate", &[("authorization", &format!("Bearer {SECRET}"))], Some(r#"{"tags": ["e2e-hostile-after"]}"#));
        (r.status == 200).then_some(())
    });
}

fn hostile_bypass_streams_60_mib_both_ways_while_hits_go_on(s: &Suite) {
    let hit = "/e2e/hostile/streams/hit";
    s.get(hit);
    stored(s, hit);
    let size = 60 * MIB;
    let started = Instant::now();
    // The suite's client gives up after 30 s; 60 MiB each way on a busy 2-core machine can take
    // longer than that through wrangler dev's local hops.
    let transfers = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
    let upload = {
        let agent = transfers.post(&format!("{}/__origin/upload", s.worker));
        std::thread::spawn(move || {
            let body = vec![b'u'; size];
            let r = agent.set("content-type", "application/octet-stream").send_bytes(&body).expect("upload through the worker");
            let state = r.header("x-isr-cache").unwrap_or_default().to_string();
            let answer: Value = serde_json::from_reader(r.into_reader()).expect("the sink's JSON");
            (state, answer)
        })
    };
    let download = {
        let agent = transfers.get(&format!("{}/__origin/download?bytes={size}", s.worker));
        std::thread::spawn(move || {
            let r = agent.set("authorization", "Bearer a-visitor").call().expect("download through the worker");
            let state = r.header("x-isr-cache").unwrap_or_default().to_string();
            let mut reader = r.into_reader();
            let n = std::io::copy(&mut reader, &mut std::io::sink()).expect("the download's body");
            (state, n)
        })
    };
    let (mut hits, mut slowest) = (0, Duration::ZERO);
    while !(upload.is_finished() && download.is_finished()) {
        let t = Instant::now();
        let r = s.get(hit);
        slowest = slowest.max(t.elapsed());
        assert_eq!((r.status, r.state()), (200, "HIT"), "HITs keep being answered during the transfers");
        hits += 1;
        assert!(started.elapsed() < Duration::from_secs(120), "the transfers did not finish");
    }
    let (up_state, up) = upload.join().expect("upload thread");
    let (down_state, down) = download.join().expect("download thread");
    println!("    60 MiB up and down in {:.1?}; {hits} HITs meanwhile, slowest {slowest:.1?}", started.elapsed());
    assert_eq!(up_state, "BYPASS");
    assert_eq!(up["bytes"], size, "{up}");
    assert_eq!((down_state.as_str(), down), ("BYPASS", size as u64));
    assert!(hits > 0);
    assert_eq!(s.get(hit).state(), "HIT", "the worker is still fine");
}

fn origin_json(s: &Suite, method: &str, path: &str) -> Value {
    let r = s.send_origin(method, path);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

/// Proof that neither direction is buffered: the origin receives the start of an upload the
/// visitor has not finished sending, and the visitor receives the start of a download the
/// origin has not finished sending.
fn hostile_bypass_bodies_are_streamed_not_buffered(s: &Suite) {
    // 16 MiB is enough to show it (the 60 MiB case is the test after this one).
    let size = 16 * MIB;
    let mut up = connect(s);
    write!(up, "POST /__origin/upload HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n", worker_addr(s))
        .expect("send the head");
    let piece = vec![b'u'; MIB];
    for _ in 0..4 {
        up.write_all(&piece).expect("send the first 4 MiB");
    }
    poll("the origin to receive the upload's first bytes while the rest is unsent", Duration::from_secs(10), || {
        (origin_json(s, "GET", "/__origin/upload/progress")["received"].as_u64() > Some(0)).then_some(())
    });
    for _ in 4..size / MIB {
        up.write_all(&piece).expect("send the rest");
    }
    let answer = read_until(&mut up, "}");
    assert!(answer.contains(&format!("\"bytes\":{size}")), "{answer}");
    assert!(answer.contains("x-isr-cache: BYPASS"), "{answer}");

    let held = 4 * MIB;
    let resp = s
        .raw("GET", &format!("/__origin/download?bytes={size}&hold_at={held}"))
        .set("authorization", "Bearer a-visitor")
        .call()
        .expect("download through the worker");
    assert_eq!(resp.header("x-isr-cache"), Some("BYPASS"));
    let mut reader = resp.into_reader();
    let mut first = vec![0u8; held];
    reader.read_exact(&mut first).expect("the first 4 MiB");
    assert_eq!(origin_json(s, "GET", "/__origin/events/open")["open"], 1, "the origin is still holding the rest");
    assert_eq!(s.send_origin("POST", "/__origin/events/release").status, 200);
    let rest = std::io::copy(&mut reader, &mut std::io::sink()).expect("the rest");
    assert_eq!(rest as usize, size - held);
}

fn hostile_event_stream_reaches_the_visitor_before_the_origin_ends(s: &Suite) {
    let mut stream = connect(s);
    let started = Instant::now();
    write!(stream, "GET /__origin/events HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n\r\n", worker_addr(s)).expect("send");
    let first = read_until(&mut stream, "data: first");
    assert!(first.contains("data: first"), "the first event did not arrive: {first:?}");
    assert!(first.contains("x-isr-cache: BYPASS"), "{first}");
    let open: Value = serde_json::from_str(&s.send_origin("GET", "/__origin/events/open").body).expect("JSON");
    assert_eq!(open["open"], 1, "the origin has not finished the stream yet");
    println!("    first event after {:.1?}", started.elapsed());
    assert_eq!(s.send_origin("POST", "/__origin/events/release").status, 200);
    let rest = read_until(&mut stream, "data: last");
    assert!(rest.contains("data: last"), "{rest:?}");
}

fn hostile_admin_page_and_origin_errors(s: &Suite) {
    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{SECRET}")));
    for auth in [basic.as_str(), "Basic d3Jvbmc6d3Jvbmc="] {
        let r = s.get_with("/__isr/admin", &[("authorization", auth)]);
        assert!(matches!(r.status, 200 | 401), "{r:?}");
        assert_eq!(r.header("content-security-policy"), "frame-ancestors 'none'", "{}", r.status);
        assert_eq!(r.header("x-frame-options"), "DENY");
    }
}

fn hostile_caches_in_front_get_no_lifetime(s: &Suite) {
    let p = "/e2e/hostile/downstream";
    s.behave(
        p,
        json!({"headers": {"cache-control": "public, max-age=30, s-maxage=3600, stale-while-revalidate=600", "cdn-cache-control": "max-age=3600", "surrogate-control": "max-age=3600"}}),
    );
    let miss = s.get(p);
    stored(s, p);
    let hit = s.get(p);
    for r in [&miss, &hit] {
        assert_eq!(r.header("cache-control"), "public, max-age=30, s-maxage=0", "{r:?}");
        assert_eq!(r.header("cdn-cache-control"), "");
        assert_eq!(r.header("surrogate-control"), "");
    }
}

//! Unit tests: each starts an origin on an ephemeral loopback port and talks HTTP to it with a
//! small std-only client.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn render(&self) -> u64 {
        page_render(&self.text()).unwrap_or_else(|| panic!("no render line in {}", self.text()))
    }

    fn field(&self, name: &str) -> String {
        page_field(&self.text(), name)
            .unwrap_or_else(|| panic!("no {name} line in {}", self.text()))
            .to_string()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the test origin");
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("read timeout");
    stream
}

/// Reads one response; the body by Content-Length, or to EOF without one.
fn read_response(reader: &mut impl BufRead, head_only: bool) -> Resp {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header colon");
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 304 || status == 204 {
        return resp;
    }
    match resp
        .header("content-length")
        .map(|v| v.parse::<u64>().expect("content-length"))
    {
        Some(n) => {
            reader.take(n).read_to_end(&mut resp.body).expect("body");
        }
        None => {
            reader.read_to_end(&mut resp.body).expect("body");
        }
    }
    resp
}

/// One request on a fresh connection (`Connection: close`).
fn request(
    o: &TestOrigin,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut stream = connect(o.addr());
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
        o.addr()
    );
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        raw.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    stream.write_all(raw.as_bytes()).expect("send request");
    read_response(&mut BufReader::new(stream), method == "HEAD")
}

fn get(o: &TestOrigin, target: &str) -> Resp {
    request(o, "GET", target, &[], "")
}

/// Sends raw bytes and returns everything the server answers until it closes.
fn raw_exchange(o: &TestOrigin, raw: &[u8]) -> String {
    let mut stream = connect(o.addr());
    stream.write_all(raw).expect("send");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn start() -> TestOrigin {
    TestOrigin::start("127.0.0.1:0").expect("start test origin")
}

/// Polls `check` every 5 ms until it holds, panicking after `limit`.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn renders_are_counted_per_path_and_show_the_query() {
    let o = start();
    assert!(o.url().starts_with("http://127.0.0.1:"));
    let first = get(&o, "/a?x=1&y=%20two");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(first.render(), 1);
    assert_eq!(first.field("content"), "v1");
    assert_eq!(first.field("query"), "x=1&y=%20two");
    assert_eq!(first.field("path"), "/a");
    assert!(
        first
            .field("time")
            .parse::<u128>()
            .expect("time is unix ms")
            > 1_600_000_000_000
    );
    assert!(first.text().contains("<title>/a</title>") && first.text().contains("<h1>/a</h1>"));
    assert!(first.text().contains("render #1"));
    assert_eq!(first.header("x-origin-render"), Some("1"));
    let second = get(&o, "/a");
    assert_eq!((second.render(), second.field("query")), (2, String::new()));
    assert_eq!(get(&o, "/b").render(), 1, "counters are per path");
    assert_eq!(
        o.stats("/a"),
        Stats {
            path: "/a".into(),
            renders: 2,
            not_modified: 0,
            failures: 0,
            requests: 2
        }
    );
    assert_eq!(o.stats("/never").renders, 0);
    let head = request(&o, "HEAD", "/a", &[], "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("content-length").is_some_and(|l| l != "0"));
    assert_eq!(o.stats("/a").renders, 3, "HEAD renders too");
}

#[test]
fn behaviour_is_set_shown_and_reset_over_http() {
    let o = start();
    let put = request(
        &o,
        "PUT",
        "/__origin/behaviour?path=%2Fx",
        &[("content-type", "application/json")],
        r#"{"status":201,"content":"v2","headers":{"Cache-Control":"s-maxage=2","cache-tag":"a,b","set-cookie":"x=1"}}"#,
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["content"], "v2");
    let shown = get(&o, "/__origin/behaviour?path=/x").json();
    assert_eq!(
        (shown["status"].as_u64(), shown["etag"].as_bool()),
        (Some(201), Some(true))
    );
    let page = get(&o, "/x");
    assert_eq!(page.status, 201);
    assert_eq!(page.field("content"), "v2");
    assert_eq!(page.header("cache-control"), Some("s-maxage=2"));
    assert_eq!(page.header("cache-tag"), Some("a,b"));
    assert_eq!(page.header("set-cookie"), Some("x=1"));
    assert_eq!(o.behaviour("/x").content, "v2");

    let deleted = request(&o, "DELETE", "/__origin/behaviour?path=/x", &[], "");
    assert_eq!(deleted.status, 200);
    let page = get(&o, "/x");
    assert_eq!(
        (page.status, page.field("content"), page.header("cache-tag")),
        (200, "v1".into(), None)
    );
    assert_eq!(page.render(), 2, "resetting behaviour keeps counters");

    // In-process API.
    o.set_behaviour(
        "/y",
        Behaviour {
            content: "direct".into(),
            ..Behaviour::default()
        },
    );
    assert_eq!(get(&o, "/y").field("content"), "direct");
    o.clear_behaviour("/y");
    assert_eq!(get(&o, "/y").field("content"), "v1");

    // Mistakes are 400s, not panics.
    for (target, body) in [
        ("/__origin/behaviour?path=/x", "{not json"),
        ("/__origin/behaviour?path=/x", r#"{"stauts":500}"#),
        ("/__origin/behaviour?path=/x", r#"{"status":99}"#),
        (
            "/__origin/behaviour?path=/x",
            r#"{"headers":{"content-length":"5"}}"#,
        ),
        (
            "/__origin/behaviour?path=/x",
            r#"{"headers":{"bad name":"5"}}"#,
        ),
        ("/__origin/behaviour?path=/x", r#"{"status":"two hundred"}"#),
        ("/__origin/behaviour", "{}"),
        ("/__origin/behaviour?path=x", "{}"),
        ("/__origin/behaviour?path=%zz", "{}"),
    ] {
        let r = request(&o, "PUT", target, &[], body);
        assert_eq!(r.status, 400, "{target} {body}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(
        request(&o, "PATCH", "/__origin/behaviour?path=/x", &[], "").status,
        405
    );
    assert_eq!(get(&o, "/__origin/nope").status, 404);
    assert_eq!(
        get(&o, "/__origin/").json()["behaviour_defaults"]["content"],
        "v1"
    );
}

#[test]
fn matching_if_none_match_is_a_304_not_a_render() {
    let o = start();
    let page = get(&o, "/e");
    let etag = page.header("etag").expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(
        get(&o, "/e").header("etag"),
        Some(etag.as_str()),
        "stable while content is"
    );

    let nm = request(&o, "GET", "/e", &[("if-none-match", &etag)], "");
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.header("etag"), Some(etag.as_str()));
    let weak_list = format!("\"other\", W/{etag}");
    assert_eq!(
        request(&o, "GET", "/e", &[("if-none-match", &weak_list)], "").status,
        304
    );
    assert_eq!(
        request(&o, "HEAD", "/e", &[("if-none-match", &etag)], "").status,
        304
    );
    let other = request(&o, "GET", "/e", &[("if-none-match", "\"other\"")], "");
    assert_eq!((other.status, other.render()), (200, 3));
    let s = o.stats("/e");
    assert_eq!((s.renders, s.not_modified, s.requests), (3, 3, 6));

    // New content: new ETag, the old one no longer matches.
    o.set_behaviour(
        "/e",
        Behaviour {
            content: "v2".into(),
            ..Behaviour::default()
        },
    );
    let changed = request(&o, "GET", "/e", &[("if-none-match", &etag)], "");
    assert_eq!((changed.status, changed.render()), (200, 4));
    assert_ne!(changed.header("etag"), Some(etag.as_str()));

    // etag: false sends none and ignores If-None-Match.
    o.set_behaviour(
        "/e",
        Behaviour {
            etag: false,
            ..Behaviour::default()
        },
    );
    let no_etag = request(&o, "GET", "/e", &[("if-none-match", &etag)], "");
    assert_eq!((no_etag.status, no_etag.header("etag")), (200, None));
}

#[test]
fn last_modified_and_if_modified_since() {
    let o = start();
    assert_eq!(
        get(&o, "/lm").header("last-modified"),
        None,
        "off by default"
    );
    o.set_behaviour(
        "/lm",
        Behaviour {
            last_modified: true,
            etag: false,
            ..Behaviour::default()
        },
    );
    let page = get(&o, "/lm");
    let lm = page
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let nm = request(&o, "GET", "/lm", &[("if-modified-since", &lm)], "");
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("last-modified"), Some(lm.as_str()));
    let old = request(
        &o,
        "GET",
        "/lm",
        &[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        "",
    );
    assert_eq!(old.status, 200);
    // Changing the content moves Last-Modified strictly forward, even within the same second.
    o.set_behaviour(
        "/lm",
        Behaviour {
            last_modified: true,
            etag: false,
            content: "v2".into(),
            ..Behaviour::default()
        },
    );
    let changed = request(&o, "GET", "/lm", &[("if-modified-since", &lm)], "");
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("last-modified"), Some(lm.as_str()));
    let s = o.stats("/lm");
    assert_eq!((s.renders, s.not_modified), (4, 1));
}

#[test]
fn fail_answers_500_and_flip_alternates() {
    let o = start();
    o.set_behaviour(
        "/f",
        Behaviour {
            fail: true,
            ..Behaviour::default()
        },
    );
    let r = get(&o, "/f");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("render="));
    let s = o.stats("/f");
    assert_eq!((s.renders, s.failures, s.requests), (0, 1, 1));

    let put = request(
        &o,
        "PUT",
        "/__origin/behaviour?path=/flip",
        &[],
        r#"{"flip":true}"#,
    );
    assert_eq!(put.status, 200);
    let statuses: Vec<u16> = (0..5).map(|_| get(&o, "/flip").status).collect();
    assert_eq!(statuses, [200, 500, 200, 500, 200]);
    let s = o.stats("/flip");
    assert_eq!((s.renders, s.failures), (3, 2));
}

#[test]
fn stall_delays_the_answer() {
    let o = start();
    o.set_behaviour(
        "/slow",
        Behaviour {
            stall_ms: 200,
            ..Behaviour::default()
        },
    );
    let t = Instant::now();
    let r = get(&o, "/slow");
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_stalled_request_blocks_neither_other_requests_nor_stop() {
    let o = start();
    o.set_behaviour(
        "/stalled",
        Behaviour {
            stall_ms: 5_000,
            ..Behaviour::default()
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let addr = o.addr();
    let slow = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut stream = connect(addr);
            let _ =
                stream.write_all(b"GET /stalled HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let mut out = Vec::new();
            let _ = stream.read_to_end(&mut out);
            done.store(true, Ordering::SeqCst);
            out
        })
    };
    wait_until(
        "the stalled request to arrive",
        Duration::from_secs(5),
        || o.stats("/stalled").requests == 1,
    );
    let t = Instant::now();
    assert_eq!(get(&o, "/other").status, 200);
    assert_eq!(
        get(&o, "/__origin/stats?path=/stalled").json()["requests"],
        1
    );
    assert!(
        !done.load(Ordering::SeqCst),
        "the stalled request is still waiting"
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "other requests were not blocked: {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    o.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop waited for the stall: {:?}",
        t.elapsed()
    );
    let answer = slow.join().expect("slow client");
    assert!(
        answer.is_empty(),
        "a stall cut short by stop() gets no answer"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn stats_and_requests_endpoints() {
    let o = start();
    get(&o, "/s");
    request(
        &o,
        "GET",
        "/s?page=2&utm=x",
        &[
            ("Cookie", "theme=dark"),
            ("If-None-Match", "\"abc\""),
            ("X-Twice", "1"),
            ("x-twice", "2"),
        ],
        "",
    );
    let stats = get(&o, "/__origin/stats?path=/s").json();
    assert_eq!(
        stats,
        serde_json::json!({"path":"/s","renders":2,"not_modified":0,"failures":0,"requests":2})
    );
    get(&o, "/t");
    let all = get(&o, "/__origin/stats").json();
    assert_eq!(
        (all["/s"]["renders"].as_u64(), all["/t"]["renders"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        all.get("/__origin/stats").is_none(),
        "control requests are not counted"
    );

    let reqs = get(&o, "/__origin/requests?path=/s").json();
    let reqs = reqs.as_array().expect("array");
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0]["method"].as_str(), reqs[0]["query"].as_str()),
        (Some("GET"), Some(""))
    );
    let second = &reqs[1];
    assert_eq!(
        (second["path"].as_str(), second["query"].as_str()),
        (Some("/s"), Some("page=2&utm=x"))
    );
    assert_eq!(second["headers"]["cookie"], "theme=dark");
    assert_eq!(second["headers"]["if-none-match"], "\"abc\"");
    assert_eq!(second["headers"]["x-twice"], "1, 2");
    assert!(reqs[0]["headers"]["cookie"].is_null());
    assert_eq!(
        o.requests("/s")[1]
            .headers
            .get("cookie")
            .map(String::as_str),
        Some("theme=dark")
    );
    assert_eq!(get(&o, "/__origin/requests").json()["/t"][0]["path"], "/t");

    for i in 0..25 {
        get(&o, &format!("/many?i={i}"));
    }
    let log = o.requests("/many");
    assert_eq!(log.len(), REQUEST_LOG_LEN);
    assert_eq!(
        (log[0].query.as_str(), log[19].query.as_str()),
        ("i=5", "i=24"),
        "the last 20, oldest first"
    );

    o.set_behaviour(
        "/s",
        Behaviour {
            content: "v9".into(),
            ..Behaviour::default()
        },
    );
    let reset = request(&o, "POST", "/__origin/reset", &[], "");
    assert_eq!(
        (reset.status, reset.json()["reset"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(o.stats("/s").requests, 0);
    assert!(o.requests("/s").is_empty());
    assert_eq!(get(&o, "/s").field("content"), "v1", "behaviour cleared");
    o.reset();
    assert!(o.all_stats().is_empty());
    assert_eq!(get(&o, "/__origin/reset").status, 405);
}

#[test]
fn other_methods_echo_json_with_configured_status_and_headers() {
    let o = start();
    let r = request(
        &o,
        "POST",
        "/form",
        &[("content-type", "text/plain")],
        "hello",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({"method":"POST","path":"/form","body_len":5})
    );
    assert_eq!(
        r.text().trim(),
        r#"{"method":"POST","path":"/form","body_len":5}"#
    );
    o.set_behaviour(
        "/form",
        Behaviour {
            status: 303,
            headers: [("location".to_string(), "/done".to_string())].into(),
            ..Behaviour::default()
        },
    );
    let r = request(&o, "DELETE", "/form", &[], "");
    assert_eq!((r.status, r.header("location")), (303, Some("/done")));
    assert_eq!(r.json()["method"], "DELETE");
    // A chunked body, sent after waiting for 100 Continue.
    let answer = raw_exchange(
        &o,
        b"PUT /form HTTP/1.1\r\nhost: x\r\nconnection: close\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\ntrailer: x\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 303 "),
        "{answer}"
    );
    assert!(answer.contains(r#""body_len":13"#), "{answer}");
    let s = o.stats("/form");
    assert_eq!((s.requests, s.renders), (3, 0));
}

#[test]
fn size_pads_and_truncate_cuts_the_body() {
    let o = start();
    o.set_behaviour(
        "/big",
        Behaviour {
            size: 1_000_000,
            ..Behaviour::default()
        },
    );
    let big = get(&o, "/big");
    assert_eq!(big.body.len(), 1_000_000);
    assert_eq!(big.render(), 1);
    assert!(big.text().trim_end().ends_with("-->"));
    o.set_behaviour(
        "/big",
        Behaviour {
            size: 10,
            ..Behaviour::default()
        },
    );
    assert!(
        get(&o, "/big").body.len() > 10,
        "never shorter than the page"
    );

    o.set_behaviour(
        "/cut",
        Behaviour {
            truncate: true,
            ..Behaviour::default()
        },
    );
    // Keep-alive request: the server must close by itself mid-body.
    let mut stream = connect(o.addr());
    stream
        .write_all(b"GET /cut HTTP/1.1\r\nhost: x\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader, true);
    assert_eq!(head.status, 200);
    let declared: usize = head
        .header("content-length")
        .expect("content-length")
        .parse()
        .expect("number");
    let mut body = Vec::new();
    reader
        .read_to_end(&mut body)
        .expect("the connection closes (no timeout)");
    assert!(body.len() < declared, "{} < {declared}", body.len());
    assert!(String::from_utf8_lossy(&body).contains("render=1"));
    assert_eq!(o.stats("/cut").renders, 1);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let o = start();
    let stream = connect(o.addr());
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    for n in 1..=3 {
        writer
            .write_all(b"GET /ka HTTP/1.1\r\nhost: x\r\n\r\n")
            .expect("send");
        let r = read_response(&mut reader, false);
        assert_eq!((r.status, r.render()), (200, n));
        assert_eq!(r.header("connection"), None);
    }
    // Pipelined: both answered, in order.
    writer.write_all(b"GET /ka HTTP/1.1\r\nhost: x\r\n\r\nGET /ka?last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("send");
    assert_eq!(read_response(&mut reader, false).render(), 4);
    let last = read_response(&mut reader, false);
    assert_eq!(
        (last.render(), last.header("connection")),
        (5, Some("close"))
    );
}

#[test]
fn malformed_requests_get_400() {
    let o = start();
    for raw in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /x HTTP/1.1\r\ncontent-length: abc\r\n\r\n",
        b"GET /x HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET x HTTP/1.1\r\n\r\n",
    ] {
        let answer = raw_exchange(&o, raw);
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{:?} -> {answer}",
            String::from_utf8_lossy(raw)
        );
    }
    assert!(raw_exchange(&o, b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 505 "));
    let huge = format!("GET /x HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(70_000));
    assert!(raw_exchange(&o, huge.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert_eq!(
        o.stats("/x").requests,
        0,
        "malformed requests are not counted"
    );
    // Absolute-form targets are fine.
    let abs = raw_exchange(
        &o,
        b"GET http://example.test/abs?q=1 HTTP/1.1\r\nconnection: close\r\n\r\n",
    );
    assert!(
        abs.starts_with("HTTP/1.1 200 ") && abs.contains("query=q=1"),
        "{abs}"
    );
}

#[test]
fn the_index_explains_the_control_api_unless_configured() {
    let o = start();
    let index = get(&o, "/");
    assert_eq!(index.render(), 1);
    let text = index.text();
    assert!(text.contains("/__origin/behaviour?path="), "{text}");
    assert!(
        text.contains(&format!("{}/__origin/stats", o.url())),
        "{text}"
    );
    assert_eq!(
        text.find("render="),
        text.find("<p id=\"render\">render=").map(|i| i + 15),
        "render= first in its line"
    );
    o.set_behaviour(
        "/",
        Behaviour {
            content: "home".into(),
            ..Behaviour::default()
        },
    );
    let plain = get(&o, "/");
    assert!(!plain.text().contains("/__origin/behaviour"));
    assert_eq!((plain.field("content"), plain.render()), ("home".into(), 2));
}

#[test]
fn stop_and_drop_free_the_port() {
    let o = start();
    let addr = o.addr();
    assert_eq!(get(&o, "/p").status, 200);
    // An idle keep-alive connection must not keep it alive either.
    let idle = connect(addr);
    o.stop();
    TcpListener::bind(addr).expect("port free after stop()");
    let mut buf = [0u8; 1];
    assert_eq!(
        (&idle).read(&mut buf).ok(),
        Some(0),
        "open connections are closed"
    );

    let o = start();
    let addr = o.addr();
    drop(o);
    TcpListener::bind(addr).expect("port free after drop");
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn only_loopback_addresses() {
    let err = TestOrigin::start("0.0.0.0:0").expect_err("non-loopback refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let o = TestOrigin::start("localhost:0").expect("localhost is loopback");
    assert!(o.addr().ip().is_loopback());
}

#[test]
fn streaming_endpoints_download_count_uploads_and_hold_events() {
    let o = start();
    let dl = get(&o, "/__origin/download?bytes=200000");
    assert_eq!(dl.status, 200);
    assert_eq!(dl.header("content-length"), Some("200000"));
    assert_eq!(dl.body.len(), 200_000);
    assert!(dl.body.iter().all(|b| *b == b'x'));
    let up = request(&o, "POST", "/__origin/upload", &[], "12345");
    assert_eq!(up.json()["bytes"], 5);

    // The first event comes at once; the stream stays open until released.
    let mut stream = connect(o.addr());
    write!(stream, "GET /__origin/events HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    while !seen.contains("data: first\n\n") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed early: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert_eq!(get(&o, "/__origin/events/open").json()["open"], 1);
    assert_eq!(request(&o, "POST", "/__origin/events/release", &[], "").status, 200);
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "data: last\n\n");
    wait_until("the stream to end", Duration::from_secs(5), || get(&o, "/__origin/events/open").json()["open"] == 0);
}

#[test]
fn a_page_with_hold_at_sends_its_start_then_holds_until_released() {
    let o = start();
    let put = request(&o, "PUT", "/__origin/behaviour?path=/held", &[("content-type", "application/json")], r#"{"size":20000,"hold_at":1000}"#);
    assert_eq!(put.status, 200, "{}", put.text());
    let mut stream = connect(o.addr());
    write!(stream, "GET /held HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(reader.read_line(&mut head).unwrap() > 0, "closed early: {head}");
    }
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    assert!(declared >= 20_000, "{head}");
    let mut first = vec![0u8; 1000];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(get(&o, "/__origin/events/open").json()["open"], 1, "holding the rest");
    assert_eq!(get(&o, "/__origin/stats?path=/held").json()["renders"], 1);
    assert_eq!(request(&o, "POST", "/__origin/events/release", &[], "").status, 200);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), declared);
    first.extend_from_slice(&rest);
    assert!(String::from_utf8_lossy(&first).contains("render=1"), "the whole page");
}

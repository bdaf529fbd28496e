//! Hostile input (issue 12): replayed signatures with targets added, bodies over the limits,
//! the admin page's framing and secrets, what downstream caches are told.

use crate::http::Request;
use crate::rules::config::Config;
use crate::rules::key::hex;
use crate::runtime::clock::Clock;
use crate::testing::{body, cache_state, Bench};
use crate::webhook::{ISR_SIGNATURE_HEADER, SANITY_SIGNATURE_HEADER};
use base64::Engine as _;
use futures::executor::block_on;

const SECRET: &str = "hostile-secret";

fn bench() -> Bench {
    let mut config = Config::for_origin("http://origin.test");
    config.revalidate_secret = SECRET.into();
    Bench::with_config(config)
}

fn mac(parts: &[&[u8]]) -> [u8; 32] {
    crate::webhook::crypto::hmac_sha256(SECRET.as_bytes(), parts).unwrap()
}

fn webhook(query: &str, body: &str, header: (&str, String)) -> Request {
    let mut r = Request::new("POST", &format!("https://site.test/api/revalidate{query}")).with_header(header.0, &header.1);
    r.body = body.to_string().into();
    r
}

/// A captured signed delivery, replayed with `?prefix=/&mode=expire` added, purged the site.
#[test]
fn a_signed_body_does_not_lend_its_signature_to_query_targets() {
    let b = bench();
    block_on(async {
        for path in ["/a", "/unrelated"] {
            b.get(path).await;
            b.run_background().await;
        }
        b.clock.advance(1_000);
        let body_text = r#"{"paths": ["/a"]}"#;
        let t = (b.clock.now_ms() / 1000).to_string();
        let isr = (ISR_SIGNATURE_HEADER, format!("t={t},v1={}", hex(&mac(&[t.as_bytes(), b".", body_text.as_bytes()]))));
        let t_ms = b.clock.now_ms().to_string();
        let sanity_mac = mac(&[t_ms.as_bytes(), b".", body_text.as_bytes()]);
        let sanity = (SANITY_SIGNATURE_HEADER, format!("t={t_ms},v1={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sanity_mac)));
        for header in [isr, sanity] {
            for query in ["?prefix=/&mode=expire", "?mode=expire", "?tag=posts", "?path=/unrelated"] {
                let resp = b.send(webhook(query, body_text, header.clone())).await;
                assert_eq!(resp.status, 400, "{} {query}: {}", header.0, body(&resp));
                assert!(body(&resp).contains("not covered by the signature"), "{}", body(&resp));
            }
            assert_eq!(cache_state(&b.get("/unrelated").await), "HIT", "{}: nothing was invalidated", header.0);
            let genuine = b.send(webhook("", body_text, header.clone())).await;
            assert_eq!(genuine.status, 200, "{}: {}", header.0, body(&genuine));
        }
        assert_eq!(cache_state(&b.get("/unrelated").await), "HIT");
        assert_eq!(cache_state(&b.get("/a").await), "STALE");
        // A secret sent as it is covers the whole request, query included.
        let bearer = b.send(webhook("?path=/unrelated", "", ("authorization", format!("Bearer {SECRET}")))).await;
        assert_eq!(bearer.status, 200, "{}", body(&bearer));
    });
}

fn basic(password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")))
}

fn admin_get(password: &str) -> Request {
    Request::new("GET", "https://site.test/__isr/admin").with_header("authorization", &basic(password))
}

#[test]
fn the_admin_page_cannot_be_framed() {
    let b = bench();
    block_on(async {
        for resp in [b.send(admin_get(SECRET)).await, b.send(admin_get("wrong")).await] {
            assert_eq!(resp.headers.get("content-security-policy"), Some("frame-ancestors 'none'"), "status {}", resp.status);
            assert_eq!(resp.headers.get("x-frame-options"), Some("DENY"));
        }
    });
}

#[test]
fn an_admin_secret_of_its_own_replaces_the_webhook_secret_on_the_admin_page() {
    let vars = |name: &str| match name {
        "ORIGIN_URL" => Some("http://origin.test".to_string()),
        "REVALIDATE_SECRET" => Some(SECRET.to_string()),
        "ADMIN_SECRET" => Some("admin-only".to_string()),
        _ => None,
    };
    let b = Bench::with_config(Config::from_vars(vars).unwrap());
    block_on(async {
        assert_eq!(b.send(admin_get("admin-only")).await.status, 200);
        assert_eq!(b.send(admin_get(SECRET)).await.status, 401, "the CMS's secret does not open the admin page");
        let hook = |secret: &str| webhook("?tag=posts", "", ("authorization", format!("Bearer {secret}")));
        assert_eq!(b.send(hook("admin-only")).await.status, 401, "nor does the admin's call the webhook");
        assert_eq!(b.send(hook(SECRET)).await.status, 200);
    });
    // Unset: the admin page keeps taking REVALIDATE_SECRET.
    assert_eq!(bench().config.admin_password(), SECRET);
}

#[test]
fn network_error_details_go_to_the_log_not_to_the_visitor() {
    let b = bench();
    b.origin.reply("/down", crate::testing::Reply::Network);
    block_on(async {
        let resp = b.get("/down").await;
        assert_eq!(resp.status, 502);
        let text = body(&resp);
        assert!(!text.contains("connection refused"), "{text}");
        assert!(text.contains("error"), "still a JSON error: {text}");
        assert_eq!(b.logger.count("connection refused"), 1, "{:?}", b.logger.lines());
    });
}

/// The origin's `s-maxage=3600` reached visitors: a CDN in front (or Workers Cache) would have
/// kept the page an hour after a webhook.
#[test]
fn shared_caches_in_front_get_no_lifetime_edge_isr_cannot_end() {
    let b = bench();
    let headers = [
        ("cache-control", "public, max-age=60, s-maxage=3600, stale-while-revalidate=600, stale-if-error=86400"),
        ("cdn-cache-control", "max-age=3600"),
        ("cloudflare-cdn-cache-control", "max-age=3600"),
        ("surrogate-control", "max-age=3600"),
    ];
    b.origin.reply("/cc", crate::testing::Reply::page("x", &headers));
    b.origin.reply("/cdn-only", crate::testing::Reply::page("x", &[("cache-control", "s-maxage=3600"), ("cdn-cache-control", "max-age=600")]));
    block_on(async {
        for state in ["MISS", "HIT"] {
            let resp = b.get("/cc").await;
            b.run_background().await;
            assert_eq!(cache_state(&resp), state);
            assert_eq!(resp.headers.get("cache-control"), Some("public, max-age=60, s-maxage=0"), "{state}");
            for name in ["cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control"] {
                assert_eq!(resp.headers.get(name), None, "{name} ({state})");
            }
            let resp = b.get("/cdn-only").await;
            b.run_background().await;
            assert_eq!(resp.headers.get("cache-control"), Some("public, max-age=0, must-revalidate"), "{state}");
        }
    });
}

/// A webhook or admin request whose body is over the limit costs no more than the limit: refused
/// from its `Content-Length` before anything is read, or after reading at most the limit.
#[test]
fn oversized_webhook_and_admin_bodies_are_refused_without_being_read() {
    let b = bench();
    block_on(async {
        let sixty_mib = 60 * 1024 * 1024;
        for path in ["/api/revalidate", "/__isr/admin/revalidate"] {
            // Declared: refused before the first byte is read.
            let upload = crate::testing::Upload::new(64 * 1024, sixty_mib / (64 * 1024));
            let mut req = Request::new("POST", &format!("https://site.test{path}"))
                .with_header("content-length", &sixty_mib.to_string())
                .with_header("content-type", "application/json")
                .with_header("authorization", &basic(SECRET));
            req.body = crate::http::Body::streaming(upload.clone());
            let resp = b.send(req).await;
            assert_eq!(resp.status, 413, "{path}: {}", body(&resp));
            assert!(body(&resp).contains("65536"), "{}", body(&resp));
            assert_eq!(upload.bytes_read(), 0, "{path}: nothing read into memory");
            assert_eq!(upload.bytes_discarded(), sixty_mib, "{path}: the rest is dropped before the answer");
            // Chunked (no length): read up to the limit, then refused.
            let upload = crate::testing::Upload::new(16 * 1024, sixty_mib / (16 * 1024));
            let mut req = Request::new("POST", &format!("https://site.test{path}"))
                .with_header("content-type", "application/json")
                .with_header("authorization", &basic(SECRET));
            req.body = crate::http::Body::streaming(upload.clone());
            let resp = b.send(req).await;
            assert_eq!(resp.status, 413, "{path}: {}", body(&resp));
            assert!(upload.bytes_read() <= 64 * 1024 + 16 * 1024, "{path}: read {}", upload.bytes_read());
            assert_eq!(upload.bytes_read() + upload.bytes_discarded(), sixty_mib);
        }
        // A body within the limit still works, streamed or not.
        let mut req = webhook("", r#"{"tags": ["posts"]}"#, ("authorization", format!("Bearer {SECRET}")));
        assert_eq!(b.send(req.clone()).await.status, 200);
        req.body = crate::http::Body::streaming(crate::testing::Upload::new(2, 0));
        assert_eq!(b.send(req).await.status, 400, "an empty body names nothing");
    });
}

/// Pass-through bodies go through as streams: the upload is handed to the origin unread, the
/// answer handed to the visitor unread (a served body: reading it would panic here).
#[test]
fn pass_through_bodies_stream_through_unread() {
    let b = bench();
    block_on(async {
        let upload = crate::testing::Upload::new(1024 * 1024, 60);
        let mut req = Request::new("POST", "https://site.test/upload").with_header("content-length", "62914560");
        req.body = crate::http::Body::streaming(upload.clone());
        let resp = b.send(req).await;
        assert_eq!((resp.status, cache_state(&resp)), (200, "BYPASS"));
        assert_eq!(upload.bytes_read(), 0, "the engine did not read the upload");
        let sent = b.origin.requests().pop().unwrap();
        assert!(sent.body.as_streaming().is_some(), "the origin got the visitor's stream");
        assert_eq!(sent.headers.get("content-length"), Some("62914560"));
        assert!(resp.body.as_served().is_some(), "the answer is passed on as it arrives");
        let download = b.get_with_auth("/download").await;
        assert_eq!(cache_state(&download), "BYPASS");
        assert!(download.body.as_served().is_some());
        assert_eq!(b.origin.answers_to_serve(), 2);
    });
}

/// `EventSource` asks with `Accept: text/event-stream`: such a request is passed through and
/// streamed (a MISS would wait for the whole stream, which never ends, before answering).
#[test]
fn event_stream_requests_are_passed_through_as_streams() {
    let b = bench();
    block_on(async {
        let req = Request::new("GET", "https://site.test/events").with_header("accept", "text/event-stream");
        let resp = b.send(req).await;
        assert_eq!((cache_state(&resp), resp.headers.get("x-isr-reason")), ("BYPASS", Some("event-stream")));
        assert!(resp.body.as_served().is_some(), "streamed");
        assert_eq!(b.origin.answers_to_serve(), 1);
    });
}

//! The admin page: stored pages with their state, and buttons to revalidate a path or a tag
//! and to pre-render static pages.
//!
//! Protected by HTTP Basic authentication with `ADMIN_SECRET` as the password (any user name;
//! `REVALIDATE_SECRET` when `ADMIN_SECRET` is unset): browsers ask for it once and send it with
//! the page's own calls. Those calls must be
//! same-origin JSON POSTs, so another site cannot trigger them through the visitor's browser
//! (a cross-site form cannot send `application/json`, and `Origin`/`Sec-Fetch-Site` are checked).
//! With no secret configured the admin page is off.

mod charts;
mod history;
mod search;

pub use search::PageQuery;

use crate::engine::Engine;
use crate::rules::freshness::{freshness_within, Freshness};
use crate::http::{Request, Response};
use crate::store::layout;
use crate::runtime::log::Level;
use crate::rules::meta::PageMeta;
use crate::runtime::origin::Origin;
use crate::store::KvStore;
use crate::site::template::Templates;
use crate::webhook::{self, secret_matches, Mappings};
use base64::Engine as _;
use serde::Serialize;
use std::collections::BTreeMap;

/// Path of the admin page; its actions are below it.
pub const ADMIN_PATH: &str = "/__isr/admin";

/// Most pages listed at once (one KV list call); more are a click on "next" away.
pub const ADMIN_PAGE_LIMIT: u32 = 1000;

const TEMPLATE: &str = include_str!("admin.html");

/// One row of the admin page.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct PageRow {
    /// `host/path?query`.
    pub id: String,
    /// The path (and query) to open or revalidate.
    pub path: String,
    /// `fresh`, `stale` or `expired`.
    pub state: &'static str,
    /// Marked by an invalidation.
    pub invalidated: bool,
    /// Seconds since rendered.
    pub age: u64,
    /// Revalidate time in seconds.
    pub revalidate: u32,
    /// HTTP status of the stored page.
    pub status: u16,
    /// Tags, from the tag index.
    pub tags: Vec<String>,
}

/// One page of the admin page's list.
#[derive(Debug)]
pub struct Listing {
    /// The pages.
    pub rows: Vec<PageRow>,
    /// KV's cursor of the next ones, when there are more.
    pub next_cursor: Option<String>,
}

impl<S: KvStore + 'static, O: Origin + 'static> Engine<S, O> {
    /// Answers the admin page and its actions. Every answer, refusals included, forbids
    /// framing (`frame-ancestors 'none'`, `X-Frame-Options: DENY`: no clickjacking of its
    /// buttons) and caching.
    pub async fn handle_admin(&self, req: Request) -> Response {
        self.admin_answer(req)
            .await
            .with_header("cache-control", "no-store")
            .with_header("x-robots-tag", "noindex")
            .with_header("content-security-policy", "frame-ancestors 'none'")
            .with_header("x-frame-options", "DENY")
    }

    async fn admin_answer(&self, req: Request) -> Response {
        let password = self.config.admin_password();
        if password.is_empty() {
            return Response::json_error(404, "the admin page is off: set the ADMIN_SECRET (or REVALIDATE_SECRET) secret");
        }
        if !basic_password(&req).is_some_and(|p| secret_matches(&p, password)) {
            let which = if self.config.admin_secret.trim().is_empty() { "REVALIDATE_SECRET" } else { "ADMIN_SECRET" };
            return Response::json_error(401, &format!("the admin page needs the password {which}"))
                .with_header("www-authenticate", "Basic realm=\"edge-isr admin\", charset=\"UTF-8\"");
        }
        let path = crate::rules::key::parse_url(&req.url).map(|u| u.path().to_string()).unwrap_or_default();
        let action = path.strip_prefix(ADMIN_PATH).unwrap_or("");
        let resp = match (req.method.as_str(), action) {
            ("GET", "" | "/") => self.admin_page(&req).await,
            ("POST", "/revalidate") | ("POST", "/prerender") => match same_origin_json(&req) {
                Err(why) => Response::json_error(403, why),
                Ok(()) if action == "/revalidate" => self.admin_revalidate(&req).await,
                Ok(()) => {
                    let host = self.request_host(&req);
                    Response::json(200, &serde_json::to_value(self.prerender(&host).await).unwrap_or_default())
                }
            },
            (_, "" | "/" | "/revalidate" | "/prerender") => Response::json_error(405, "method not allowed here"),
            _ => Response::json_error(404, "no such admin action"),
        };
        resp
    }

    async fn admin_page(&self, req: &Request) -> Response {
        let query = crate::rules::key::parse_url(&req.url).map(|u| PageQuery::from_url(&u)).unwrap_or_default();
        let listing = match self.page_rows(&query, &self.request_host(req)).await {
            Ok(r) => r,
            Err(e) => return Response::json_error(503, &format!("listing pages failed: {e}")),
        };
        let mut context = serde_json::json!({
            "count": listing.rows.len(),
            "pages": listing.rows,
            "next": listing.next_cursor.as_deref().map(|c| query.next_query(c)),
            "first": query.cursor.as_ref().map(|_| PageQuery { cursor: None, ..query.clone() }.next_query("")),
            "prefix": query.prefix,
            "tag": query.tag,
            "version": self.config.cache_version,
            "coordination": self.coordination_summary(),
            "coordinated": self.coordinator.is_some(),
        });
        context["stats"] = self.admin_stats().await;
        let rendered = Templates::new(&[("admin.html", TEMPLATE)])
            .map_err(|e| e.0)
            .and_then(|t| t.render("admin.html", &context).map_err(|e| e.to_string()));
        match rendered {
            Ok(html) => Response::new(200)
                .with_header("content-type", "text/html; charset=utf-8")
                .with_body(html),
            Err(e) => {
                self.log_event(Level::Error, "admin_page_failed", ADMIN_PATH, &e);
                Response::json_error(500, "the admin page failed to render")
            }
        }
    }

    /// The stored pages `query` asks for (up to [`ADMIN_PAGE_LIMIT`]) with their state and
    /// tags, and where the next ones start: two KV list calls (a tag search also reads each
    /// page's state, see [`search`]).
    pub async fn page_rows(&self, query: &PageQuery, host: &str) -> Result<Listing, crate::store::StoreError> {
        let version = &self.config.cache_version;
        let now = self.clock.now_ms();
        let (pages, next_cursor) = self.search_pages(query, host).await?;
        let members = self.store.list(&format!("t/{version}/"), None, ADMIN_PAGE_LIMIT).await?;
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &members.keys {
            if let Some((tag, page_id)) = key.name[format!("t/{version}/").len()..].split_once('/') {
                tags.entry(page_id.to_string()).or_default().push(tag.replace("%2F", "/").replace("%25", "%"));
            }
        }
        let rows = pages
            .iter()
            .filter_map(|k| {
                let id = layout::page_id_of(version, &k.name)?;
                let meta = PageMeta::decode(k.metadata.as_deref()).ok()?;
                let state = match freshness_within(&meta, now, self.config.stale_if_error_s) {
                    Freshness::Fresh => "fresh",
                    Freshness::Stale => "stale",
                    Freshness::Expired => "expired",
                };
                let path = id.find('/').map_or("/".to_string(), |i| id[i..].to_string());
                Some(PageRow {
                    tags: tags.remove(&id).unwrap_or_default(),
                    path,
                    id,
                    state,
                    invalidated: meta.invalidated_at.is_some(),
                    age: meta.age_s(now),
                    revalidate: meta.revalidate_s,
                    status: meta.status,
                })
            })
            .collect();
        Ok(Listing { rows, next_cursor })
    }

    async fn admin_revalidate(&self, req: &Request) -> Response {
        let invalidation = match webhook::parse_request(req, &Mappings::default()) {
            Ok(r) => r,
            Err(e) => return e.to_response(),
        };
        let hosts = self.invalidation_hosts(req);
        self.log_event(Level::Info, "admin_revalidate", ADMIN_PATH, "revalidation from the admin page");
        self.invalidate_and_answer(&hosts, &invalidation).await
    }

    /// The host pages are keyed under for this request (the first `CACHE_HOSTS` entry, or the
    /// request's own host).
    pub(crate) fn request_host(&self, req: &Request) -> String {
        crate::rules::key::normalise(&req.url, &self.config).map(|k| k.host).unwrap_or_default()
    }
}

/// Whether `path` is the admin page or one of its actions.
pub(crate) fn is_admin_path(path: &str) -> bool {
    path.strip_prefix(ADMIN_PATH).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The password of an HTTP Basic `Authorization` header.
fn basic_password(req: &Request) -> Option<String> {
    let value = req.headers.get("authorization")?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// Refuses cross-site calls: the body must be JSON, and `Sec-Fetch-Site` / `Origin`, when the
/// browser sends them, must say same-origin.
fn same_origin_json(req: &Request) -> Result<(), &'static str> {
    let json = req
        .headers
        .get("content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err("admin actions take a JSON body (content-type: application/json)");
    }
    if let Some(site) = req.headers.get("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err("admin actions must come from the admin page itself");
        }
    }
    if let Some(origin) = req.headers.get("origin") {
        let own = crate::rules::key::parse_url(&req.url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        if origin != own {
            return Err("admin actions must come from the admin page itself");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{body, Bench};
    use futures::executor::block_on;

    fn bench() -> Bench {
        let config = crate::rules::config::Config::from_vars(|n| match n {
            "ORIGIN_URL" => Some("http://origin.test".into()),
            "REVALIDATE_SECRET" => Some("s3cret".into()),
            _ => None,
        })
        .unwrap();
        Bench::with_config(config)
    }

    fn basic(password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}")))
    }

    fn admin(method: &str, action: &str, password: &str) -> Request {
        Request::new(method, &format!("https://site.test{ADMIN_PATH}{action}")).with_header("authorization", &basic(password))
    }

    #[test]
    fn the_admin_page_needs_the_secret() {
        let b = bench();
        block_on(async {
            let none = b.send(Request::new("GET", &format!("https://site.test{ADMIN_PATH}"))).await;
            assert_eq!(none.status, 401);
            assert!(none.headers.get("www-authenticate").unwrap().starts_with("Basic"));
            assert_eq!(b.send(admin("GET", "", "wrong")).await.status, 401);
            assert_eq!(b.send(admin("GET", "", "s3cret")).await.status, 200);
            let off = Bench::new().get(ADMIN_PATH).await;
            assert_eq!(off.status, 404, "no secret: no admin page");
        });
    }

    #[test]
    fn the_admin_page_lists_pages_with_state_and_tags() {
        let b = bench();
        b.origin.reply("/a", crate::testing::Reply::page("a", &[("cache-tag", "posts, post/1"), ("cache-control", "s-maxage=100")]));
        block_on(async {
            b.get("/a").await;
            b.get("/b").await;
            b.run_background().await;
            b.clock.advance(5_000);
            let rows = b.engine().page_rows(&PageQuery::default(), "site.test").await.unwrap().rows;
            assert_eq!(rows.len(), 2);
            let a = rows.iter().find(|r| r.path == "/a").unwrap();
            assert_eq!((a.state, a.age, a.revalidate, a.status), ("fresh", 5, 100, 200));
            assert_eq!(a.tags, vec!["post/1", "posts"]);
            let html = body(&b.send(admin("GET", "", "s3cret")).await);
            assert!(html.contains("<code>site.test/a</code>"), "{html}");
            assert!(html.contains(r#"data-value="posts""#));
        });
    }

    #[test]
    fn revalidating_a_tag_from_the_admin_page_marks_its_pages_stale() {
        let b = bench();
        b.origin.reply("/t", crate::testing::Reply::page("t", &[("cache-tag", "posts")]));
        block_on(async {
            b.get("/t").await;
            b.run_background().await;
            b.clock.advance(1_500);
            let call = admin("POST", "/revalidate", "s3cret")
                .with_header("content-type", "application/json")
                .with_header("origin", "https://site.test")
                .with_header("sec-fetch-site", "same-origin");
            let mut call = call;
            call.body = r#"{"tags": ["posts"]}"#.into();
            let resp = b.send(call).await;
            assert_eq!(resp.status, 200, "{}", body(&resp));
            let rows = b.engine().page_rows(&PageQuery::default(), "site.test").await.unwrap().rows;
            assert_eq!((rows[0].state, rows[0].invalidated), ("stale", true));
        });
    }

    #[test]
    fn cross_site_admin_calls_are_refused() {
        let b = bench();
        block_on(async {
            let mut form = admin("POST", "/revalidate", "s3cret").with_header("content-type", "application/x-www-form-urlencoded");
            form.body = "tags=posts".into();
            assert_eq!(b.send(form).await.status, 403);
            let mut other = admin("POST", "/revalidate", "s3cret")
                .with_header("content-type", "application/json")
                .with_header("origin", "https://evil.test");
            other.body = r#"{"tags": ["posts"]}"#.into();
            assert_eq!(b.send(other).await.status, 403);
            let mut fetched = admin("POST", "/revalidate", "s3cret")
                .with_header("content-type", "application/json")
                .with_header("sec-fetch-site", "cross-site");
            fetched.body = r#"{"tags": ["posts"]}"#.into();
            assert_eq!(b.send(fetched).await.status, 403);
            assert_eq!(b.send(admin("DELETE", "", "s3cret")).await.status, 405);
            assert_eq!(b.send(admin("GET", "/nope", "s3cret")).await.status, 404);
        });
    }

    #[test]
    fn past_a_thousand_pages_the_admin_page_goes_on_with_kvs_cursor() {
        let b = bench();
        let now = crate::runtime::clock::Clock::now_ms(&b.clock);
        block_on(async {
            for i in 0..1001 {
                if i % 500 == 0 {
                    b.kv.begin_invocation();
                }
                let opts = crate::store::PutOptions { metadata: Some(crate::testing::page_meta(now, 60).encode().unwrap()), expiration_ttl: None };
                b.kv.put(&layout::page_key("1", &format!("site.test/p/{i:04}")), "x".into(), opts).await.unwrap();
            }
            let html = body(&b.send(admin("GET", "", "s3cret")).await);
            assert_eq!(html.matches("<tr data-page=").count(), 1000);
            assert!(html.contains("1000 page(s) listed"), "{html}");
            let next = html.split("id=\"next-page\" href=\"").nth(1).expect("a next-page link").split('"').next().unwrap().replace("&amp;", "&");
            let second = body(&b.send(admin("GET", &next, "s3cret")).await);
            assert_eq!(second.matches("<tr data-page=").count(), 1, "{second}");
            assert!(second.contains("<code>site.test/p/1000</code>"));
            assert!(!second.contains("id=\"next-page\""));
            assert!(second.contains("id=\"first-page\""));
            // A smaller page size pages the same way.
            let small = body(&b.send(admin("GET", "?limit=2&prefix=/p/09", "s3cret")).await);
            assert_eq!(small.matches("<tr data-page=").count(), 2);
            assert!(small.contains("limit=2"), "the next link keeps the page size");
        });
    }

    #[test]
    fn the_admin_page_searches_by_path_prefix_and_by_tag() {
        let b = bench();
        b.origin.reply("/blog/a", crate::testing::Reply::page("a", &[("cache-tag", "posts, post/a")]));
        b.origin.reply("/blog/b", crate::testing::Reply::page("b", &[("cache-tag", "posts")]));
        b.origin.reply("/about", crate::testing::Reply::page("c", &[("cache-tag", "pages")]));
        block_on(async {
            for p in ["/blog/a", "/blog/b", "/about"] {
                b.get(p).await;
            }
            b.run_background().await;
            let engine = b.engine();
            let paths = |rows: Vec<PageRow>| rows.into_iter().map(|r| r.path).collect::<Vec<_>>();
            let q = |prefix: &str, tag: &str| PageQuery { prefix: prefix.into(), tag: tag.into(), ..PageQuery::default() };
            assert_eq!(paths(engine.page_rows(&q("/blog/", ""), "site.test").await.unwrap().rows), ["/blog/a", "/blog/b"]);
            assert_eq!(paths(engine.page_rows(&q("", "posts"), "site.test").await.unwrap().rows), ["/blog/a", "/blog/b"]);
            assert_eq!(paths(engine.page_rows(&q("", "post/a"), "site.test").await.unwrap().rows), ["/blog/a"]);
            assert_eq!(paths(engine.page_rows(&q("/blog/b", "posts"), "site.test").await.unwrap().rows), ["/blog/b"]);
            assert!(engine.page_rows(&q("", "nope"), "site.test").await.unwrap().rows.is_empty());
            let html = body(&b.send(admin("GET", "?tag=post%2Fa", "s3cret")).await);
            assert_eq!(html.matches("<tr data-page=").count(), 1, "{html}");
            assert!(html.contains("tagged <code>post/a</code>"));
            assert!(html.contains(r#"name="tag" value="post/a""#));
        });
    }

    #[test]
    fn the_admin_page_charts_the_last_hour_of_every_isolate() {
        let b = bench();
        b.origin.reply("/a", crate::testing::Reply::page("a", &[]));
        block_on(async {
            let html = body(&b.send(admin("GET", "", "s3cret")).await);
            assert_eq!(html.matches("no data in the last hour").count(), 4, "{html}");
            let other = b.other_isolate(0);
            b.get("/a").await;
            b.get("/a").await;
            other.get("/a").await;
            b.run_background().await;
            other.run_background().await;
            b.clock.advance(60_000);
            b.get("/a").await;
            other.get("/a").await;
            b.run_background().await;
            other.run_background().await;
            let html = body(&b.send(admin("GET", "", "s3cret")).await);
            for title in ["Hit ratio", "Renders", "Failures", "Origin latency"] {
                assert!(html.contains(&format!(r#"data-chart="{title}""#)), "{title}");
            }
            // Written: b's MISS, then HIT from its own render in flight; the other isolate's
            // MISS. Not written yet: b's STALE of this minute and its regeneration (the admin
            // page's own isolate shows its interval in progress).
            assert!(html.contains("HIT 1 · STALE 1 · MISS 2"), "{html}");
            assert!(html.contains("50% of 4"), "{html}");
            assert!(html.contains("3 renders, 1 of them background regenerations"), "{html}");
            assert!(html.contains(r#"<span id="stats-written">2</span>"#), "{html}");
            assert!(html.contains("<polyline"), "two minutes of data: lines");
            assert!(html.contains("−59 min") && html.contains(">now<") && html.contains(">100%<"));
        });
    }

    #[test]
    fn with_counters_off_the_admin_page_says_so() {
        let config = crate::rules::config::Config::from_vars(|n| match n {
            "ORIGIN_URL" => Some("http://origin.test".into()),
            "REVALIDATE_SECRET" => Some("s3cret".into()),
            "STATS_INTERVAL_S" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        let b = Bench::with_config(config);
        block_on(async {
            b.get("/a").await;
            b.clock.advance(120_000);
            b.get("/a").await;
            b.run_background().await;
            assert!(!b.kv.visible_keys().iter().any(|k| k.starts_with("m/")));
            let html = body(&b.send(admin("GET", "", "s3cret")).await);
            assert!(html.contains("id=\"stats-off\""), "{html}");
        });
    }
}

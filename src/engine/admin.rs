//! The admin page: stored pages with their state, and buttons to revalidate a path or a tag
//! and to pre-render static pages.
//!
//! Protected by HTTP Basic authentication with `ADMIN_SECRET` as the password (any user name;
//! `REVALIDATE_SECRET` when `ADMIN_SECRET` is unset): browsers ask for it once and send it with
//! the page's own calls. Those calls must be
//! same-origin JSON POSTs, so another site cannot trigger them through the visitor's browser
//! (a cross-site form cannot send `application/json`, and `Origin`/`Sec-Fetch-Site` are checked).
//! With no secret configured the admin page is off.

use super::Engine;
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

/// Most pages listed (one KV list call).
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
            ("GET", "" | "/") => self.admin_page().await,
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

    async fn admin_page(&self) -> Response {
        let (pages, truncated) = match self.page_rows().await {
            Ok(r) => r,
            Err(e) => return Response::json_error(503, &format!("listing pages failed: {e}")),
        };
        let context = serde_json::json!({
            "count": pages.len(),
            "pages": pages,
            "truncated": truncated,
            "version": self.config.cache_version,
            "coordination": self.coordination_summary(),
            "coordinated": self.coordinator.is_some(),
        });
        let rendered = Templates::new(&[("admin.html", TEMPLATE)])
            .map_err(|e| e.0)
            .and_then(|t| t.render("admin.html", &context).map_err(|e| e.to_string()));
        match rendered {
            Ok(html) => Response::new(200)
                .with_header("content-type", "text/html; charset=utf-8")
                .with_body(html),
            Err(e) => {
                self.log(Level::Error, &format!("admin page: {e}"));
                Response::json_error(500, "the admin page failed to render")
            }
        }
    }

    /// Every stored page (up to [`ADMIN_PAGE_LIMIT`]) with its state and tags: two KV list calls.
    pub async fn page_rows(&self) -> Result<(Vec<PageRow>, bool), crate::store::StoreError> {
        let version = &self.config.cache_version;
        let now = self.clock.now_ms();
        let pages = self.store.list(&layout::page_prefix(version, ""), None, ADMIN_PAGE_LIMIT).await?;
        let members = self.store.list(&format!("t/{version}/"), None, ADMIN_PAGE_LIMIT).await?;
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &members.keys {
            if let Some((tag, page_id)) = key.name[format!("t/{version}/").len()..].split_once('/') {
                tags.entry(page_id.to_string()).or_default().push(tag.replace("%2F", "/").replace("%25", "%"));
            }
        }
        let rows = pages
            .keys
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
        Ok((rows, !pages.complete))
    }

    async fn admin_revalidate(&self, req: &Request) -> Response {
        let invalidation = match webhook::parse_request(req, &Mappings::default()) {
            Ok(r) => r,
            Err(e) => return e.to_response(),
        };
        let hosts = self.invalidation_hosts(req);
        self.log(Level::Info, "revalidation from the admin page");
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
            let rows = b.engine().page_rows().await.unwrap().0;
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
            let rows = b.engine().page_rows().await.unwrap().0;
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
}

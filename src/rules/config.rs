//! Worker configuration, read from `[vars]` in `wrangler.toml` (and secrets) once per request.
//!
//! Parsing is a pure function of a variable lookup so that every default and every error
//! message is unit-tested; the adapter passes `env.var(..)`.

use std::fmt;
use url::Url;

/// What to do with a trailing slash on a path (the root `/` is never changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailingSlash {
    /// `/a` and `/a/` are different pages (the safe default: the origin decides).
    Keep,
    /// `/a/` is cached and fetched as `/a`.
    Strip,
    /// `/a` is cached and fetched as `/a/` (except paths whose last segment has a dot, like `/feed.xml`).
    Add,
}

/// Which query parameters are part of the cache key (and forwarded to the origin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryParams {
    /// Keep every parameter except well-known tracking ones (`utm_*`, `fbclid`, `gclid`, ...).
    AllButTracking,
    /// Keep only these names; an entry ending in `*` matches a prefix.
    Only(Vec<String>),
}

/// Tracking parameters that never change page content; dropped even under `*`.
pub const TRACKING_PARAMS: &[&str] = &["utm_*", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "ref_src"];

impl QueryParams {
    /// Whether parameter `name` is kept in the key.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            QueryParams::AllButTracking => !TRACKING_PARAMS.iter().any(|p| name_matches(p, name)),
            QueryParams::Only(list) => list.iter().any(|p| name_matches(p, name)),
        }
    }
}

/// `pattern` is an exact name, or a prefix followed by `*`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Everything the engine needs to know about the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the upstream that renders pages (`ORIGIN_URL`). With [`Config::origin_service`]
    /// set and `ORIGIN_URL` unset, [`UNSET_ORIGIN`] (only `CMS_URL`'s default then).
    pub origin: Url,
    /// Name of a service binding whose Worker renders the pages no route renders
    /// (`ORIGIN_SERVICE`), in place of `ORIGIN_URL`.
    pub origin_service: Option<String>,
    /// Revalidate time when the origin says nothing (`DEFAULT_REVALIDATE`, seconds).
    pub default_revalidate_s: u32,
    /// Revalidate time for 404/410 pages when the origin says nothing (`NOT_FOUND_REVALIDATE`).
    pub not_found_revalidate_s: u32,
    /// Cache namespace, part of every key (`CACHE_VERSION`): change it to start from an empty cache.
    pub cache_version: String,
    /// Query parameters kept in the key (`CACHE_QUERY_PARAMS`: comma list, `*` for all but tracking).
    pub query_params: QueryParams,
    /// Cookies whose presence means "personalised: do not cache" (`BYPASS_COOKIES`).
    pub bypass_cookies: Vec<String>,
    /// Host names the cache answers for (`CACHE_HOSTS`); others are keyed as the first one.
    /// Empty: the request's own host.
    pub cache_hosts: Vec<String>,
    /// Trailing slash policy (`TRAILING_SLASH`: keep, strip or add).
    pub trailing_slash: TrailingSlash,
    /// How long a visitor waits for the origin on a MISS (`ORIGIN_TIMEOUT_MS`).
    pub origin_timeout_ms: u64,
    /// How long a background regeneration waits for the origin (`REGENERATE_TIMEOUT_MS`, < 30 s).
    pub regenerate_timeout_ms: u64,
    /// Path of the on-demand revalidation webhook (`REVALIDATE_PATH`).
    pub revalidate_path: String,
    /// Shared secret of the webhook (`REVALIDATE_SECRET`, a secret, not a `[vars]` entry).
    /// Empty: the webhook rejects every request.
    pub revalidate_secret: String,
    /// Password of the admin page (`ADMIN_SECRET`, a secret), kept apart from the webhook's so
    /// that the CMS holding `REVALIDATE_SECRET` cannot open the admin page. Empty: the admin
    /// page takes `REVALIDATE_SECRET` (see [`Config::admin_password`]).
    pub admin_secret: String,
    /// Rules mapping a CMS's own webhook payload to tags and paths (`WEBHOOK_MAPPINGS`, JSON).
    pub webhook_mappings: String,
    /// Base URL of the headless CMS that template routes read JSON from (`CMS_URL`); data URLs
    /// starting with `/` are joined to it. Default: `ORIGIN_URL`.
    pub cms_url: Url,
    /// Longest time a stale page hides a failing origin (`STALE_IF_ERROR_S`, seconds from when
    /// it went stale; the origin's `stale-if-error` may ask for less). Past it, the page is
    /// rendered while the visitor waits, and a failure reaches the visitor.
    pub stale_if_error_s: u32,
    /// How often each isolate writes its counters to KV (`STATS_INTERVAL_S`, 60 to 3600
    /// seconds; 0 turns the counters and the admin page's charts off). Default 60.
    pub stats_interval_s: u64,
    /// Whether Workers Cache in front of the worker is given lifetimes and tags and purged
    /// (`WORKERS_CACHE`: `on` or `off`, default `off`; see [`crate::tier`]).
    pub workers_cache: bool,
    /// Seconds the tier may serve a page past its lifetime while it asks the worker again
    /// (`WORKERS_CACHE_SWR_S`, default 60).
    pub workers_cache_swr_s: u32,
    /// TEST ONLY: `WORKERS_CACHE_TEST_DOUBLE = "record"` makes purges go to the recording test
    /// double ([`crate::tier::double`]) instead of `ctx.cache`, which the local runtime lacks.
    pub workers_cache_test_double: bool,
}

/// A variable that is missing or malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration variable {}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Default of `STALE_IF_ERROR_S`: one day.
pub const DEFAULT_STALE_IF_ERROR_S: u64 = 86_400;
/// `ORIGIN_URL` when only `ORIGIN_SERVICE` is set: nothing is fetched from it but data URLs of
/// template routes when `CMS_URL` is unset too, which then fail naming this host.
pub const UNSET_ORIGIN: &str = "http://origin-url-not-set.invalid/";

/// Longest time background work may run after a response on Workers (`waitUntil`), in ms.
pub const WAIT_UNTIL_LIMIT_MS: u64 = 30_000;

impl Config {
    /// Reads the configuration through `var` (a lookup of `[vars]` by name).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let origin_service = get("ORIGIN_SERVICE");
        if let Some(name) = &origin_service {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError {
                    var: "ORIGIN_SERVICE",
                    problem: format!("{name:?} is not a binding name (letters, digits, '_'): name the `binding` of a [[services]] entry in wrangler.toml"),
                });
            }
        }
        let origin_raw = match (get("ORIGIN_URL"), &origin_service) {
            (Some(url), _) => url,
            (None, Some(_)) => UNSET_ORIGIN.to_string(),
            (None, None) => {
                return Err(ConfigError {
                    var: "ORIGIN_URL",
                    problem: "is not set; set it to the base URL of the site to cache (or ORIGIN_SERVICE to a Worker's service binding)".into(),
                })
            }
        };
        let origin = crate::rules::key::parse_url(&origin_raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(ConfigError {
                var: "ORIGIN_URL",
                problem: format!("{origin_raw:?} is not an absolute http(s) URL"),
            })?;
        let number = |name: &'static str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n <= max).ok_or(ConfigError {
                    var: name,
                    problem: format!("{v:?} is not a whole number between 0 and {max}"),
                }),
            }
        };
        let one_year = 365 * 24 * 3600;
        let cache_version = get("CACHE_VERSION").unwrap_or_else(|| "1".into());
        if cache_version.len() > 32 || !cache_version.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(ConfigError {
                var: "CACHE_VERSION",
                problem: "use at most 32 letters, digits, '.', '_' or '-'".into(),
            });
        }
        let list = |name: &'static str| -> Vec<String> {
            get(name)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };
        let params = list("CACHE_QUERY_PARAMS");
        let query_params = if params.iter().any(|p| p == "*") {
            QueryParams::AllButTracking
        } else {
            QueryParams::Only(params)
        };
        let trailing_slash = match get("TRAILING_SLASH").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("keep") => TrailingSlash::Keep,
            Some("strip") => TrailingSlash::Strip,
            Some("add") => TrailingSlash::Add,
            Some(other) => {
                return Err(ConfigError {
                    var: "TRAILING_SLASH",
                    problem: format!("{other:?} is not one of keep, strip, add"),
                })
            }
        };
        let revalidate_path = get("REVALIDATE_PATH").unwrap_or_else(|| "/api/revalidate".into());
        if !revalidate_path.starts_with('/') {
            return Err(ConfigError {
                var: "REVALIDATE_PATH",
                problem: "must start with '/'".into(),
            });
        }
        let cms_url = match get("CMS_URL") {
            None => origin.clone(),
            Some(raw) => crate::rules::key::parse_url(&raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or(ConfigError {
                    var: "CMS_URL",
                    problem: format!("{raw:?} is not an absolute http(s) URL"),
                })?,
        };
        let workers_cache = match get("WORKERS_CACHE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("off") | Some("false") | Some("0") => false,
            Some("on") | Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError {
                    var: "WORKERS_CACHE",
                    problem: format!("{other:?} is not on or off"),
                })
            }
        };
        let workers_cache_test_double = match get("WORKERS_CACHE_TEST_DOUBLE").as_deref() {
            None => false,
            Some("record") => true,
            Some(other) => {
                return Err(ConfigError {
                    var: "WORKERS_CACHE_TEST_DOUBLE",
                    problem: format!("{other:?} is not \"record\" (a test double for the e2e suite; leave it unset)"),
                })
            }
        };
        Ok(Config {
            workers_cache,
            workers_cache_swr_s: number("WORKERS_CACHE_SWR_S", 60, one_year)? as u32,
            workers_cache_test_double,
            cms_url,
            origin,
            origin_service,
            default_revalidate_s: number("DEFAULT_REVALIDATE", 60, one_year)? as u32,
            not_found_revalidate_s: number("NOT_FOUND_REVALIDATE", 30, one_year)? as u32,
            cache_version,
            query_params,
            bypass_cookies: get("BYPASS_COOKIES").map_or_else(default_bypass_cookies, |_| list("BYPASS_COOKIES")),
            cache_hosts: list("CACHE_HOSTS").into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            trailing_slash,
            origin_timeout_ms: number("ORIGIN_TIMEOUT_MS", 10_000, 120_000)?,
            regenerate_timeout_ms: number("REGENERATE_TIMEOUT_MS", 20_000, WAIT_UNTIL_LIMIT_MS - 5_000)?,
            revalidate_path,
            revalidate_secret: get("REVALIDATE_SECRET").unwrap_or_default(),
            admin_secret: get("ADMIN_SECRET").unwrap_or_default(),
            webhook_mappings: get("WEBHOOK_MAPPINGS").unwrap_or_default(),
            stale_if_error_s: number("STALE_IF_ERROR_S", DEFAULT_STALE_IF_ERROR_S, one_year)? as u32,
            stats_interval_s: stats_interval(number("STATS_INTERVAL_S", 60, 3_600)?)?,
        })
    }

    /// The admin page's password: `ADMIN_SECRET`, or `REVALIDATE_SECRET` when that is unset or
    /// blank (empty: the admin page is off).
    pub fn admin_password(&self) -> &str {
        if self.admin_secret.trim().is_empty() {
            self.revalidate_secret.trim()
        } else {
            self.admin_secret.trim()
        }
    }

    /// A configuration for tests: origin `http://origin.test`, defaults everywhere else.
    pub fn for_origin(origin: &str) -> Config {
        let origin = origin.to_string();
        Config::from_vars(move |name| (name == "ORIGIN_URL").then(|| origin.clone()))
            .expect("test origin URL is valid")
    }
}

/// `STATS_INTERVAL_S` must be 0 (off) or at least a minute: the charts are per minute, and
/// shorter intervals would only multiply KV writes.
fn stats_interval(s: u64) -> Result<u64, ConfigError> {
    if s != 0 && s < 60 {
        return Err(ConfigError { var: "STATS_INTERVAL_S", problem: format!("{s} is under 60 (use 0 to turn the counters off)") });
    }
    Ok(s)
}

/// Session and preview cookies of common frameworks: their presence means a personalised page.
fn default_bypass_cookies() -> Vec<String> {
    ["__session", "__prerender_bypass", "__next_preview_data", "wordpress_logged_in_*"]
        .into_iter()
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        move |n| owned.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_apply_when_only_the_origin_is_set() {
        let c = Config::from_vars(vars(&[("ORIGIN_URL", "https://example.com")])).unwrap();
        assert_eq!(c.default_revalidate_s, 60);
        assert_eq!(c.not_found_revalidate_s, 30);
        assert_eq!(c.cache_version, "1");
        assert_eq!(c.query_params, QueryParams::Only(vec![]));
        assert_eq!(c.trailing_slash, TrailingSlash::Keep);
        assert!(c.bypass_cookies.contains(&"__session".to_string()));
        assert_eq!(c.revalidate_path, "/api/revalidate");
        assert_eq!(c.stale_if_error_s, 86_400);
        let short = Config::from_vars(vars(&[("ORIGIN_URL", "https://example.com"), ("STALE_IF_ERROR_S", "0")])).unwrap();
        assert_eq!(short.stale_if_error_s, 0);
        assert_eq!(c.stats_interval_s, 60);
        let off = Config::from_vars(vars(&[("ORIGIN_URL", "https://example.com"), ("STATS_INTERVAL_S", "0")])).unwrap();
        assert_eq!(off.stats_interval_s, 0);
    }

    #[test]
    fn workers_cache_is_off_unless_switched_on() {
        let base = ("ORIGIN_URL", "https://example.com");
        let c = Config::from_vars(vars(&[base])).unwrap();
        assert!(!c.workers_cache && !c.workers_cache_test_double);
        assert_eq!(c.workers_cache_swr_s, 60);
        for on in ["on", "ON", "true", "1"] {
            assert!(Config::from_vars(vars(&[base, ("WORKERS_CACHE", on)])).unwrap().workers_cache, "{on}");
        }
        assert!(!Config::from_vars(vars(&[base, ("WORKERS_CACHE", "off")])).unwrap().workers_cache);
        assert_eq!(Config::from_vars(vars(&[base, ("WORKERS_CACHE", "yes please")])).unwrap_err().var, "WORKERS_CACHE");
        assert!(Config::from_vars(vars(&[base, ("WORKERS_CACHE_TEST_DOUBLE", "record")])).unwrap().workers_cache_test_double);
        assert_eq!(Config::from_vars(vars(&[base, ("WORKERS_CACHE_TEST_DOUBLE", "kv")])).unwrap_err().var, "WORKERS_CACHE_TEST_DOUBLE");
    }

    #[test]
    fn missing_or_bad_values_name_the_variable() {
        assert_eq!(Config::from_vars(vars(&[])).unwrap_err().var, "ORIGIN_URL");
        assert_eq!(Config::from_vars(vars(&[("ORIGIN_URL", "ftp://x")])).unwrap_err().var, "ORIGIN_URL");
        let bad = [
            ("DEFAULT_REVALIDATE", "soon"),
            ("CACHE_VERSION", "a/b"),
            ("TRAILING_SLASH", "maybe"),
            ("REGENERATE_TIMEOUT_MS", "60000"),
            ("REVALIDATE_PATH", "api"),
            ("CMS_URL", "/api"),
            ("STALE_IF_ERROR_S", "-1"),
            ("STALE_IF_ERROR_S", "1d"),
            ("STATS_INTERVAL_S", "30"),
            ("STATS_INTERVAL_S", "7200"),
        ];
        for (name, value) in bad {
            let err = Config::from_vars(vars(&[("ORIGIN_URL", "http://o.test"), (name, value)])).unwrap_err();
            assert_eq!(err.var, name, "{err}");
        }
    }

    #[test]
    fn an_origin_service_makes_the_origin_url_optional() {
        let c = Config::from_vars(vars(&[("ORIGIN_SERVICE", "APP")])).unwrap();
        assert_eq!(c.origin_service.as_deref(), Some("APP"));
        assert_eq!(c.origin.as_str(), UNSET_ORIGIN);
        assert_eq!(c.cms_url, c.origin);
        let both = Config::from_vars(vars(&[("ORIGIN_SERVICE", "APP"), ("ORIGIN_URL", "https://cms.test")])).unwrap();
        assert_eq!(both.cms_url.as_str(), "https://cms.test/");
        assert_eq!(Config::for_origin("http://o.test").origin_service, None);
        let err = Config::from_vars(vars(&[("ORIGIN_SERVICE", "my-app")])).unwrap_err();
        assert_eq!(err.var, "ORIGIN_SERVICE", "{err}");
    }

    #[test]
    fn query_allow_list_supports_prefixes_and_star() {
        let c = Config::from_vars(vars(&[("ORIGIN_URL", "http://o.test"), ("CACHE_QUERY_PARAMS", "page, filter_*")])).unwrap();
        assert!(c.query_params.keeps("page"));
        assert!(c.query_params.keeps("filter_color"));
        assert!(!c.query_params.keeps("utm_source"));
        let all = Config::from_vars(vars(&[("ORIGIN_URL", "http://o.test"), ("CACHE_QUERY_PARAMS", "*")])).unwrap();
        assert!(all.query_params.keeps("anything"));
        assert!(!all.query_params.keeps("utm_campaign"));
        assert!(!all.query_params.keeps("fbclid"));
    }
}

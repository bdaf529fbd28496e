//! The coordinator on Workers: a Durable Object class (`Coordinator`, SQLite storage) that
//! keeps the invalidation log and the regeneration claims for every location, and the client
//! the engine uses to reach it through the `COORDINATOR` binding.
//!
//! Storage: the log is a SQLite table (`seq` with `AUTOINCREMENT`, so positions are never
//! reused after pruning; `at`; the entry as JSON): one row written per invalidation, plus one
//! delete per entry pruned after [`LOG_RETENTION_MS`]. Claims live in the object's memory (no
//! row writes): if the object is evicted or restarted, claims in flight are forgotten, which
//! costs at most one extra regeneration per page; they also expire by themselves. The Workers
//! Cache purge planner ([`crate::coordination::purges`]) is kept in memory and written through
//! to one row of a `state` table on every change (one row written per `record` with targets,
//! per `take` that hands something out or reclaims a lease, and per `done`), and read back
//! when the object starts: an eviction never loses a purge.
//!
//! The class is exported whenever this crate is built for Workers (it is a class, not an
//! event handler, so it does not clash with a library user's own `fetch`): bind it in the
//! user's `wrangler.toml` with `class_name = "Coordinator"` to get the same guarantees.

use super::js;
use crate::coordination::cache::COORDINATOR_TIMEOUT_MS;
use crate::coordination::claims::{ClaimAnswer, Claims, Version};
use crate::coordination::coordinator::{Coordinator as CoordinatorApi, CoordinatorError, CoordinatorResult};
use crate::coordination::log::{LogSlice, NewEntry, LOG_RETENTION_MS, MAX_LOG_ENTRIES};
use crate::coordination::protocol::{self, ClaimRequest, Recorded, ReleaseRequest};
use crate::coordination::purges::{self, PurgeReport, RecordRequest, TakeRequest, Taken};
use crate::runtime::clock::Millis;
use crate::tier::purge::{PurgePlanner, PurgeTarget};
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use worker::{durable_object, Date, Delay, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State};

/// Name of the Durable Object namespace binding (see `wrangler.toml`).
pub const COORDINATOR_BINDING: &str = "COORDINATOR";

/// The Durable Object. One instance (named [`protocol::OBJECT_NAME`]) serves every location.
#[durable_object(fetch)]
pub struct Coordinator {
    sql: SqlStorage,
    claims: RefCell<Claims>,
    planner: RefCell<PurgePlanner>,
}

/// The `state` table's row holding the purge planner.
const PLANNER_ROW: &str = "purge_planner";

impl DurableObject for Coordinator {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(e) = sql.exec(
            "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, entry TEXT NOT NULL)",
            None,
        ) {
            log_error("coordinator_table_failed", &format!("creating the log table failed: {e}"));
        }
        if let Err(e) = sql.exec("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)", None) {
            log_error("coordinator_table_failed", &format!("creating the state table failed: {e}"));
        }
        let planner = load_planner(&sql).unwrap_or_else(|| PurgePlanner::new(now()));
        Coordinator {
            sql,
            claims: RefCell::new(Claims::new()),
            planner: RefCell::new(planner),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let url = req.url()?;
        let body = if req.method() == worker::Method::Post { req.text().await? } else { String::new() };
        let answer = match (req.method(), url.path()) {
            (worker::Method::Post, "/record") => serde_json::from_str::<RecordRequest>(&body).map_err(|e| (400, e.to_string())).and_then(|r| self.record(r.entry, r.purge)),
            (worker::Method::Get, "/log") => self.log_since(protocol::since_param(url.query())),
            (worker::Method::Post, "/purge/take") => serde_json::from_str::<TakeRequest>(&body).map_err(|e| (400, e.to_string())).and_then(|t| self.take_purges(t)),
            (worker::Method::Post, "/purge/done") => serde_json::from_str::<PurgeReport>(&body).map_err(|e| (400, e.to_string())).and_then(|r| self.report_purges(&r)),
            (worker::Method::Post, "/claim") => serde_json::from_str::<ClaimRequest>(&body).map_err(|e| (400, e.to_string())).map(|c| {
                let answer = self.claims.borrow_mut().claim(&c.page, c.version, now(), c.ttl_ms);
                serde_json::to_string(&answer).unwrap_or_default()
            }),
            (worker::Method::Post, "/release") => serde_json::from_str::<ReleaseRequest>(&body).map_err(|e| (400, e.to_string())).map(|r| {
                self.claims.borrow_mut().release(&r.page, r.version, r.retry_at);
                "{}".to_string()
            }),
            _ => Err((404, "no such coordinator request".to_string())),
        };
        match answer {
            Ok(json) => Response::ok(json),
            Err((status, message)) => Response::error(serde_json::json!({ "error": message }).to_string(), status),
        }
    }
}

type Answer = Result<String, (u16, String)>;

fn now() -> Millis {
    Date::now().as_millis()
}

fn log_error(event: &str, message: &str) {
    crate::runtime::log::Logger::event(&super::runtime::ConsoleLogger, crate::runtime::log::Level::Error, event, "", message);
}

/// The planner as stored, if there is a readable row.
fn load_planner(sql: &SqlStorage) -> Option<PurgePlanner> {
    let cursor = sql.exec("SELECT value FROM state WHERE name = ?", vec![PLANNER_ROW.to_string().into()]).ok()?;
    let row = cursor.raw().next()?.ok()?;
    let Some(SqlStorageValue::String(text)) = row.first() else {
        return None;
    };
    match serde_json::from_str(text) {
        Ok(planner) => Some(planner),
        Err(e) => {
            log_error("purge_planner_unreadable", &format!("starting with an empty purge planner: {e}"));
            None
        }
    }
}

fn sql_error(e: worker::Error) -> (u16, String) {
    (500, format!("coordinator storage: {e}"))
}

fn integer(v: Option<&SqlStorageValue>) -> u64 {
    match v {
        Some(SqlStorageValue::Integer(i)) => (*i).max(0) as u64,
        Some(SqlStorageValue::Float(f)) => f.max(0.0) as u64,
        _ => 0,
    }
}

impl Coordinator {
    /// Writes the planner's row (before the answer that depends on it goes out).
    fn save_planner(&self) -> Result<(), (u16, String)> {
        let text = serde_json::to_string(&*self.planner.borrow()).map_err(|e| (500, e.to_string()))?;
        self.sql
            .exec("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", vec![PLANNER_ROW.to_string().into(), text.into()])
            .map_err(sql_error)?;
        Ok(())
    }

    fn take_purges(&self, request: TakeRequest) -> Answer {
        let before = self.planner.borrow().clone();
        let taken: Taken = purges::take(&mut self.planner.borrow_mut(), request, now());
        if *self.planner.borrow() != before {
            self.save_planner()?;
        }
        serde_json::to_string(&taken).map_err(|e| (500, e.to_string()))
    }

    fn report_purges(&self, report: &PurgeReport) -> Answer {
        purges::report(&mut self.planner.borrow_mut(), report, now());
        self.save_planner()?;
        Ok("{}".to_string())
    }

    fn record(&self, entry: NewEntry, purge: Vec<PurgeTarget>) -> Answer {
        let text = serde_json::to_string(&entry).map_err(|e| (400, e.to_string()))?;
        let at = entry.at as i64;
        let cursor = self
            .sql
            .exec("INSERT INTO log (at, entry) VALUES (?, ?) RETURNING seq", vec![SqlStorageValue::Integer(at), text.into()])
            .map_err(sql_error)?;
        let seq = cursor.raw().next().and_then(|row| row.ok()).map(|row| integer(row.first())).unwrap_or(0);
        // Keep the log bounded: by age (what KV marks and the re-check cover by then), and by count.
        let horizon = now().saturating_sub(LOG_RETENTION_MS) as i64;
        let floor = seq.saturating_sub(MAX_LOG_ENTRIES as u64) as i64;
        self.sql
            .exec("DELETE FROM log WHERE at < ? OR seq <= ?", vec![SqlStorageValue::Integer(horizon), SqlStorageValue::Integer(floor)])
            .map_err(sql_error)?;
        if !purge.is_empty() {
            purges::record(&mut self.planner.borrow_mut(), purge, seq, now());
            // A failure here answers 500: the webhook then says 503 and the CMS retries.
            self.save_planner()?;
        }
        serde_json::to_string(&Recorded { seq }).map_err(|e| (500, e.to_string()))
    }

    fn log_since(&self, since: u64) -> Answer {
        let cursor = self
            .sql
            .exec("SELECT seq, entry FROM log WHERE seq > ? ORDER BY seq", vec![SqlStorageValue::Integer(since as i64)])
            .map_err(sql_error)?;
        let mut slice = LogSlice {
            seq: since,
            entries: Vec::new(),
            purge: Some(purges::status(&mut self.planner.borrow_mut(), now())),
        };
        for row in cursor.raw() {
            let row = row.map_err(sql_error)?;
            let seq = integer(row.first());
            let Some(SqlStorageValue::String(text)) = row.get(1) else {
                continue;
            };
            if let Ok(entry) = serde_json::from_str::<NewEntry>(text) {
                slice.entries.push(entry.with_seq(seq));
                slice.seq = slice.seq.max(seq);
            }
        }
        serde_json::to_string(&slice).map_err(|e| (500, e.to_string()))
    }
}

/// The engine's client of the Durable Object, through its namespace binding. Every call gives
/// up after [`COORDINATOR_TIMEOUT_MS`].
pub struct DurableCoordinator {
    namespace: JsValue,
}

impl DurableCoordinator {
    /// Wraps the namespace binding (the object `env.COORDINATOR` holds).
    pub fn new(namespace: JsValue) -> Self {
        DurableCoordinator { namespace }
    }

    /// Sends one request to the object and returns the answer's body.
    async fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<String, CoordinatorError> {
        let failed = |e: JsValue| CoordinatorError::Failed(js::error_message(&e));
        let exchange = Box::pin(async {
            let id = js::call_sync(&self.namespace, "idFromName", &[protocol::OBJECT_NAME.into()])?;
            let stub = js::call_sync(&self.namespace, "get", &[id])?;
            let init = js::object(&[("method", method.into()), ("body", body.map(JsValue::from).unwrap_or(JsValue::UNDEFINED))])?;
            let resp: web_sys::Response = js::call_async(&stub, "fetch", &[format!("{}{path}", protocol::BASE_URL).into(), init.into()]).await?.dyn_into()?;
            let text = wasm_bindgen_futures::JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
            Ok::<_, JsValue>((resp.status(), text))
        });
        let timer = Delay::from(Duration::from_millis(COORDINATOR_TIMEOUT_MS));
        match select(exchange, timer).await {
            Either::Left((Ok((status, text)), _)) if (200..300).contains(&status) => Ok(text),
            Either::Left((Ok((status, text)), _)) => Err(CoordinatorError::Failed(format!("status {status}: {text}"))),
            Either::Left((Err(e), _)) => Err(failed(e)),
            Either::Right(((), _)) => Err(CoordinatorError::Timeout(COORDINATOR_TIMEOUT_MS)),
        }
    }

    async fn call_json<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str, body: Option<String>) -> Result<T, CoordinatorError> {
        let text = self.call(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| CoordinatorError::Failed(format!("unreadable answer: {e}")))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}

impl CoordinatorApi for DurableCoordinator {
    fn record(&self, entry: NewEntry, purge: Vec<PurgeTarget>) -> CoordinatorResult<'_, u64> {
        let body = to_json(&RecordRequest { entry, purge });
        Box::pin(async move { self.call_json::<Recorded>("POST", "/record", body).await.map(|r| r.seq) })
    }

    fn log_since(&self, seq: u64) -> CoordinatorResult<'_, LogSlice> {
        Box::pin(async move { self.call_json("GET", &format!("/log?since={seq}"), None).await })
    }

    fn claim<'a>(&'a self, page: &'a str, version: Version, ttl_ms: u64) -> CoordinatorResult<'a, ClaimAnswer> {
        let body = to_json(&ClaimRequest {
            page: page.to_string(),
            version,
            ttl_ms,
        });
        Box::pin(async move { self.call_json("POST", "/claim", body).await })
    }

    fn release<'a>(&'a self, page: &'a str, version: Version, retry_at: Option<Millis>) -> CoordinatorResult<'a, ()> {
        let body = to_json(&ReleaseRequest {
            page: page.to_string(),
            version,
            retry_at,
        });
        Box::pin(async move { self.call("POST", "/release", body).await.map(drop) })
    }

    fn take_purges(&self, request: TakeRequest) -> CoordinatorResult<'_, Taken> {
        Box::pin(async move { self.call_json("POST", "/purge/take", to_json(&request)).await })
    }

    fn report_purges(&self, report: PurgeReport) -> CoordinatorResult<'_, ()> {
        Box::pin(async move { self.call("POST", "/purge/done", to_json(&report)).await.map(drop) })
    }
}

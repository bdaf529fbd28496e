//! Log lines from the core, one JSON object per line (`level`, `event`, `key`, `reason`), routed
//! to `console.log`/`console.warn`/`console.error` by the adapter: readable in `wrangler tail`,
//! and parsed into fields by Workers Logs.

use serde::Serialize;
use std::cell::RefCell;

/// How serious a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Normal operation worth seeing in `wrangler tail` (stores, regenerations).
    Info,
    /// Something failed but visitors were served (origin failure with a stale page, KV 429).
    Warn,
    /// Something failed and a visitor got an error.
    Error,
}

/// One log line: what happened (`event`, snake_case, e.g. `regenerate_failed`), to what (`key`:
/// a KV key or a path; empty when none) and the details (`reason`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// How serious.
    pub level: Level,
    /// What happened.
    pub event: String,
    /// What it happened to (omitted from the JSON when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The details, in words.
    pub reason: String,
}

impl LogLine {
    /// The line as printed: one JSON object.
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A sink for log lines.
pub trait Logger {
    /// Records one event: `event` names it, `key` is what it happened to ("" for nothing in
    /// particular), `reason` says why or what.
    fn event(&self, level: Level, event: &str, key: &str, reason: &str);

    /// Records a line that names no event or key (event `message`).
    fn log(&self, level: Level, message: &str) {
        self.event(level, "message", "", message);
    }
}

/// A logger that keeps lines in memory, for tests that check what was logged (and how often).
#[derive(Default)]
pub struct MemoryLogger {
    lines: RefCell<Vec<LogLine>>,
}

impl MemoryLogger {
    /// An empty logger.
    pub fn new() -> Self {
        Self::default()
    }

    /// All lines so far, each with its JSON as printed.
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.borrow().iter().map(|l| (l.level, l.to_json())).collect()
    }

    /// All lines so far, as recorded.
    pub fn records(&self) -> Vec<LogLine> {
        self.lines.borrow().clone()
    }

    /// How many lines contain `needle` (in their JSON).
    pub fn count(&self, needle: &str) -> usize {
        self.lines.borrow().iter().filter(|l| l.to_json().contains(needle)).count()
    }

    /// How many lines are `event` about `key`.
    pub fn count_event(&self, event: &str, key: &str) -> usize {
        self.lines.borrow().iter().filter(|l| l.event == event && l.key == key).count()
    }
}

impl Logger for MemoryLogger {
    fn event(&self, level: Level, event: &str, key: &str, reason: &str) {
        self.lines.borrow_mut().push(LogLine { level, event: event.into(), key: key.into(), reason: reason.into() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_level_event_key_and_reason() {
        let line = LogLine { level: Level::Warn, event: "regenerate_failed".into(), key: "p/1/example.com/a".into(), reason: "origin timed out \"after\" 20 s\nnext".into() };
        let json = line.to_json();
        assert_eq!(json, r#"{"level":"warn","event":"regenerate_failed","key":"p/1/example.com/a","reason":"origin timed out \"after\" 20 s\nnext"}"#);
        assert!(!json.contains('\n'), "one line");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["reason"], "origin timed out \"after\" 20 s\nnext");
        let plain = MemoryLogger::new();
        plain.log(Level::Info, "hello");
        assert_eq!(plain.lines()[0].1, r#"{"level":"info","event":"message","reason":"hello"}"#, "no key: none in the JSON");
    }
}

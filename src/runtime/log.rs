//! Log lines from the core, routed to `console.log`/`console.error` by the adapter.

use std::cell::RefCell;

/// How serious a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation worth seeing in `wrangler tail` (stores, regenerations).
    Info,
    /// Something failed but visitors were served (origin failure with a stale page, KV 429).
    Warn,
    /// Something failed and a visitor got an error.
    Error,
}

/// A sink for log lines.
pub trait Logger {
    /// Records one line.
    fn log(&self, level: Level, message: &str);
}

/// A logger that keeps lines in memory, for tests that check what was logged (and how often).
#[derive(Default)]
pub struct MemoryLogger {
    lines: RefCell<Vec<(Level, String)>>,
}

impl MemoryLogger {
    /// An empty logger.
    pub fn new() -> Self {
        Self::default()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.borrow().clone()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines.borrow().iter().filter(|(_, l)| l.contains(needle)).count()
    }
}

impl Logger for MemoryLogger {
    fn log(&self, level: Level, message: &str) {
        self.lines.borrow_mut().push((level, message.to_string()));
    }
}

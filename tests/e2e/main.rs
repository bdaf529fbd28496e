//! End-to-end suite: the built worker in `wrangler dev` (workerd + local KV) against the test
//! origin, over HTTP on loopback. `wrangler dev` starts once; each test has its own paths.
//! Tests that take the shared origin down run last (see [`LAST`]). Then a second, small suite
//! runs a JavaScript app Worker as the origin ([`app_worker`]), in a `wrangler dev` of its own.
//!
//! Run with `make test` (or `cargo test --features e2e --test e2e` after `make build`).
//! Pass a substring to run only matching tests: `cargo test --features e2e --test e2e -- stale`.

mod answers;
mod app_worker;
mod cms;
mod faults;
mod hostile;
mod isr;
mod locations;
mod revalidate;
mod snippets;
mod stream;
mod support;
mod tier;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;
use support::Suite;

/// A named test.
pub type Test = (&'static str, fn(&Suite));

/// Tests that leave the shared origin running, in order.
const TESTS: &[&[Test]] = &[isr::TESTS, revalidate::TESTS, faults::TESTS, answers::TESTS, cms::TESTS, locations::TESTS, hostile::TESTS, stream::TESTS, snippets::TESTS, tier::MODE_OFF];

/// Tests that stop the shared origin (and restart it, with none of the behaviour the others
/// set): with or without a filter, they run after every selected test of [`TESTS`].
const LAST: &[&[Test]] = &[faults::ORIGIN_DOWN];

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let tests: Vec<Test> = TESTS
        .iter()
        .chain(LAST)
        .flat_map(|list| list.iter())
        .copied()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let app_tests: Vec<Test> = app_worker::TESTS
        .iter()
        .copied()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let tier_tests: Vec<Test> = tier::TESTS
        .iter()
        .copied()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut passed, mut failed) = (0, Vec::new());
    if !tests.is_empty() || (app_tests.is_empty() && tier_tests.is_empty()) {
        run("", || Suite::start(root), &tests, &mut passed, &mut failed);
    }
    if !app_tests.is_empty() {
        run(" (app Worker as ORIGIN_SERVICE)", || app_worker::start(root), &app_tests, &mut passed, &mut failed);
    }
    if !tier_tests.is_empty() {
        run(" (WORKERS_CACHE on, ctx.cache test double)", || tier::start(root), &tier_tests, &mut passed, &mut failed);
    }
    println!("e2e: {passed} passed, {} failed", failed.len());
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}

/// Runs `tests` on a started suite, then stops it.
fn run(what: &str, start: impl FnOnce() -> Result<Suite, String>, tests: &[Test], passed: &mut usize, failed: &mut Vec<&'static str>) {
    let started = Instant::now();
    println!("starting test origin and wrangler dev{what} ...");
    let suite = match start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("e2e setup failed{what}: {e}");
            failed.push("setup");
            return;
        }
    };
    println!("worker at {} (ready after {:.1?}); {} tests", suite.worker, started.elapsed(), tests.len());
    let failed_before = failed.len();
    for (name, test) in tests {
        let t0 = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| test(&suite))) {
            Ok(()) => {
                *passed += 1;
                println!("test {name} ... ok ({:.1?})", t0.elapsed());
            }
            Err(_) => {
                failed.push(*name);
                println!("test {name} ... FAILED ({:.1?})", t0.elapsed());
            }
        }
    }
    let log = suite.log_path.clone();
    suite.stop();
    if failed.len() > failed_before {
        println!("failed{what}: {}", failed[failed_before..].join(", "));
        println!("wrangler output: {}", log.display());
    }
}

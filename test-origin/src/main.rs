//! The `test-origin` binary: the demo origin `scripts/dev.sh` runs beside `wrangler dev`.
//!
//! ```text
//! test-origin [--addr 127.0.0.1:8788] [--content DIR] [--quiet]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once bound, logs one line per request to
//! stderr (unless `--quiet`), and runs until killed.

use std::io::Write;
use std::process::ExitCode;
use test_origin::{TestOrigin, DEFAULT_ADDR};

const USAGE: &str = "usage: test-origin [--addr HOST:PORT] [--content DIR] [--quiet]

A scriptable HTTP origin for edge-isr's tests and demo (loopback addresses only).
  --addr HOST:PORT  where to listen (default 127.0.0.1:8788; port 0 picks a free one)
  --content DIR     serve DIR/{collection}/{slug}.json as a JSON CMS under /api/
  --quiet           do not log requests to stderr
Control API: GET http://HOST:PORT/__origin/ lists the endpoints.";

fn main() -> ExitCode {
    let mut addr = DEFAULT_ADDR.to_string();
    let mut quiet = false;
    let mut content: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => match args.next() {
                Some(a) => addr = a,
                None => return usage_error("--addr needs a value"),
            },
            "--quiet" | "-q" => quiet = true,
            "--content" => match args.next() {
                Some(d) => content = Some(d),
                None => return usage_error("--content needs a directory"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => match other.strip_prefix("--addr=") {
                Some(a) => addr = a.to_string(),
                None => return usage_error(&format!("unknown argument {other:?}")),
            },
        }
    }
    let origin = match TestOrigin::start(&addr) {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("test-origin: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    origin.set_logging(!quiet);
    if let Some(dir) = content {
        if !std::path::Path::new(&dir).is_dir() {
            eprintln!("test-origin: --content {dir}: not a directory");
            return ExitCode::FAILURE;
        }
        origin.set_content_dir(dir);
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", origin.url());
    let _ = stdout.flush();
    // Serve until killed; the server runs on its own threads.
    loop {
        std::thread::park();
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("test-origin: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

#!/usr/bin/env bash
# `make bench`: installs wrk (Debian package, once), sets up and builds the worker and the test
# origin in release mode, then runs bench/run.mjs, which starts everything on loopback, runs
# bounded loads, prints the tables and stops every process it started. About 8 minutes on 2 cores.
# Settings: BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_SIZES,
# BENCH_INVALIDATE (see bench/run.mjs). Results also go to target/bench/<time>/results.{md,json}.
set -euo pipefail

here="$(dirname "${BASH_SOURCE[0]}")"
say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

if command -v wrk >/dev/null; then
  say "wrk: present"
else
  say "wrk: installing (apt-get install wrk)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || die "wrk is missing and there is no apt-get: install wrk (https://github.com/wg/wrk)"
  $sudo apt-get install -y wrk >/dev/null || { $sudo apt-get update >/dev/null && $sudo apt-get install -y wrk >/dev/null; } \
    || die "could not install wrk"
fi

bash "$here/../scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$here/../scripts/env.sh"
cd "$EDGE_ISR_ROOT"
bash scripts/build.sh                                  # release build of the worker
cargo build --quiet --release -p test-origin           # the origin the worker renders from
node bench/run.mjs "$@"

#!/usr/bin/env bash
# `make bench`: installs wrk (Debian package, once), sets up and builds the worker and the test
# origin in release mode, installs and builds the peer (bench/opennext/setup.sh: Next.js with ISR
# through @opennextjs/cloudflare, its own node_modules), then runs bench/run.mjs, which starts
# everything on loopback, runs bounded loads, prints the tables and stops every process it
# started. About 20 minutes on 2 cores (the peer's first install and build: a few more).
# Settings: BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_SIZES,
# BENCH_INVALIDATE, BENCH_PEER=0 (leaves the peer out), BENCH_PROFILES, BENCH_HOLD=1 (start, warm and
# wait, for profiling by hand) (see bench/run.mjs). Results also go to
# target/bench/<time>/results.{md,json}.
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
# The peer (Next.js ISR through @opennextjs/cloudflare): its own install and build. If either
# fails, the bench still runs the other systems and reports the peer as missing, with the reason.
if [ "${BENCH_PEER:-1}" = 0 ]; then
  say "peer: left out (BENCH_PEER=0)"
elif ! bash bench/opennext/setup.sh; then
  export BENCH_PEER_MISSING="its install or build failed (bench/opennext/setup.sh; see the messages before the results)"
  say "peer: MISSING: $BENCH_PEER_MISSING; running the other systems"
fi
node bench/run.mjs "$@"

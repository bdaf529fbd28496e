#!/usr/bin/env bash
# Everything CI checks: native unit tests, the wasm build, then the end-to-end
# suite (built worker in wrangler dev + test origin). Exits non-zero on any failure.
set -euo pipefail

here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
# shellcheck source=scripts/env.sh
source "$here/env.sh"   # exported, so the e2e harness's wrangler inherits the no-network settings
cd "$EDGE_ISR_ROOT"

echo "test: unit tests (native)"
cargo test --workspace

echo "test: building the worker"
bash scripts/build.sh

# The browser test of the admin page drives Debian's Chromium (headless) with playwright-core.
chromium_bin="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "test: installing chromium (apt-get install chromium, once; about 30 s)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || { echo "test: error: $chromium_bin is missing and there is no apt-get: install Chromium and set CHROMIUM_PATH" >&2; exit 1; }
  $sudo apt-get install -y chromium >/dev/null || { $sudo apt-get update >/dev/null && $sudo apt-get install -y chromium >/dev/null; } \
    || { echo "test: error: could not install chromium" >&2; exit 1; }
fi
export CHROMIUM_PATH="$chromium_bin"

echo "test: end-to-end suite (wrangler dev + test origin + headless Chromium)"
cargo test --features e2e --test e2e

# Last: a short bounded fuzzing run of the parsers (FUZZ_SECONDS per target, default 10).
bash scripts/fuzz.sh

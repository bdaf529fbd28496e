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

echo "test: end-to-end suite (wrangler dev + test origin)"
cargo test --features e2e --test e2e

# Last: a short bounded fuzzing run of the parsers (FUZZ_SECONDS per target, default 10).
bash scripts/fuzz.sh

#!/usr/bin/env bash
# Builds the worker: build/worker/shim.mjs + the wasm module, using the tools
# pinned by scripts/setup.sh (never worker-build's GitHub downloads).
# Also wrangler's [build] command, so `wrangler dev` / `wrangler deploy` run it.
#
# EDGE_ISR_PREBUILT=1: keep an existing build and do nothing (the e2e harness
# sets it: it builds once, then starts `wrangler dev`, which would rebuild).
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGE_ISR_ROOT"

say() { printf 'build: %s\n' "$*"; }
die() { printf 'build: error: %s\n' "$*" >&2; exit 1; }

if [ "${EDGE_ISR_PREBUILT:-}" = 1 ] && [ -f build/worker/shim.mjs ]; then
  say "EDGE_ISR_PREBUILT=1: using the existing build/"
  exit 0
fi

# If any of these is missing, worker-build would fall back to downloading it,
# which fails offline with an obscure error: say what to do instead.
for bin in "$EDGE_ISR_TOOLS/bin/worker-build" "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN"; do
  [ -x "$bin" ] || die "$bin is missing: run 'make setup' (scripts/setup.sh) first"
done
want="$(edge_isr_lock_version wasm-bindgen)"
have="$("$WASM_BINDGEN_BIN" --version | awk '{print $NF}')"
[ "$have" = "$want" ] || die "wasm-bindgen CLI is $have but Cargo.lock has $want: run 'make setup'"

"$EDGE_ISR_TOOLS/bin/worker-build" --release "$@"

# worker-build names the module after the crate; report whatever .wasm it wrote.
wasm="$(find build -maxdepth 2 -name '*.wasm' -newer Cargo.toml -print -quit 2>/dev/null || true)"
[ -n "$wasm" ] || wasm="$(find build -maxdepth 2 -name '*.wasm' -print -quit)"
[ -n "$wasm" ] && [ -f build/worker/shim.mjs ] || die "worker-build finished but build/worker/shim.mjs or the .wasm is missing"
size=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
say "$wasm: $((size / 1024)) KiB, gzip -9 $((gz / 1024)) KiB"

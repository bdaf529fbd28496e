#!/usr/bin/env bash
# Builds the worker: build/worker/shim.mjs + the wasm module, using the tools
# pinned by scripts/setup.sh (never worker-build's GitHub downloads).
# Also wrangler's [build] command, so `wrangler dev` / `wrangler deploy` run it.
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGE_ISR_ROOT"

say() { printf 'build: %s\n' "$*"; }
die() { printf 'build: error: %s\n' "$*" >&2; exit 1; }

# If any of these is missing, worker-build would fall back to downloading it,
# which fails offline with an obscure error: say what to do instead.
for bin in "$EDGE_ISR_TOOLS/bin/worker-build" "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN"; do
  [ -x "$bin" ] || die "$bin is missing: run 'make setup' (scripts/setup.sh) first"
done
want="$(edge_isr_lock_version wasm-bindgen)"
have="$("$WASM_BINDGEN_BIN" --version | awk '{print $NF}')"
[ "$have" = "$want" ] || die "wasm-bindgen CLI is $have but Cargo.lock has $want: run 'make setup'"

# Skip the build when nothing it depends on changed since the last one. This
# matters because `wrangler dev` runs the [build] command twice at start-up (once
# for the entry point, once more when its file watcher is ready), and each
# worker-build run costs ~7 s of wasm-bindgen + wasm-opt even when cargo has
# nothing to do. EDGE_ISR_FORCE_BUILD=1 rebuilds regardless.
inputs_hash() {
  {
    find src www/site.json www/templates www/static -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum Cargo.toml Cargo.lock
    if [ -f build.rs ]; then sha256sum build.rs; fi
    rustc -V
    "$EDGE_ISR_TOOLS/bin/worker-build" --version
    "$WASM_BINDGEN_BIN" --version
    "$WASM_OPT_BIN" --version
    "$ESBUILD_BIN" --version
    printf 'args: %s\n' "$*"
    env | grep -E '^(RUSTFLAGS|CARGO_ENCODED_RUSTFLAGS|CARGO_PROFILE_[A-Z_]*|CARGO_BUILD_[A-Z_]*|CARGO_TARGET_DIR|CUSTOM_SHIM|NO_MINIFY|RUN_TO_COMPLETION|COREDUMP[A-Z_]*)=' | sort || true
  } | sha256sum | cut -d' ' -f1
}
# The entry point is edge-isr's own (src/cloudflare/shim.mjs: crash recovery without
# worker-build's per-request Proxy objects); worker-build bundles it with wasm-bindgen's glue
# into build/worker/shim.mjs, beside build/worker/index.wasm. (Without CUSTOM_SHIM, worker-build
# 0.8 writes its default entry to build/index.js + build/index_bg.wasm instead.)
export CUSTOM_SHIM="$EDGE_ISR_ROOT/src/cloudflare/shim.mjs"
wasm=build/worker/index.wasm
stamp=build/.edge-isr-inputs
hash="$(inputs_hash "$@")"
if [ "${EDGE_ISR_FORCE_BUILD:-}" != 1 ] && [ -f build/worker/shim.mjs ] && [ -f "$wasm" ] \
   && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  say "up to date (sources, Cargo files and tools unchanged; EDGE_ISR_FORCE_BUILD=1 to rebuild)"
else
  rm -f "$stamp"
  "$EDGE_ISR_TOOLS/bin/worker-build" --release "$@"
  # What the default entry left behind, were it built here before.
  rm -f build/index.js build/index_bg.wasm
  printf '%s\n' "$hash" > "$stamp"
fi

if [ ! -f "$wasm" ] || [ ! -f build/worker/shim.mjs ]; then
  die "worker-build finished but build/worker/shim.mjs or $wasm is missing"
fi
# The entry point's crash recovery is wasm-bindgen's reinit, which re-creates the instance from
# the globals the entry point defines (see src/cloudflare/shim.mjs): check that the glue still
# reads them, so that a wasm-bindgen update that changes this fails here, not at the first panic.
grep -q 'wasmInstance=new WebAssembly.Instance(wasmModule,__wbg_get_imports())' build/worker/shim.mjs \
  && grep -q '__wbg___wbindgen_reinit_' build/worker/shim.mjs \
  || die "wasm-bindgen's glue no longer re-creates the instance the way src/cloudflare/shim.mjs expects: see that file"
size=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
say "$wasm: $((size / 1024)) KiB, gzip -9 $((gz / 1024)) KiB"

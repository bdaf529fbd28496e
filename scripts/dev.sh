#!/usr/bin/env bash
# Local development: the test origin on 127.0.0.1:8788 (also the demo CMS: JSON
# from www/content under /api/) and the worker in
# `wrangler dev` (real workerd runtime, KV simulated under .wrangler/state) on
# 127.0.0.1:8787. Ctrl-C stops both. Extra arguments go to `wrangler dev`.
# Ports can be moved with EDGE_ISR_DEV_PORT / EDGE_ISR_ORIGIN_PORT.
set -euo pipefail

here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
# shellcheck source=scripts/env.sh
source "$here/env.sh"
cd "$EDGE_ISR_ROOT"

dev_port="${EDGE_ISR_DEV_PORT:-8787}"
origin_port="${EDGE_ISR_ORIGIN_PORT:-8788}"
origin_url="http://127.0.0.1:$origin_port"
worker_url="http://127.0.0.1:$dev_port"

say() { printf 'dev: %s\n' "$*"; }
die() { printf 'dev: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/servers.sh
source "$EDGE_ISR_ROOT/scripts/servers.sh"

for url in "$origin_url" "$worker_url"; do
  ! answers "$url" || die "something already answers on $url: stop it or set EDGE_ISR_DEV_PORT / EDGE_ISR_ORIGIN_PORT"
done

edge_isr_stop_servers_on_exit

say "building and starting the test origin on $origin_url"
setsid cargo run --quiet --release -p test-origin -- --addr "127.0.0.1:$origin_port" --content www/content \
  </dev/null > >(sed -u 's/^/[origin] /') 2>&1 &
edge_isr_pids+=("$!")
origin_pid=$!

# wrangler runs the [build] command from wrangler.toml (scripts/build.sh) before
# serving, and again when src/ changes, so there is no separate build here.
say "starting wrangler dev on $worker_url (it builds the worker first)"
setsid wrangler dev --ip 127.0.0.1 --port "$dev_port" --var "ORIGIN_URL:$origin_url" --var "CMS_URL:$origin_url" \
  --var "CACHE_HOSTS:127.0.0.1,localhost" --test-scheduled \
  --show-interactive-dev-session=false "$@" </dev/null &
edge_isr_pids+=("$!")
wrangler_pid=$!

# First runs compile the origin and the worker in release mode: allow 15 minutes.
deadline=$((SECONDS + 900))
for name in origin worker; do
  if [ "$name" = origin ]; then url="$origin_url" pid=$origin_pid; else url="$worker_url" pid=$wrangler_pid; fi
  until answers "$url"; do
    kill -0 "$pid" 2>/dev/null || die "the $name process exited before answering on $url (see its output above)"
    [ "$SECONDS" -lt "$deadline" ] || die "the $name did not answer on $url within 15 minutes"
    sleep 0.5
  done
  say "$name answers on $url"
done

say "ready: open $worker_url/ (the demo blog), $worker_url/__isr/admin (password: REVALIDATE_SECRET in .dev.vars); origin and CMS: $origin_url. Ctrl-C stops both."
# Returns when either server exits; the EXIT trap then stops the other one.
wait -n "$origin_pid" "$wrangler_pid" || true
say "a server exited"

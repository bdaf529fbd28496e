#!/usr/bin/env bash
# Two locations on one machine (`make demo-locations`): the test origin/demo CMS on
# 127.0.0.1:8788, location A (`wrangler dev`, the coordinator's home) on 127.0.0.1:8787 and
# location B (`wrangler dev --env location-b`, its own KV under .wrangler/location-b, A's
# coordinator through wrangler's local dev registry) on 127.0.0.1:8789. Ctrl-C stops all three.
# Ports: EDGE_ISR_DEV_PORT (A), EDGE_ISR_B_PORT (B), EDGE_ISR_ORIGIN_PORT (origin); inspector
# ports EDGE_ISR_A_INSPECTOR_PORT (9229) and EDGE_ISR_B_INSPECTOR_PORT (9230).
# A publish on A reaches B within 1.5 s: see README, "Two locations on one machine".
set -euo pipefail

here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
# shellcheck source=scripts/env.sh
source "$here/env.sh"
cd "$EDGE_ISR_ROOT"

a_port="${EDGE_ISR_DEV_PORT:-8787}"
b_port="${EDGE_ISR_B_PORT:-8789}"
origin_port="${EDGE_ISR_ORIGIN_PORT:-8788}"
origin_url="http://127.0.0.1:$origin_port"
a_url="http://127.0.0.1:$a_port"
b_url="http://127.0.0.1:$b_port"
a_inspector="${EDGE_ISR_A_INSPECTOR_PORT:-9229}"
b_inspector="${EDGE_ISR_B_INSPECTOR_PORT:-9230}"
# The dev registry is where B finds A's coordinator (the worker named "edge-isr"). A registry of
# the demo's own, so that another `wrangler dev` of a worker named edge-isr on this machine (an
# e2e run, a second checkout) cannot answer for A.
export WRANGLER_REGISTRY_PATH="$EDGE_ISR_ROOT/.wrangler/registry"
export MINIFLARE_REGISTRY_PATH="$WRANGLER_REGISTRY_PATH"
mkdir -p "$WRANGLER_REGISTRY_PATH"

say() { printf 'demo-locations: %s\n' "$*"; }
die() { printf 'demo-locations: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/servers.sh
source "$EDGE_ISR_ROOT/scripts/servers.sh"

for url in "$origin_url" "$a_url" "$b_url"; do
  ! answers "$url" || die "something already answers on $url: stop it or move the ports (see the top of this script)"
done

edge_isr_stop_servers_on_exit

wait_for() { # name url pid
  local deadline=$((SECONDS + 900))
  until answers "$2"; do
    kill -0 "$3" 2>/dev/null || die "$1 exited before answering on $2 (see its output above)"
    [ "$SECONDS" -lt "$deadline" ] || die "$1 did not answer on $2 within 15 minutes"
    sleep 0.5
  done
  say "$1 answers on $2"
}

say "building and starting the test origin on $origin_url"
setsid cargo run --quiet --release -p test-origin -- --addr "127.0.0.1:$origin_port" --content www/content \
  </dev/null > >(sed -u 's/^/[origin] /') 2>&1 &
edge_isr_pids+=("$!")
wait_for "the origin" "$origin_url" "$!"

common=(--ip 127.0.0.1 --var "ORIGIN_URL:$origin_url" --var "CMS_URL:$origin_url"
  --var "CACHE_HOSTS:127.0.0.1,localhost" --show-interactive-dev-session=false)

say "starting location A on $a_url (it builds the worker first; the coordinator lives here)"
setsid wrangler dev "${common[@]}" --port "$a_port" --inspector-port "$a_inspector" "$@" \
  </dev/null > >(sed -u 's/^/[A] /') 2>&1 &
edge_isr_pids+=("$!")
wait_for "location A" "$a_url" "$!"

say "starting location B on $b_url (own KV in .wrangler/location-b, A's coordinator)"
setsid wrangler dev "${common[@]}" --env location-b --port "$b_port" --inspector-port "$b_inspector" \
  --persist-to .wrangler/location-b "$@" </dev/null > >(sed -u 's/^/[B] /') 2>&1 &
edge_isr_pids+=("$!")
wait_for "location B" "$b_url" "$!"

say "ready: A $a_url, B $b_url, origin $origin_url. Try README's \"Two locations on one machine\". Ctrl-C stops all three."
wait -n "${edge_isr_pids[@]}" || true
say "a server exited"

# shellcheck shell=bash
# Starting and stopping the local servers of `make dev` and `make demo-locations` (sourced by
# scripts/dev.sh and scripts/demo-locations.sh, after they define `say`). Each server runs in
# its own session/process group (setsid), so that stopping it signals the whole group:
# wrangler's workerd child and cargo's child go with it.

edge_isr_pids=()

# Any HTTP answer at all (even a 404/500) means a server is up at $1.
answers() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true)" != 000 ]; }

# Stops every server in edge_isr_pids: TERM, up to 5 s to exit, then KILL.
edge_isr_stop_servers() {
  trap - EXIT INT TERM
  local pid
  for pid in "${edge_isr_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${edge_isr_pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${edge_isr_pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  say "stopped"
}

# Stops the servers however the script ends (Ctrl-C included).
edge_isr_stop_servers_on_exit() {
  trap edge_isr_stop_servers EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

#!/usr/bin/env bash
# Removes build outputs and wrangler's local state (simulated KV). Keeps
# node_modules and the pinned tools in $EDGE_ISR_TOOLS (slow to reinstall).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo clean
rm -rf build .wrangler test-results
echo "clean: removed target/, build/, .wrangler/, test-results/"

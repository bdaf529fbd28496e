# Thin wrappers: the real steps live in scripts/ so CI and people run the same thing.
.PHONY: setup build dev demo-locations test unit fuzz clean bench

setup:
	bash scripts/setup.sh

build:
	bash scripts/build.sh

dev:
	bash scripts/dev.sh

# Two locations on one machine sharing the coordinator: A on 8787, B on 8789, origin on 8788
# (see README, "Two locations on one machine").
demo-locations:
	bash scripts/demo-locations.sh

test:
	bash scripts/test.sh

# Native unit tests only (no wasm build, no wrangler).
unit:
	cargo test --workspace

# Fuzz the parsers, FUZZ_SECONDS (default 10) per target (see README, "Fuzzing").
fuzz:
	bash scripts/fuzz.sh

# Build outputs and wrangler's local state; keeps node_modules and the pinned tools.
clean:
	bash scripts/clean.sh

# Benchmarks (see BENCHMARKS.md): edge-isr beside a JS KV baseline, a constant worker and the
# peer (Next.js ISR through OpenNext), in wrangler dev on loopback; bounded loads with wrk;
# prints the tables with ratios. About 17 minutes (BENCH_PEER=0 leaves the peer out).
bench:
	bash bench/bench.sh

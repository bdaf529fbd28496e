# Thin wrappers: the real steps live in scripts/ so CI and people run the same thing.
.PHONY: setup build dev test unit clean

setup:
	bash scripts/setup.sh

build:
	bash scripts/build.sh

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

# Native unit tests only (no wasm build, no wrangler).
unit:
	cargo test --workspace

# Build outputs and wrangler's local state; keeps node_modules and the pinned tools.
clean:
	bash scripts/clean.sh

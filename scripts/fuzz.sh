#!/usr/bin/env bash
# Fuzzes the parsers with cargo fuzz (libFuzzer): the cache key normaliser, the header
# policy, the revalidation webhook and the stored metadata decoder (targets in fuzz/).
#
#   bash scripts/fuzz.sh                      # every target, FUZZ_SECONDS (10) each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh webhook   # one target, longer
#
# Installs the pinned cargo-fuzz into $EDGE_ISR_TOOLS if missing (idempotent), builds the
# targets once, runs each from the committed seeds (fuzz/corpus/<target>, only read) plus
# the corpus grown by earlier runs (fuzz/work/<target>, git-ignored), and prints one line per
# target. Exits non-zero if any target crashed; the input is then in fuzz/artifacts/<target>/.
#
# Runs on the stable toolchain. The sanitizer defaults to none: src/ has no unsafe code, so
# AddressSanitizer finds nothing more there, and without it the build takes half the time, the
# targets run about five times faster, and stable rustc needs no unstable flag. With
# FUZZ_SANITIZER=address (the -Zsanitizer flag), RUSTC_BOOTSTRAP=1 is set so stable accepts it.
set -euo pipefail

# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
ALL_TARGETS=(key_normalise cache_headers webhook meta_decode)

say() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

[[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive number of seconds, not '$FUZZ_SECONDS'"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${ALL_TARGETS[*]})"
done

# 1. cargo-fuzz, pinned, next to worker-build (the installer in scripts/env.sh).
edge_isr_install_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo-fuzz || die "could not install cargo-fuzz $CARGO_FUZZ_VERSION"

# 2. Build every target once (-a: with debug assertions, so integer overflow panics).
#    RUSTC_BOOTSTRAP is part of cargo's fingerprint: set it only when needed, so that a plain
#    `cargo fuzz run --sanitizer none -a <target>` reuses this build.
if [ "$FUZZ_SANITIZER" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
cd "$EDGE_ISR_ROOT/fuzz"
fuzz_opts=(-a --sanitizer "$FUZZ_SANITIZER")
say "building the fuzz targets (sanitizer: $FUZZ_SANITIZER)"
cargo fuzz build "${fuzz_opts[@]}"

# 3. Run each target; keep going after a crash so every target reports.
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t"
  log="work/$t.log"
  say "running $t for ${FUZZ_SECONDS}s (log: fuzz/$log)"
  start=$SECONDS
  rc=0
  cargo fuzz run "${fuzz_opts[@]}" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  execs="$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -n1)"
  corpus="$(grep -oE 'corp: [0-9]+' "$log" | tail -n1 | awk '{print $2}')"
  line="$t: ${execs:-?} executions in ${took}s ($(( ${execs:-0} / (took > 0 ? took : 1) ))/s), corpus ${corpus:-?} inputs"
  if [ "$rc" -eq 0 ]; then
    summary+=("$line, no crash")
  else
    artifact="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n1 | cut -d' ' -f5)"
    summary+=("$line, FAILED (exit $rc)${artifact:+: input in ${artifact#"$EDGE_ISR_ROOT"/}}")
    failed+=("$t")
    # The panic message and the reproduction command.
    grep -E -A6 "panicked at|ERROR: libFuzzer|SUMMARY:" "$log" | head -n 20 >&2 || true
    grep -E -A2 "^Reproduce with:" "$log" >&2 || true
  fi
done

for line in "${summary[@]}"; do say "$line"; done
if [ ${#failed[@]} -gt 0 ]; then
  die "${#failed[@]} target(s) failed: ${failed[*]} (reproduce: cd fuzz && cargo fuzz run ${fuzz_opts[*]} <target> <input>)"
fi
say "no crash in ${#targets[@]} target(s)"

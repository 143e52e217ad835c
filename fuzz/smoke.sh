#!/usr/bin/env bash
# A short coverage-guided run of the fuzz targets: exits non-zero on a crash, on an input slower
# than FUZZ_TIMEOUT seconds, or on the fuzzer's memory passing FUZZ_RSS_MB (a hang or a blow-up
# is a finding too).
#
#   fuzz/smoke.sh               # 45 s of `admit`, then 15 s of `growth` (FUZZ_SECONDS, FUZZ_GROWTH_SECONDS)
#   FUZZ_NO_INSTALL=1 fuzz/smoke.sh   # skip (exit 0) instead of installing cargo-fuzz
#   FUZZ_DEV=1 fuzz/smoke.sh          # unoptimised build, faster to build (CI uses this)
#   FUZZ_SEED=1 FUZZ_RUNS=6000 FUZZ_GROWTH_RUNS=750 fuzz/smoke.sh
#                                     # a fixed seed and a fixed number of inputs instead of a time:
#                                     # the same start on every run and machine (CI uses this)
#
# Cost on a fresh machine: `cargo install cargo-fuzz` takes under a minute, and the first
# instrumented build of the engine (the target links podmedic-engine only) 23 s unoptimised on a
# 2-core machine; the optimised build takes longer. CI always runs the same oracle
# without a fuzzer in `cargo test` (crates/podmedic-engine/tests/fuzz_replay.rs). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-45}"
growth_seconds="${FUZZ_GROWTH_SECONDS:-15}"
# How long each target runs: a number of inputs from a fixed seed (as repeatable as libFuzzer gets:
# a gate should not depend on what a random seed reaches that day), or a time from a random seed.
# With a fixed seed the grown corpus starts empty too, in a directory of its own.
corpus=corpus
if [ -n "${FUZZ_RUNS:-}" ]; then
  corpus="$(mktemp -d)"
  trap 'rm -rf "$corpus"' EXIT
  admit_budget=(-seed="${FUZZ_SEED:-1}" -runs="$FUZZ_RUNS")
  growth_budget=(-seed="${FUZZ_SEED:-1}" -runs="${FUZZ_GROWTH_RUNS:-750}")
else
  admit_budget=(${FUZZ_SEED:+-seed="$FUZZ_SEED"} -max_total_time="$seconds")
  growth_budget=(${FUZZ_SEED:+-seed="$FUZZ_SEED"} -max_total_time="$growth_seconds")
fi
# One input of at most 64 KiB takes milliseconds even unoptimised; 10 s is a hang. The recorded
# campaign peaked at 76 MB.
limits=(-timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-512}")
profile=()
if [ -n "${FUZZ_DEV:-}" ]; then profile=(--dev); fi
# libFuzzer needs -Z flags (sanitizer coverage); RUSTC_BOOTSTRAP lets the stable compiler take them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ -n "${FUZZ_NO_INSTALL:-}" ]; then
    echo "cargo-fuzz is not installed and FUZZ_NO_INSTALL is set: skipping the fuzz smoke run"
    exit 0
  fi
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The seed corpus: the kube-apiserver AdmissionReviews and their structural variants.
(cd .. && cargo test --quiet -p podmedic-engine --test fuzz_replay -- --ignored write_fuzz_seeds >/dev/null)
mkdir -p "$corpus/admit" "$corpus/growth"

# -s none: podmedic forbids unsafe code, so AddressSanitizer finds nothing more and halves the speed.
cargo fuzz build "${profile[@]}" -s none
# The crash regressions must still pass before new inputs are tried.
cargo fuzz run "${profile[@]}" -s none admit regressions/admit -- -runs=0 "${limits[@]}"
cargo fuzz run "${profile[@]}" -s none admit "$corpus/admit" seeds/admit -- \
  -dict=admit.dict -max_len=65536 "${admit_budget[@]}" -print_final_stats=1 "${limits[@]}"
# `growth`: any unit of text repeated 8 and 32 times in a Pod must cost linear engine steps.
cargo fuzz run "${profile[@]}" -s none growth "$corpus/growth" -- \
  -max_len=256 "${growth_budget[@]}" -print_final_stats=1 "${limits[@]}"

#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one after another, and
# prints a table of executions, coverage, corpus size and findings. Not part of `make test`:
# fuzzing is open-ended; run it before a release and for as long as you can spare.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   # e.g. scripts/fuzz.sh 900 prefilter acs_form
#   scripts/fuzz.sh --seeds                 # regenerate fuzz/seeds from the test material
#
# Needs the nightly toolchain (installed here if missing) and cargo-fuzz (likewise). Grown
# corpora go to fuzz/corpus/<target>, findings to fuzz/artifacts/<target>, logs to
# fuzz/logs/<target>.log; none of them is committed. Exits non-zero if any target found a
# crash, a timeout (slow input) or an out-of-memory input.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--seeds" ]]; then
    rm -rf fuzz/seeds
    exec cargo run --quiet --example fuzz_seeds -- fuzz/seeds
fi

SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL_TARGETS=(prefilter acs_form slo_redirect cookie return_path forward_auth config)
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Longest input per target: above each one's own size cap where it has one, so the cap
# itself is exercised, but small enough to keep executions fast.
max_len() {
    case "$1" in
        prefilter | acs_form | config) echo 32768 ;;
        slo_redirect | forward_auth) echo 20480 ;;
        return_path) echo 4096 ;;
        cookie) echo 1024 ;;
    esac
}

# A single input slower than 5 s or a process above 2 GiB is a finding (libFuzzer stops and
# saves the input under fuzz/artifacts/<target>/timeout-* or oom-*).
COMMON=(-timeout=5 -rss_limit_mb=2048 -print_final_stats=1)

cd fuzz
cargo +nightly fuzz build
mkdir -p logs
failed=0
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="logs/$t.log"
    echo "== $t: ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
    status=0
    cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" "${COMMON[@]}" \
        >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [[ $status -ne 0 ]]; then
        failed=1
        finding=$(ls -t "artifacts/$t" 2>/dev/null | head -1)
        summary+=("$t ${SECONDS_PER_TARGET} ${execs:-?} ${cov:-?} ${ft:-?} $corpus FOUND:artifacts/$t/${finding:-?}")
    else
        summary+=("$t ${SECONDS_PER_TARGET} ${execs:-?} ${cov:-?} ${ft:-?} $corpus none")
    fi
done

printf '\n%-14s %8s %12s %7s %7s %7s  %s\n' target seconds executions cov ft corpus findings
for row in "${summary[@]}"; do
    # shellcheck disable=SC2086
    printf '%-14s %8s %12s %7s %7s %7s  %s\n' $row
done
exit "$failed"

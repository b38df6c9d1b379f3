#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of every decoder and of a shard's
# per-batch pipeline, on the stable toolchain (no sanitizer: safe Rust, libFuzzer's coverage
# instrumentation only).
#
#   scripts/fuzz.sh [--seconds S] [--capture] [--minimize] [TARGET ...]
#
# Targets (fuzz/fuzz_targets/): wire_decode, pipeline, store_log, config; default all.
# Each runs S seconds (default 60) from its corpus in fuzz/corpus/<target>, which starts from
# the committed corpus plus the seeds fuzz/examples/seed_corpus.rs writes. --capture first
# records real traffic: every distinct datagram on loopback during a 2-second payments run of
# a 4-authority committee (scripts/bench.sh), as new seeds (needs root). --minimize shrinks
# each corpus afterwards (cargo fuzz cmin), as committed. A crash stops the script with the
# failing input in fuzz/artifacts/<target>/; make it a regression test before fixing it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

seconds=60 capture=false minimize=false targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$(value "$@"); shift 2 ;;
        --capture) capture=true; shift ;;
        --minimize) minimize=true; shift ;;
        -*) help_or_die "$1" ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire_decode pipeline store_log config)

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2 >&2
fi

step "writing seed inputs"
(cd fuzz && cargo run --quiet --locked --example seed_corpus >&2)

if $capture; then
    step "capturing real traffic on loopback"
    python3 scripts/capture_udp.py fuzz/corpus --limit 50 &
    capture_pid=$!
    at_exit 'kill -TERM "$capture_pid" 2>/dev/null'
    sleep 1
    scripts/bench.sh --portable --authorities 4 --shards 2 --rate 500 --duration 2 \
        --phase payments >/dev/null
    kill -TERM "$capture_pid" 2>/dev/null || true
    wait "$capture_pid" || true
fi

for target in "${targets[@]}"; do
    step "fuzzing $target for ${seconds}s"
    log=$(mktemp)
    if ! (cd fuzz && cargo fuzz run --sanitizer none "$target" -- \
            -max_total_time="$seconds" -max_len=8192 -print_final_stats=1) >"$log" 2>&1; then
        tail -40 "$log" >&2
        fail "$target failed; the input is in fuzz/artifacts/$target/"
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
    corpus=$(ls "fuzz/corpus/$target" | wc -l)
    echo "$target: ${runs:-no run count} ($corpus inputs in the corpus)"
    rm -f "$log"
    if $minimize; then
        (cd fuzz && cargo fuzz cmin --sanitizer none "$target" >/dev/null 2>&1)
        echo "$target: corpus minimized to $(ls "fuzz/corpus/$target" | wc -l) inputs"
    fi
done

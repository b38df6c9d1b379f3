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
cd "$(dirname "$0")/.."

seconds=60 capture=false minimize=false targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --capture) capture=true; shift ;;
        --minimize) minimize=true; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire_decode pipeline store_log config)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version 0.13.2 >&2
fi

echo "==> writing seed inputs" >&2
(cd fuzz && cargo run --quiet --locked --release --example seed_corpus >&2)

if $capture; then
    echo "==> capturing real traffic on loopback" >&2
    python3 scripts/capture_udp.py fuzz/corpus --limit 50 &
    capture_pid=$!
    sleep 1
    scripts/bench.sh --portable --authorities 4 --shards 2 --rate 500 --duration 2 \
        --phase payments >/dev/null
    kill -TERM "$capture_pid" 2>/dev/null || true
    wait "$capture_pid" || true
fi

for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${seconds}s" >&2
    log=$(mktemp)
    if ! (cd fuzz && cargo fuzz run --sanitizer none "$target" -- \
            -max_total_time="$seconds" -max_len=8192 -print_final_stats=1) >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz.sh: $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
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

#!/usr/bin/env bash
# Profile one authority under load and draw a flamegraph.
#
#   scripts/flamegraph.sh [--rate R] [--duration S] [--shards N] [--phase P] [--out DIR] [--portable]
#   scripts/flamegraph.sh --callgrind [--rate R] [--duration S] ...
#
# Default: perf record -e cpu-clock at 997 Hz (hardware counters are not available here) with
# DWARF call graphs (the release profile keeps line tables, so no frame-pointer build is
# needed), folded and drawn by the inferno crate (installed under target/tools unless on the
# PATH), plus the top entries as text (DIR/top.txt) and loadgen's JSON (DIR/loadgen.json), both
# printed. The binaries are bench.sh's (native CPU unless --portable). --callgrind runs the
# authority under valgrind for repeatable instruction counts instead; valgrind cannot run
# AVX-512 code, so that build is portable. perf and valgrind come from Debian's packages,
# installed if missing. Fails if the profile comes out empty.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rate=20000 duration=10 shards=2 phase=orders out=profile callgrind=false flavour=native
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --phase) phase=$(value "$@"); shift 2 ;;
        --out) out=$(value "$@"); shift 2 ;;
        --portable) flavour=portable; shift ;;
        --callgrind) callgrind=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

if $callgrind; then
    need_deb valgrind valgrind
    # valgrind masks the CPU features it cannot run, so the run-time choice avoids AVX-512.
    flavour=portable
    if [ "$rate" = 20000 ]; then rate=500; fi
else
    need_deb perf linux-perf
    inferno=target/tools/bin
    if command -v inferno-flamegraph >/dev/null 2>&1; then
        inferno=$(dirname "$(command -v inferno-flamegraph)")
    elif ! [ -x "$inferno/inferno-flamegraph" ]; then
        step "installing inferno into target/tools"
        cargo install --quiet --locked inferno --root target/tools >&2
    fi
fi
build_binaries "$flavour"

make_work
generate_committee 1 "$shards"
accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.1 + 1000 }')
genesis "$accounts"
if $callgrind; then
    # Under valgrind: the recorded PID is valgrind's, which runs the server itself.
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        "$bin/server" --server "$work/server1.json" run --initial-accounts "$work/initial_accounts.txt" \
        --committee "$work/committee.json" --stats-interval 0 2> "$work/server1.log" &
    pid_of[server1]=$!
    wait_listening server1
else
    start_committee 1
fi

extra=()
if [ "$phase" = confirmations ]; then extra=(--offline-certificates --keys "$work/server1.json" --target 0); fi
if ! $callgrind; then
    perf record -e cpu-clock -F 997 --call-graph dwarf -p "${pid_of[server1]}" -o "$out/perf.data" \
        -- sleep "$((duration + 1))" 2> "$work/perf.log" &
    perf_pid=$!
fi
step "loadgen --phase $phase --rate $rate --duration $duration"
"$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" --rate "$rate" \
    --duration "$duration" --phase "$phase" "${extra[@]}" > "$out/loadgen.json"
stop_server server1

# The top entries: filtered by awk, which reads its input to the end (a `head` that stops
# reading early would kill the writer with SIGPIPE and, under pipefail, the script: exit 141).
top='/^ +[0-9.]+%/ && n < 25 { print substr($0, 1, 160); n++ }'
if $callgrind; then
    callgrind_annotate "$out/callgrind.out" 2>/dev/null | awk 'NR <= 40' > "$out/top.txt"
else
    # perf's status is no guide: it stops early, and not with 0, once the server it follows
    # exits; what it recorded is checked below.
    wait "$perf_pid" || true
    step "folding the stacks (perf script)"
    perf script -i "$out/perf.data" --no-inline 2>/dev/null | "$inferno/inferno-collapse-perf" > "$out/folded.txt"
    [ -s "$out/folded.txt" ] || { cat "$work/perf.log" >&2; fail "perf recorded no stacks"; }
    "$inferno/inferno-flamegraph" < "$out/folded.txt" > "$out/flamegraph.svg"
    perf report -i "$out/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        awk "$top" > "$out/top.txt"
fi
[ -s "$out/top.txt" ] || fail "the profile's top entries are empty"
cat "$out/top.txt"
cat "$out/loadgen.json"
step "results in $out"

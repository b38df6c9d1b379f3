#!/usr/bin/env bash
# Profile one authority under load and draw a flamegraph.
#
#   scripts/flamegraph.sh [--rate R] [--duration S] [--shards N] [--phase P] [--out DIR]
#   scripts/flamegraph.sh --callgrind [--rate R] [--duration S] ...
#
# Default: perf record -e cpu-clock (hardware counters are not available here) with frame
# pointers, folded and drawn by the inferno crate (installed under target/tools), plus the
# top entries as text. --callgrind runs the authority under valgrind for repeatable
# instruction counts instead; valgrind cannot run AVX-512 code, so that build is portable.
# perf and valgrind come from Debian's packages, installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=20000 duration=10 shards=2 phase=orders out=profile callgrind=false
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --phase) phase=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --callgrind) callgrind=true; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "flamegraph.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
install_deb() { command -v "$1" >/dev/null 2>&1 || apt-get install -y -q "$2" >/dev/null 2>&1 || sudo apt-get install -y -q "$2" >/dev/null; }

if $callgrind; then
    install_deb valgrind valgrind
    # No avx512 cfg and no native CPU: instructions valgrind can run.
    export RUSTFLAGS="-C force-frame-pointers=yes"
    export CARGO_TARGET_DIR="$PWD/target/portable"
    $callgrind && [ "$rate" = 20000 ] && rate=500
else
    install_deb perf linux-perf
    export RUSTFLAGS='-C force-frame-pointers=yes -C target-cpu=native --cfg curve25519_dalek_backend="avx512"'
    export CARGO_TARGET_DIR="$PWD/target/profiling"
    if ! [ -x target/tools/bin/inferno-flamegraph ]; then
        echo "==> installing inferno into target/tools" >&2
        cargo install --quiet --locked inferno --root target/tools >&2
    fi
fi
echo "==> building" >&2
cargo build --release --locked -p fastpay-engine -p fastpay-loadgen >&2
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill -INT "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(( 30000 + RANDOM % 20000 ))
"$bin/server" --server "$work/server.json" generate --host 127.0.0.1 --port "$port" --shards "$shards" > "$work/committee.json"
accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.1 + 1000 }')
"$bin/loadgen" genesis --accounts "$accounts" > "$work/initial_accounts.txt"
run=("$bin/server" --server "$work/server.json" run --initial-accounts "$work/initial_accounts.txt"
     --committee "$work/committee.json" --stats-interval 0)
if $callgrind; then
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "${run[@]}" 2> "$work/server.log" &
else
    "${run[@]}" 2> "$work/server.log" &
fi
server_pid=$!
for _ in $(seq 1 600); do grep -q listening "$work/server.log" && break; sleep 0.1; done

extra=()
if [ "$phase" = confirmations ]; then extra=(--offline-certificates --keys "$work/server.json" --target 0); fi
if ! $callgrind; then
    perf record -e cpu-clock -g -p "$server_pid" -o "$out/perf.data" -- sleep "$((duration + 1))" 2>/dev/null &
    perf_pid=$!
fi
"$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" --rate "$rate" \
    --duration "$duration" --phase "$phase" "${extra[@]}" > "$out/loadgen.json"
kill -INT "$server_pid"; wait "$server_pid" || true; server_pid=""

if $callgrind; then
    callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -40 > "$out/top.txt"
else
    wait "$perf_pid" || true
    perf script -i "$out/perf.data" 2>/dev/null | target/tools/bin/inferno-collapse-perf > "$out/folded.txt"
    target/tools/bin/inferno-flamegraph < "$out/folded.txt" > "$out/flamegraph.svg"
    perf report -i "$out/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -25 | cut -c1-160 > "$out/top.txt"
fi
cat "$out/top.txt"
cat "$out/loadgen.json"
echo "==> results in $out" >&2

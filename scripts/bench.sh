#!/usr/bin/env bash
# One command for a benchmark: build in release, generate a committee, start the
# authorities, run loadgen, stop only the processes started here, and print the results
# (loadgen's JSON is the last line on stdout). The reference's one-process `./bench` is the
# `bench` binary (target/release/bench).
#
#   scripts/bench.sh [--authorities K] [--shards N] [--rate R] [--duration S]
#                    [--phase orders|confirmations|payments] [--target all|I]
#                    [--cores LIST] [--loadgen-cores LIST] [--no-steering] [--check]
#                    [--portable] [--no-durability] [--tick-us US]
#                    [--vote-scheme single|merkle]
#
# Defaults: 1 authority, 2 shards, 20000 requests/s for 5 s, orders, every core.
# Binaries are built for this machine's CPU (-C target-cpu=native, in target/native);
# --portable uses the ordinary release build (AVX-512 chosen at run time). Authorities keep
# durable state (fsynced per batch) in the temporary directory unless --no-durability.
# With one authority measured alone in the confirmations phase, certificates are signed
# offline with every authority's key (as the reference benchmark did). --check exits non-zero
# unless every request succeeded (CI's smoke run). --cores pins the authorities' shards,
# --loadgen-cores pins loadgen (taskset), to keep them apart where the machine allows.
# --tick-us sets loadgen's pacing tick (default 200 µs; see `loadgen --help`).
# --vote-scheme merkle generates authorities that sign one Merkle root per batch of votes
# (default single: one signature per vote); loadgen pads its requests to match.
set -euo pipefail
cd "$(dirname "$0")/.."

authorities=1 shards=2 rate=20000 duration=5 phase=orders target=all
cores="" loadgen_cores="" steering="" check=false portable=false durability= tick=()
vote_scheme=single
while [ $# -gt 0 ]; do
    case "$1" in
        --authorities) authorities=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --phase) phase=$2; shift 2 ;;
        --target) target=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --loadgen-cores) loadgen_cores=$2; shift 2 ;;
        --no-steering) steering=--no-steering; shift ;;
        --check) check=true; shift ;;
        --portable) portable=true; shift ;;
        --no-durability) durability=--no-durability; shift ;;
        --tick-us) tick=(--tick-us "$2"); shift 2 ;;
        --vote-scheme) vote_scheme=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

. scripts/lib.sh
if $portable; then build_binaries portable; else build_binaries native; fi
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Free ports: each authority needs its port and one link port per shard after it.
port_base=$(( 20000 + (RANDOM % 2000) * 10 ))
: > "$work/committee.json"
keys=()
for i in $(seq 1 "$authorities"); do
    port=$(( port_base + (i - 1) * (shards + 2) ))
    "$bin/server" --server "$work/server$i.json" generate --host 127.0.0.1 --port "$port" \
        --shards "$shards" --vote-scheme "$vote_scheme" >> "$work/committee.json"
    keys+=("$work/server$i.json")
done
accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.05 + 1000 }')
echo "==> $accounts accounts" >&2
"$bin/loadgen" genesis --accounts "$accounts" > "$work/initial_accounts.txt"

echo "==> starting $authorities authorit$([ "$authorities" = 1 ] && echo y || echo ies) × $shards shards" >&2
for i in $(seq 1 "$authorities"); do
    "$bin/server" --server "$work/server$i.json" run --initial-accounts "$work/initial_accounts.txt" \
        --committee "$work/committee.json" ${cores:+--cores "$cores"} $steering $durability --stats-interval 0 \
        2> "$work/server$i.log" &
    pids+=($!)
done
for i in $(seq 1 "$authorities"); do
    wait_listening "${pids[$((i - 1))]}" "$work/server$i.log"
done

extra=()
if [ "$phase" = confirmations ] && [ "$target" != all ]; then
    extra=(--offline-certificates --keys "$(IFS=,; echo "${keys[*]}")")
fi
echo "==> loadgen --phase $phase --rate $rate --duration $duration --target $target" >&2
runner=()
[ -n "$loadgen_cores" ] && runner=(taskset -c "$loadgen_cores")
result=$("${runner[@]}" "$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase "$phase" --target "$target" "${tick[@]}" "${extra[@]}")

for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()
echo "==> authority 1 counters" >&2
grep -v ":$" "$work/server1.log" | tail -n "$((shards + 1))" >&2
echo "$result"
if $check; then
    echo "$result" | python3 -c '
import json, sys
r = json.load(sys.stdin)
bad = r["sent"] == 0 or r["ok"] != r["sent"] or r["rejected"] or r["timeouts"] or r["equivocations"]
print("smoke: %d sent, %d ok, %d rejected, %d timeouts, %d equivocations" % (r["sent"], r["ok"], r["rejected"], r["timeouts"], r["equivocations"]), file=sys.stderr)
sys.exit(1 if bad else 0)'
fi

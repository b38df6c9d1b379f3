#!/usr/bin/env bash
# Steady-state memory: one durable authority under a constant order load for a long run,
# its RSS sampled every 10 s. Prints the samples (seconds, kB) on stderr and loadgen's JSON,
# extended with the first and last RSS, last on stdout.
#
#   scripts/soak.sh [--rate R] [--duration S] [--shards N] [--snapshot-after-bytes B]
#
# Defaults: 3000 orders/s for 300 s, 2 shards, the server's default snapshot threshold.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=3000 duration=300 shards=2 snapshot=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --snapshot-after-bytes) snapshot=(--snapshot-after-bytes "$2"); shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

. scripts/lib.sh
build_binaries native
work=$(mktemp -d)
server_pid="" sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$server_pid" ]; then kill -INT "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.02 + 1000 }')
start_authority "$work" "$shards" "$accounts" "${snapshot[@]}"
(
    start=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
        echo "$(( $(date +%s) - start )) $(awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status")"
        sleep 10
    done
) > "$work/rss.txt" &
sampler_pid=$!
result=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase orders)
sleep 1
kill "$sampler_pid" 2>/dev/null || true; sampler_pid=""
echo "==> RSS samples (s kB)" >&2
cat "$work/rss.txt" >&2
grep "snapshot" "$work/server.log" >&2 || true
first=$(head -1 "$work/rss.txt" | cut -d' ' -f2)
last=$(tail -1 "$work/rss.txt" | cut -d' ' -f2)
echo "$result" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r["rss_kb_start"], r["rss_kb_end"] = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps(r))' "$first" "$last"

#!/usr/bin/env bash
# Steady-state memory: one durable authority under a constant order load for a long run,
# its RSS sampled every 10 s. Prints the samples (seconds, kB) on stderr and loadgen's JSON,
# extended with the first and last RSS, last on stdout.
#
#   scripts/soak.sh [--rate R] [--duration S] [--shards N] [--snapshot-after-bytes B]
#                   [--portable] [--check]
#
# Defaults: 3000 orders/s for 300 s, 2 shards, the server's default snapshot threshold.
# --check fails the run unless every order was answered (CI's smoke run). Fails if no RSS
# sample was taken.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rate=3000 duration=300 shards=2 snapshot=() flavour=native check=false
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --snapshot-after-bytes) snapshot=(--snapshot-after-bytes "$(value "$@")"); shift 2 ;;
        --portable) flavour=portable; shift ;;
        --check) check=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries "$flavour"
make_work
sampler_pid=""
at_exit '[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null'
generate_committee 1 "$shards"
accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.02 + 1000 }')
genesis "$accounts"
start_committee 1 "${snapshot[@]}"
server_pid=${pid_of[server1]}
(
    start=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
        echo "$(( $(date +%s) - start )) $(awk '/VmRSS/ { print $2 }' "/proc/$server_pid/status")"
        sleep 10
    done
) > "$work/rss.txt" &
sampler_pid=$!
step "loadgen --phase orders --rate $rate --duration $duration"
result=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase orders)
sleep 1
kill "$sampler_pid" 2>/dev/null || true; sampler_pid=""
step "RSS samples (s kB)"
cat "$work/rss.txt" >&2
grep "snapshot" "$work/server1.log" >&2 || true
first=$(head -1 "$work/rss.txt" | cut -d' ' -f2)
last=$(tail -1 "$work/rss.txt" | cut -d' ' -f2)
[ -n "$first" ] && [ -n "$last" ] || fail "no RSS sample of the authority"
result=$(echo "$result" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r["rss_kb_start"], r["rss_kb_end"] = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps(r))' "$first" "$last")
echo "$result"
if $check; then check_all_ok <<< "$result"; fi

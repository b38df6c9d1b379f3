#!/usr/bin/env bash
# Crash test with real processes: loadgen runs payments against 4 authorities while one
# authority (or, with --per-shard, one shard process of authority 1) is killed with SIGKILL at
# random moments and restarted. Afterwards every authority must hold exactly the genesis supply
# (`loadgen audit`), loadgen must have seen no authority vote for two different orders of one
# account and sequence number, and every payment loadgen saw confirmed by a quorum must have
# moved its sender at a quorum of authorities. Exits non-zero on any violation.
#
#   scripts/crash.sh [--per-shard] [--kills N] [--rate R] [--duration S]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

per_shard=false kills=6 rate=1000 duration=8
while [ $# -gt 0 ]; do
    case "$1" in
        --per-shard) per_shard=true; shift ;;
        --kills) kills=$(value "$@"); shift 2 ;;
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries portable
make_work
generate_committee 4 2
accounts=$(( rate * duration + 500 ))
genesis "$accounts" --funding 100

# Process names: "server1" (authority 1 whole) or "server1-0"/"server1-1" (its shards), then
# "server2".."server4"; the first `victims` of them are killed.
names=()
if $per_shard; then names+=(server1-0 server1-1); else names+=(server1); fi
names+=(server2 server3 server4)
victims=4
$per_shard && victims=2
start() {
    local name=$1 authority=${1#server} shard=()
    authority=${authority%%-*}
    [ "$name" != "server$authority" ] && shard=(--shard "${name#*-}")
    start_server "$name" "$authority" --snapshot-after-bytes 200000 "${shard[@]}"
}
for name in "${names[@]}"; do start "$name"; done
wait_listening "${names[@]}"

step "loadgen payments at $rate/s for $duration s, $kills SIGKILLs"
"$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" --rate "$rate" \
    --duration "$duration" --phase payments --timeout-ms 3000 > "$work/loadgen.json" 2> "$work/loadgen.log" &
loadgen=$!
for k in $(seq 1 "$kills"); do
    sleep "0.$(( RANDOM % 9 + 1 ))"
    victim=${names[$(( RANDOM % victims ))]}
    echo "    kill $k: $victim" >&2
    stop_server "$victim" KILL
    sleep "0.$(( RANDOM % 5 + 1 ))"
    start "$victim"
done
# On a failure below, the end of every log says why (the work directory is removed at exit).
show_logs() {
    [ "$exit_status" = 0 ] && return
    local log
    for log in "$work"/*.log; do
        echo "---- end of $(basename "$log")" >&2
        tail -n 15 "$log" >&2
    done
}
at_exit show_logs
wait "$loadgen" || fail "loadgen exited with status $?"
sleep 1
"$bin/loadgen" audit --committee "$work/committee.json" --accounts "$accounts" \
    > "$work/audit.json" 2> "$work/audit.log" || fail "loadgen audit exited with status $?"

python3 - "$work/loadgen.json" "$work/audit.json" "$accounts" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
audit = json.load(open(sys.argv[2]))
accounts = int(sys.argv[3])
supply = accounts * 100
ok = True
print(f"loadgen: {run['sent']} payments, {run['ok']} confirmed by a quorum, "
      f"{run['rejected']} rejected, {run['timeouts']} timed out, {run['equivocations']} equivocations")
if run["equivocations"]:
    print("FAIL: an authority voted for two different orders"); ok = False
for a in audit["authorities"]:
    print(f"authority {a['authority'][:8]}: supply {a['total_balance']}, {a['accounts_moved']} senders moved")
    if int(a["total_balance"]) != supply:
        print(f"FAIL: supply is {a['total_balance']}, genesis was {supply}"); ok = False
# Every payment confirmed by a quorum (3 of 4) moved its sender at 3 authorities at least.
at_quorum = audit["accounts_moved_at_quorum"]
print(f"senders moved at a quorum of authorities: {at_quorum}")
if at_quorum < run["ok"]:
    print(f"FAIL: {run['ok']} payments were confirmed but only {at_quorum} senders moved at a quorum"); ok = False
sys.exit(0 if ok else 1)
PY

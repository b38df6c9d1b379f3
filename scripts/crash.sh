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
cd "$(dirname "$0")/.."

per_shard=false kills=6 rate=1000 duration=8
while [ $# -gt 0 ]; do
    case "$1" in
        --per-shard) per_shard=true; shift ;;
        --kills) kills=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "crash.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

echo "==> building (release, portable)" >&2
cargo build --release --locked -p fastpay-engine -p fastpay-loadgen >&2
bin="$PWD/target/release"
work=$(mktemp -d)
declare -A pids=()
cleanup() {
    for key in "${!pids[@]}"; do kill -9 "${pids[$key]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port_base=$(( 30000 + (RANDOM % 1500) * 10 ))
for i in 1 2 3 4; do
    "$bin/server" --server "$work/server$i.json" generate --host 127.0.0.1 \
        --port $(( port_base + i * 4 )) --shards 2 >> "$work/committee.json"
done
accounts=$(( rate * duration + 500 ))
"$bin/loadgen" genesis --accounts "$accounts" --funding 100 > "$work/initial_accounts.txt"

# Process names: "1" (authority 1 whole) or "1-0"/"1-1" (its shards), then "2".."4".
names=()
if $per_shard; then names+=(1-0 1-1); else names+=(1); fi
names+=(2 3 4)


victims=4
$per_shard && victims=2
start() {
    local name=$1 authority=${1%%-*} shard=()
    [ "$name" != "$authority" ] && shard=(--shard "${name#*-}")
    "$bin/server" --server "$work/server$authority.json" run "${shard[@]}" \
        --initial-accounts "$work/initial_accounts.txt" --committee "$work/committee.json" \
        --stats-interval 0 --snapshot-after-bytes 200000 2>> "$work/server$name.log" &
    pids[$name]=$!
}
for name in "${names[@]}"; do start "$name"; done
sleep 1

echo "==> loadgen payments at $rate/s for $duration s, $kills SIGKILLs" >&2
"$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" --rate "$rate" \
    --duration "$duration" --phase payments --timeout-ms 3000 > "$work/loadgen.json" 2> "$work/loadgen.log" &
loadgen=$!
for k in $(seq 1 "$kills"); do
    sleep "0.$(( RANDOM % 9 + 1 ))"
    victim=${names[$(( RANDOM % victims ))]}
    echo "    kill $k: $victim" >&2
    kill -9 "${pids[$victim]}" 2>/dev/null || true
    wait "${pids[$victim]}" 2>/dev/null || true
    sleep "0.$(( RANDOM % 5 + 1 ))"
    start "$victim"
done
wait "$loadgen"
sleep 1
"$bin/loadgen" audit --committee "$work/committee.json" --accounts "$accounts" > "$work/audit.json" 2>/dev/null

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

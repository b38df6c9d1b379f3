#!/usr/bin/env bash
# Valid throughput under floods, against one running authority: clean runs and runs with
# forged signatures (--flood-invalid), garbage bytes (--flood-garbage) or forged confirmations
# from fresh senders (--flood-confirmations) mixed in, and, with --per-shard (each shard its
# own process), garbage at the shards' link ports; taken in turn so that all cases see the
# same machine, then the median of each and its ratio to the clean median, and the
# authority's memory (RSS, summed over its processes) before and after. The JSON summary is
# the last line on stdout.
#
#   scripts/flood.sh [--rate R] [--duration S] [--repeats N] [--shards N] [--per-shard]
#                    [--invalid SHARE] [--garbage SHARE] [--confirmations SHARE] [--portable]
#
# Defaults: 30000 valid orders/s for 3 s, 3 repeats, 2 shards, invalid share 0.5, garbage
# share 0.9, forged-confirmation share 0.5 (shares of everything sent). The authority keeps
# durable state, as in production.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=30000 duration=3 repeats=3 shards=2 invalid=0.5 garbage=0.9 confirmations=0.5
portable=false per_shard=false
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --invalid) invalid=$2; shift 2 ;;
        --garbage) garbage=$2; shift 2 ;;
        --confirmations) confirmations=$2; shift 2 ;;
        --per-shard) per_shard=true; shift ;;
        --portable) portable=true; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "flood.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

. scripts/lib.sh
if $portable; then build_binaries portable; else build_binaries native; fi
work=$(mktemp -d)
server_pid=""
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cases=(clean invalid garbage confirmations)
$per_shard && cases+=(link)
per_run=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.05 + 100 }')
runs=$(( repeats * ${#cases[@]} ))
# Every run gets fresh accounts; the invalid flood forges orders from the last 1000.
accounts=$(( per_run * runs + 2000 ))
if $per_shard; then
    # One process per shard, linked over UDP (the link ports are the committee's port + 1 + j).
    port=$(( 20000 + (RANDOM % 2000) * 10 ))
    "$bin/server" --server "$work/server.json" generate --host 127.0.0.1 --port "$port" \
        --shards "$shards" > "$work/committee.json"
    echo "==> genesis: $accounts accounts" >&2
    "$bin/loadgen" genesis --accounts "$accounts" > "$work/initial_accounts.txt"
    links=()
    for j in $(seq 0 $(( shards - 1 ))); do
        "$bin/server" --server "$work/server.json" run --shard "$j" \
            --initial-accounts "$work/initial_accounts.txt" --committee "$work/committee.json" \
            --stats-interval 0 2> "$work/server-$j.log" &
        pids+=($!)
        wait_listening "$!" "$work/server-$j.log"
        links+=("127.0.0.1:$(( port + 1 + j ))")
    done
    link_targets=$(IFS=,; echo "${links[*]}")
else
    start_authority "$work" "$shards" "$accounts"
    pids=("$server_pid")
fi
rss() {
    local total=0
    for pid in "${pids[@]}"; do
        total=$(( total + $(awk '/VmRSS/ { print $2 }' "/proc/$pid/status") ))
    done
    echo "$total"
}
rss_start=$(rss)

results="$work/results.jsonl"
n=0
for r in $(seq 1 "$repeats"); do
    for case in "${cases[@]}"; do
        flood=()
        [ "$case" = invalid ] && flood=(--flood-invalid "$invalid")
        [ "$case" = garbage ] && flood=(--flood-garbage "$garbage")
        [ "$case" = confirmations ] && flood=(--flood-confirmations "$confirmations")
        [ "$case" = link ] && flood=(--flood-garbage "$garbage" --flood-to "$link_targets")
        echo "==> run $r: $case" >&2
        out=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
            --account-offset $(( n * per_run )) --rate "$rate" --duration "$duration" \
            --phase orders "${flood[@]}" 2>/dev/null)
        n=$(( n + 1 ))
        echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r["case"] = sys.argv[1]
r["rss_kb"] = int(sys.argv[2])
print(json.dumps(r))' "$case" "$(rss)" >> "$results"
    done
done
# A snapshot being written holds a copy of a shard's state until it lands: let any finish
# (up to a minute) so that the memory measured is what the floods left.
for _ in $(seq 1 600); do
    started=$(cat "$work"/server*.log | grep -c "snapshot started" || true)
    written=$(cat "$work"/server*.log | grep -c "snapshot written" || true)
    [ "$started" = "$written" ] && break
    sleep 0.1
done
rss_end=$(rss)

python3 - "$results" "$rate" "$duration" "$invalid" "$garbage" "$confirmations" "$rss_start" "$rss_end" <<'PY'
import json, statistics, sys
path, rate, duration, invalid, garbage, confirmations, rss_start, rss_end = sys.argv[1:]
runs = [json.loads(line) for line in open(path)]
def valid_rate(r):
    return r["ok"] / r["duration_s"]
summary = {"offered_valid_rate": float(rate), "duration_s": float(duration),
           "invalid_share": float(invalid), "garbage_share": float(garbage),
           "confirmations_share": float(confirmations),
           "rss_kb_start": int(rss_start), "rss_kb_end": int(rss_end), "cases": {}}
present = [c for c in ("clean", "invalid", "garbage", "confirmations", "link")
           if any(r["case"] == c for r in runs)]
for case in present:
    rates = [valid_rate(r) for r in runs if r["case"] == case]
    p99 = [r["latency_us"]["p99"] for r in runs if r["case"] == case]
    summary["cases"][case] = {"valid_per_s": [round(x) for x in rates],
                              "median_valid_per_s": round(statistics.median(rates)),
                              "median_p99_us": statistics.median(p99)}
clean = summary["cases"]["clean"]["median_valid_per_s"]
for case in present[1:]:
    c = summary["cases"][case]
    c["ratio_to_clean"] = round(c["median_valid_per_s"] / clean, 3) if clean else None
print("case           valid/s (runs)                 median   ratio   p99 ms", file=sys.stderr)
for case, c in summary["cases"].items():
    print(f"{case:14} {str(c['valid_per_s']):30} {c['median_valid_per_s']:7}   "
          f"{c.get('ratio_to_clean', 1.0):5}   {c['median_p99_us'] / 1000:.1f}", file=sys.stderr)
print(f"authority RSS: {int(rss_start) // 1024} MiB before, {int(rss_end) // 1024} MiB after",
      file=sys.stderr)
print(json.dumps(summary))
PY
echo "==> authority counters" >&2
for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
pids=()
for log in "$work"/server*.log; do grep -v ":$" "$log" | tail -n "$((shards + 1))" >&2; done

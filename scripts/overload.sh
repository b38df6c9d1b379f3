#!/usr/bin/env bash
# Goodput under overload: runs scripts/bench.sh at 1×, 2× and 4× a rate the authority sustains
# (--rate), with the authorities' load shedding on (the default budget, or --shed-after-ms) and
# off (--shed-after-ms 0), alternating, and prints per case the medians of goodput (orders
# answered within loadgen's 2 s timeout, per second), p50/p99 of what was answered, shed and
# timed-out orders. Writes every run to DIR/overload.csv and the medians to DIR/summary.csv.
#
#   scripts/overload.sh --rate R [--multiples "1 2 4"] [--runs 3] [--duration S]
#                       [--shards N] [--cores LIST] [--loadgen-cores LIST]
#                       [--shed-after-ms MS] [--out DIR] [--no-durability] [--portable]
#
# Defaults: 1 shard pinned to core 0, loadgen on core 1, 3 s per run, 3 runs per case, durable,
# out=overload. Find R first (scripts/scale-cores.sh, or bench.sh runs that keep p99 low).
# --portable passes on to bench.sh. Fails if a run answered nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rate="" multiples="1 2 4" runs=3 duration=3 shards=1 cores=0 loadgen_cores=1 budget=200
out=overload durability=() portable=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$(value "$@"); shift 2 ;;
        --multiples) multiples=$(value "$@"); shift 2 ;;
        --runs) runs=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --cores) cores=$(value "$@"); shift 2 ;;
        --loadgen-cores) loadgen_cores=$(value "$@"); shift 2 ;;
        --shed-after-ms) budget=$(value "$@"); shift 2 ;;
        --out) out=$(value "$@"); shift 2 ;;
        --no-durability) durability=(--no-durability); shift ;;
        --portable) portable=(--portable); shift ;;
        *) help_or_die "$1" ;;
    esac
done
[ -n "$rate" ] || die "--rate is required"
mkdir -p "$out"
echo "multiple,shedding,run,offered,goodput,p50_us,p99_us,shed,timeouts,of_ceiling" > "$out/overload.csv"

for multiple in $multiples; do
    offered=$((rate * multiple))
    for run in $(seq 1 "$runs"); do
        for shedding in on off; do
            budget_now=$budget
            [ "$shedding" = off ] && budget_now=0
            step "${multiple}× ($offered/s), shedding $shedding, run $run"
            line=$(bench_json --shards "$shards" --cores "$cores" --loadgen-cores "$loadgen_cores" \
                --rate "$offered" --duration "$duration" --shed-after-ms "$budget_now" \
                "${durability[@]}" "${portable[@]}")
            echo "$line" | python3 -c '
import json, sys
r = json.load(sys.stdin)
m, s, run = sys.argv[1:4]
print(",".join(str(x) for x in [m, s, run, round(r["offered_rate"]), round(r["goodput"]),
      r["latency_us"]["p50"], r["latency_us"]["p99"], r["shed"], r["timeouts"],
      round(r["of_ceiling"] or 0, 3)]))' "$multiple" "$shedding" "$run" | tee -a "$out/overload.csv" >&2
        done
    done
done

python3 - "$out" "$rate" <<'PY'
import csv, statistics, sys
out, rate = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/overload.csv")))
cases = {}
for r in rows:
    cases.setdefault((int(r["multiple"]), r["shedding"]), []).append(r)
with open(f"{out}/summary.csv", "w") as f:
    w = csv.writer(f)
    w.writerow(["multiple", "shedding", "offered", "goodput", "goodput_share", "p50_us", "p99_us", "shed", "timeouts"])
    print(f"{'offered':>10} {'shedding':>8} {'goodput/s':>10} {'of R':>6} {'p50 us':>9} {'p99 us':>9} {'shed':>9} {'timeouts':>9}")
    for (m, s), rs in sorted(cases.items()):
        med = lambda k: statistics.median(float(r[k]) for r in rs)
        row = [m, s, round(med("offered")), round(med("goodput")), round(med("goodput") / rate, 3),
               round(med("p50_us")), round(med("p99_us")), round(med("shed")), round(med("timeouts"))]
        w.writerow(row)
        print(f"{row[2]:>10} {s:>8} {row[3]:>10} {row[4]:>6} {row[5]:>9} {row[6]:>9} {row[7]:>9} {row[8]:>9}")
if any(float(r["goodput"]) <= 0 for r in rows):
    sys.exit("overload.sh: FAIL: a run answered nothing (goodput 0)")
PY
step "$out/overload.csv (every run) and $out/summary.csv (medians)"

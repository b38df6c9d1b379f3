#!/usr/bin/env bash
# Steady-state memory: durable authorities under a constant load for a long run, the RSS of
# each sampled every --interval seconds. Prints the samples on stderr as they are taken (one
# line: seconds, then kB per authority, then their sum) and loadgen's JSON, extended with the
# RSS figures below, last on stdout.
#
#   scripts/soak.sh [--phase orders|payments] [--authorities K] [--shards N] [--rate R]
#                   [--duration S] [--rounds K] [--interval S] [--snapshot-after-bytes B]
#                   [--portable] [--check]
#
# Defaults: orders at 3000/s for 300 s against 1 authority of 2 shards, samples every 10 s,
# the server's default snapshot threshold. `--phase payments --authorities 4` runs whole
# payments (order, certificate, confirmation) through a committee of four.
#
# --rounds K splits the run into K loadgen runs over the same accounts (each account pays
# once a round, at sequence number 0, 1, ...), so the genesis is K times smaller and, after
# the first round, no request touches an account for the first time: what a shard keeps per
# account is all there, and memory that still grows grows per request. With one round (the
# default) every request comes from a fresh account.
#
# Added to the JSON: "rss_kb" per authority ("start", "end", "max": the first, last and largest
# sample) and "rss_kb_total" (the same for the sum), plus "growth_kb_per_s" of the sum over the
# first and the last third of the samples (a least-squares slope each): memory that levels off
# shows a last-third slope near zero. --check fails the run unless every request succeeded
# (CI's smoke run). Fails if no RSS sample was taken.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

phase=orders authorities=1 rate=3000 duration=300 shards=2 interval=10 snapshot=() rounds=1
flavour=native check=false
while [ $# -gt 0 ]; do
    case "$1" in
        --phase) phase=$(value "$@"); shift 2 ;;
        --authorities) authorities=$(value "$@"); shift 2 ;;
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --rounds) rounds=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --interval) interval=$(value "$@"); shift 2 ;;
        --snapshot-after-bytes) snapshot=(--snapshot-after-bytes "$(value "$@")"); shift 2 ;;
        --portable) flavour=portable; shift ;;
        --check) check=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done
case "$phase" in
    orders|payments) ;;
    *) die "--phase must be orders or payments, not $phase" ;;
esac

build_binaries "$flavour"
make_work
sampler_pid=""
at_exit '[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null'
generate_committee "$authorities" "$shards"
[ "$rounds" -ge 1 ] 2>/dev/null || die "--rounds must be a whole number from 1"
round_s=$(( duration / rounds ))
[ "$round_s" -ge 1 ] || die "--duration must be at least --rounds seconds"
accounts=$(awk -v r="$rate" -v d="$round_s" 'BEGIN { printf "%d", r * d * 1.02 + 1000 }')
genesis "$accounts"
start_committee "$authorities" "${snapshot[@]}"
pids=()
for i in $(seq 1 "$authorities"); do pids+=("${pid_of[server$i]}"); done
step "RSS samples every ${interval} s: seconds, kB of authorities 1..$authorities, their sum"
(
    start=$(date +%s)
    while kill -0 "${pids[0]}" 2>/dev/null; do
        line="$(( $(date +%s) - start ))" sum=0
        for pid in "${pids[@]}"; do
            kb=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
            line="$line ${kb:-0}" sum=$(( sum + ${kb:-0} ))
        done
        echo "$line $sum"
        echo "$line $sum" >&2
        sleep "$interval"
    done
) > "$work/rss.txt" &
sampler_pid=$!
: > "$work/rounds.jsonl"
for round in $(seq 0 $(( rounds - 1 ))); do
    step "loadgen --phase $phase --rate $rate --duration $round_s (round $(( round + 1 )) of $rounds)"
    "$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
        --rate "$rate" --duration "$round_s" --phase "$phase" --sequence-number "$round" \
        --in-flight "$(awk -v r="$rate" 'BEGIN { printf "%d", r * 3 + 1000 }')" >> "$work/rounds.jsonl"
done
# One report: the last round's, with the counts summed over the rounds and each round's
# figures listed.
result=$(python3 -c '
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
r = dict(runs[-1])
for key in ("sent", "ok", "rejected", "timeouts", "equivocations"):
    r[key] = sum(run[key] for run in runs)
if len(runs) > 1:
    r["rounds"] = [{"ok": run["ok"], "sent": run["sent"], "timeouts": run["timeouts"],
                    "p99_us": run["latency_us"]["p99"]} for run in runs]
print(json.dumps(r))' "$work/rounds.jsonl")
sleep 1
kill "$sampler_pid" 2>/dev/null || true; sampler_pid=""
grep -h "snapshot" "$work"/server*.log >&2 || true
[ -s "$work/rss.txt" ] || fail "no RSS sample of the authorities"
result=$(python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
rows = [list(map(int, line.split())) for line in open(sys.argv[1]) if line.strip()]
def figures(column):
    values = [row[column] for row in rows]
    return {"start": values[0], "end": values[-1], "max": max(values)}
r["rss_kb"] = [figures(1 + i) for i in range(len(rows[0]) - 2)]
r["rss_kb_total"] = figures(-1)
def slope(part):
    if len(part) < 2:
        return None
    xs, ys = [row[0] for row in part], [row[-1] for row in part]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var, 1) if var else None
third = max(len(rows) // 3, 2)
r["growth_kb_per_s"] = {"first_third": slope(rows[:third]), "last_third": slope(rows[-third:])}
print(json.dumps(r))' "$work/rss.txt" <<< "$result")
echo "$result"
if $check; then check_all_ok <<< "$result"; fi

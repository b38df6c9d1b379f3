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
#                    [--phase orders|payments] [--invalid SHARE] [--garbage SHARE]
#                    [--confirmations SHARE] [--queries SHARE] [--portable] [--check]
#
# Defaults: 30000 valid orders/s for 3 s, 3 repeats, 2 shards, invalid share 0.5, garbage
# share 0.9, forged-confirmation share 0.5 (shares of everything sent). The authority keeps
# durable state, as in production. --check fails the run unless every valid order of every case
# was answered (CI's smoke run, at a rate the machine sustains).
#
# --phase payments runs whole payments instead (the authority is a committee of one, so each
# payment is an order, its certificate and its confirmation) in two cases: clean, and queries
# (--flood-queries: this share, default 0.5, of everything sent is payments queries of the
# smallest size for the run's recipients, whose certificates are being stored). Each case also
# reports the certificate store's writer: certificates it wrote per second of the run, and its
# largest backlog (certificates durable but not yet stored, sampled from /metrics every 0.2 s).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rate=30000 duration=3 repeats=3 shards=2 invalid=0.5 garbage=0.9 confirmations=0.5 queries=0.5
phase=orders flavour=native per_shard=false check=false
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --repeats) repeats=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --invalid) invalid=$(value "$@"); shift 2 ;;
        --garbage) garbage=$(value "$@"); shift 2 ;;
        --confirmations) confirmations=$(value "$@"); shift 2 ;;
        --queries) queries=$(value "$@"); shift 2 ;;
        --phase) phase=$(value "$@"); shift 2 ;;
        --per-shard) per_shard=true; shift ;;
        --portable) flavour=portable; shift ;;
        --check) check=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries "$flavour"
case "$phase" in
    orders) cases=(clean invalid garbage confirmations) ;;
    payments) cases=(clean queries) ;;
    *) die "--phase must be orders or payments, not $phase" ;;
esac
[ "$phase" = payments ] && $per_shard && die "--per-shard floods orders only (no --phase payments)"
make_work
$per_shard && cases+=(link)
per_run=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.05 + 100 }')
runs=$(( repeats * ${#cases[@]} ))
# Every run gets fresh accounts; the invalid flood forges orders from the last 1000.
accounts=$(( per_run * runs + 2000 ))
generate_committee 1 "$shards"
genesis "$accounts"
if $per_shard; then
    # One process per shard, linked over UDP (the link ports are the committee's port + 1 + j).
    names=() links=()
    for j in $(seq 0 $(( shards - 1 ))); do
        start_server "server1-$j" 1 --shard "$j"
        names+=("server1-$j")
        links+=("127.0.0.1:$(( port_base + 1 + j ))")
    done
    wait_listening "${names[@]}"
    link_targets=$(IFS=,; echo "${links[*]}")
else
    metrics="127.0.0.1:$(( port_base + shards + 1 ))"
    start_committee 1 --metrics-address "$metrics"
fi
# `metric NAME`: the authority's gauge NAME summed over its shards (0 without /metrics).
metric() {
    [ -n "${metrics:-}" ] || { echo 0; return; }
    python3 - "$metrics" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode()
name = "fastpay_shard_" + sys.argv[2]
print(sum(int(float(line.split()[-1])) for line in text.splitlines()
          if line.startswith(name + "{") or line.startswith(name + " ")))
PY
}
rss() {
    local total=0
    for pid in "${pid_of[@]}"; do
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
        [ "$case" = queries ] && flood=(--flood-queries "$queries")
        step "run $r: $case"
        stored_before=$(metric certificates_stored)
        # The store's largest backlog during the run, sampled in the background.
        ( peak=0; while :; do
              now=$(metric certificates_unstored 2>/dev/null) || now=0
              [ "$now" -gt "$peak" ] && peak=$now && echo "$peak" > "$work/peak"
              sleep 0.2
          done ) &
        peak_pid=$!
        echo 0 > "$work/peak"
        out=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
            --account-offset $(( n * per_run )) --rate "$rate" --duration "$duration" \
            --phase "$phase" "${flood[@]}" 2>/dev/null)
        kill "$peak_pid" 2>/dev/null; wait "$peak_pid" 2>/dev/null || true
        n=$(( n + 1 ))
        echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r["case"] = sys.argv[1]
r["rss_kb"] = int(sys.argv[2])
r["stored_per_s"] = (int(sys.argv[4]) - int(sys.argv[3])) / r["duration_s"]
r["unstored_peak"] = int(sys.argv[5])
print(json.dumps(r))' "$case" "$(rss)" "$stored_before" "$(metric certificates_stored)" \
            "$(cat "$work/peak")" >> "$results"
    done
done
# Let any snapshot being written land (up to a minute) so that the memory measured is what
# the floods left, not a snapshot's buffer.
for _ in $(seq 1 600); do
    started=$(cat "$work"/server*.log | grep -c "snapshot started" || true)
    written=$(cat "$work"/server*.log | grep -c "snapshot written" || true)
    [ "$started" = "$written" ] && break
    sleep 0.1
done
rss_end=$(rss)

python3 - "$results" "$rate" "$duration" "$invalid" "$garbage" "$confirmations" "$queries" \
    "$rss_start" "$rss_end" <<'PY'
import json, statistics, sys
path, rate, duration, invalid, garbage, confirmations, queries, rss_start, rss_end = sys.argv[1:]
runs = [json.loads(line) for line in open(path)]
def valid_rate(r):
    return r["ok"] / r["duration_s"]
summary = {"offered_valid_rate": float(rate), "duration_s": float(duration),
           "invalid_share": float(invalid), "garbage_share": float(garbage),
           "confirmations_share": float(confirmations), "queries_share": float(queries),
           "rss_kb_start": int(rss_start), "rss_kb_end": int(rss_end), "cases": {}}
present = [c for c in ("clean", "invalid", "garbage", "confirmations", "queries", "link")
           if any(r["case"] == c for r in runs)]
for case in present:
    rates = [valid_rate(r) for r in runs if r["case"] == case]
    p99 = [r["latency_us"]["p99"] for r in runs if r["case"] == case]
    stored = [r["stored_per_s"] for r in runs if r["case"] == case]
    summary["cases"][case] = {"valid_per_s": [round(x) for x in rates],
                              "median_valid_per_s": round(statistics.median(rates)),
                              "median_p99_us": statistics.median(p99),
                              "median_stored_per_s": round(statistics.median(stored)),
                              "unstored_peak": max(r["unstored_peak"] for r in runs if r["case"] == case)}
clean = summary["cases"]["clean"]["median_valid_per_s"]
for case in present[1:]:
    c = summary["cases"][case]
    c["ratio_to_clean"] = round(c["median_valid_per_s"] / clean, 3) if clean else None
print("case           valid/s (runs)                 median   ratio   p99 ms   stored/s   backlog peak", file=sys.stderr)
for case, c in summary["cases"].items():
    print(f"{case:14} {str(c['valid_per_s']):30} {c['median_valid_per_s']:7}   "
          f"{c.get('ratio_to_clean', 1.0):5}   {c['median_p99_us'] / 1000:6.1f}   "
          f"{c['median_stored_per_s']:8}   {c['unstored_peak']}", file=sys.stderr)
print(f"authority RSS: {int(rss_start) // 1024} MiB before, {int(rss_end) // 1024} MiB after",
      file=sys.stderr)
print(json.dumps(summary))
PY
step "authority counters"
stop_servers
for log in "$work"/server*.log; do grep -v ":$" "$log" | tail -n "$((shards + 1))" >&2; done
if $check; then
    python3 - "$results" <<'PY' || fail "a valid order went unanswered"
import json, sys
bad = [r for r in map(json.loads, open(sys.argv[1])) if r["sent"] == 0 or r["ok"] != r["sent"]]
for r in bad:
    print("check: %s: %d valid orders sent, %d answered" % (r["case"], r["sent"], r["ok"]), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
fi

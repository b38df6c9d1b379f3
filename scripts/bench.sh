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
#                    [--vote-scheme merkle|single]
#
# Defaults: 1 authority, 2 shards, 20000 requests/s for 5 s, orders, every core.
# Binaries are built for this machine's CPU (-C target-cpu=native, in target/native);
# --portable uses the ordinary release build (AVX-512 chosen at run time). Authorities keep
# durable state (fsynced per batch) in the temporary directory unless --no-durability.
# --target I sends everything to the authority at position I of the committee (from 0, as
# loadgen counts: --target 0 is server1). With one authority measured alone in the
# confirmations phase, certificates are signed offline with every authority's key (as the
# reference benchmark did); `--authorities C --target 0` measures one authority's
# confirmations in a committee of C. --check exits non-zero
# unless every request succeeded (CI's smoke run). --cores pins the authorities' shards,
# --loadgen-cores pins loadgen (taskset), to keep them apart where the machine allows.
# --tick-us sets loadgen's pacing tick (default 200 µs; see `loadgen --help`).
#
# Every run also measures the crypto ceiling of one shard core (`loadgen ceiling`, pinned to
# the first --cores entry, before the authorities start) and each shard's CPU time, and adds
# to the JSON: "ceiling" (sign and verify costs, orders and confirmations per CPU-second they
# allow), "shards" (per shard of the targeted authority, else authority 1: requests answered, CPU seconds, answers per
# CPU-second and that as a share of the ceiling) and "of_ceiling" (achieved rate over shards ×
# ceiling). Rates differ between machines; these ratios travel (docs/BENCHMARKS.md).
# --ceiling-seconds S sets the time per ceiling measurement (default 1; 0 skips it).
# Durable runs also time 1,000 appends of 8 KiB, each followed by fdatasync, in the directory
# the authorities keep their logs in, and add "fdatasync_us" (p50, p99) to the JSON: what
# durability can cost at least, on this disk, now.
# The measured authority serves /metrics during the run, and the JSON adds "server_us": its
# own view, read from its histograms' buckets (p50, p99 and count, µs): "reply_delay" (from
# the round that read a request to its reply's sending), "log_wait" (a round's records
# waiting for the log writer: the sync in flight, then the writer's wake-up) and "log_sync"
# (one group's write and fdatasync); the last two are null in memory. What loadgen's latency
# holds beyond reply_delay is the network stack's and loadgen's own time.
# --shed-after-ms MS is passed to `server run` (the authorities' shedding budget; 0 never sheds).
# --snapshot-after-bytes B is passed to `server run` (log bytes between snapshots; a large B
# takes none during the run, to tell a snapshot's cost from the rest).
# --vote-scheme single generates authorities that sign each vote (default merkle, as `server
# generate`: one Merkle root signed per batch of votes); loadgen pads its requests to match.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

authorities=1 shards=2 rate=20000 duration=5 phase=orders target=all
cores="" loadgen_cores="" steering=() check=false flavour=native durability=() tick=()
ceiling_seconds=1 shed=() vote_scheme=merkle snapshot_after=()
while [ $# -gt 0 ]; do
    case "$1" in
        --authorities) authorities=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --rate) rate=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --phase) phase=$(value "$@"); shift 2 ;;
        --target) target=$(value "$@"); shift 2 ;;
        --cores) cores=$(value "$@"); shift 2 ;;
        --loadgen-cores) loadgen_cores=$(value "$@"); shift 2 ;;
        --no-steering) steering=(--no-steering); shift ;;
        --check) check=true; shift ;;
        --portable) flavour=portable; shift ;;
        --no-durability) durability=(--no-durability); shift ;;
        --tick-us) tick=(--tick-us "$(value "$@")"); shift 2 ;;
        --ceiling-seconds) ceiling_seconds=$(value "$@"); shift 2 ;;
        --shed-after-ms) shed=(--shed-after-ms "$(value "$@")"); shift 2 ;;
        --snapshot-after-bytes) snapshot_after=(--snapshot-after-bytes "$(value "$@")"); shift 2 ;;
        --vote-scheme) vote_scheme=$(value "$@"); shift 2 ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries "$flavour"
make_work
generate_committee "$authorities" "$shards" --vote-scheme "$vote_scheme"
keys=()
for i in $(seq 1 "$authorities"); do keys+=("$work/server$i.json"); done
ceiling=null
if [ "$ceiling_seconds" != 0 ]; then
    step "crypto ceiling of one shard core"
    first_core=${cores%%,*}
    ceiling=$(taskset -c "${first_core:-0}" "$bin/loadgen" ceiling --seconds "$ceiling_seconds" \
        --committee "$work/committee.json" 2>/dev/null)
fi
fsync=null
if [ ${#durability[@]} = 0 ]; then
    step "fdatasync latency in $work"
    fsync=$(python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
times = []
for _ in range(1000):
    os.write(fd, b"\0" * 8192)
    started = time.perf_counter()
    os.fdatasync(fd)
    times.append((time.perf_counter() - started) * 1e6)
os.close(fd)
os.unlink(path)
times.sort()
print('{"p50": %d, "p99": %d}' % (times[500], times[990]))
PY
)
fi
accounts=$(awk -v r="$rate" -v d="$duration" 'BEGIN { printf "%d", r * d * 1.05 + 1000 }')
genesis "$accounts"
# The authority whose shards are reported: the targeted one when --target is a position (from
# 0, as loadgen counts), else the first. It serves /metrics on the port after its link ports.
measured=1
[[ "$target" =~ ^[0-9]+$ ]] && measured=$((target + 1))
metrics="127.0.0.1:$(( port_base + (measured - 1) * (shards + 2) + shards + 1 ))"
step "starting $authorities authorit$([ "$authorities" = 1 ] && echo y || echo ies)"
names=()
for i in $(seq 1 "$authorities"); do
    own=()
    [ "$i" = "$measured" ] && own=(--metrics-address "$metrics")
    start_server "server$i" "$i" ${cores:+--cores "$cores"} "${steering[@]}" "${durability[@]}" \
        "${shed[@]}" "${snapshot_after[@]}" "${own[@]}"
    names+=("server$i")
done
wait_listening "${names[@]}"

extra=()
if [ "$phase" = confirmations ] && [ "$target" != all ]; then
    extra=(--offline-certificates --keys "$(IFS=,; echo "${keys[*]}")")
fi
step "loadgen --phase $phase --rate $rate --duration $duration --target $target"
runner=()
[ -n "$loadgen_cores" ] && runner=(taskset -c "$loadgen_cores")
result=$("${runner[@]}" "$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase "$phase" --target "$target" "${tick[@]}" "${extra[@]}" \
    --in-flight "$(awk -v r="$rate" 'BEGIN { printf "%d", r * 3 + 1000 }')")

# The measured authority's own view of the run, from its histograms (a shard publishes them
# once a second, so wait for the last publication): quantiles read from the bucket bounds
# as Prometheus's histogram_quantile does, in µs, summed over its shards.
sleep 1.2
server=$(python3 - "$metrics" <<'PY'
import json, re, sys, urllib.request
text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10).read().decode()
def quantiles(name):
    buckets = {}
    for le, n in re.findall(r'^fastpay_shard_%s_bucket\{[^}]*le="([^"]+)"\} (\S+)$' % name, text, re.M):
        buckets[float(le)] = buckets.get(float(le), 0) + float(n)
    bounds = sorted(buckets)
    total = buckets.get(float("inf"), 0)
    if not total:
        return None
    out = {"count": int(total)}
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        rank, below, lower = q * total, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if bound == float("inf"):
                    value = lower
                else:
                    inside = buckets[bound] - below
                    value = lower + (bound - lower) * ((rank - below) / inside if inside else 1)
                out[label] = round(value * 1e6)
                break
            below, lower = buckets[bound], bound
    return out
print(json.dumps({"reply_delay": quantiles("reply_delay_seconds"),
                  "log_wait": quantiles("log_wait_seconds"),
                  "log_sync": quantiles("fsync_duration_seconds")}))
PY
) || server=null
stop_servers
step "authority $measured counters"
grep -v ":$" "$work/server$measured.log" | tail -n "$((shards + 1))" >&2
# Snapshots taken during the run (each stalls its shard while the state is encoded).
grep -h "snapshot started" "$work/server$measured.log" >&2 || true
# The loadgen JSON with the ceiling and the measured authority's per-shard CPU efficiency added.
result=$(FSYNC="$fsync" SERVER="$server" CEILING="$ceiling" PHASE="$phase" SHARDS="$shards" python3 -c '
import json, os, re, sys
r = json.loads(sys.stdin.readline())
ceiling = json.loads(os.environ["CEILING"])
per_cpu = None
if ceiling:
    per_cpu = ceiling["confirmations_per_cpu_s"] if os.environ["PHASE"] == "confirmations" else ceiling["orders_per_cpu_s"]
log = open(sys.argv[1]).read()
final = log.split("final counters", 1)[1] if "final counters" in log else ""
shards = []
for m in re.finditer(r"^shard (\d+):(.*)$", final, re.M):
    c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    answered = c.get("voted", 0) + c.get("confirmed", 0)
    cpu_s = c.get("cpu_ms", 0) / 1000
    rate = answered / cpu_s if cpu_s else None
    shards.append({"shard": int(m.group(1)), "answered": answered, "cpu_s": cpu_s,
                   "per_cpu_s": rate, "of_ceiling": rate / per_cpu if rate and per_cpu else None})
r["ceiling"] = ceiling
r["fdatasync_us"] = json.loads(os.environ["FSYNC"])
r["server_us"] = json.loads(os.environ["SERVER"])
r["shards"] = shards
n = int(os.environ["SHARDS"])
r["of_ceiling"] = r["achieved_rate"] / (n * per_cpu) if per_cpu else None
print(json.dumps(r))
for s in shards:
    if s["per_cpu_s"]:
        print("shard %d: %d answered in %.2f CPU-s = %.0f/CPU-s%s" % (s["shard"], s["answered"], s["cpu_s"], s["per_cpu_s"],
              " = %.0f%% of the ceiling (%.0f/CPU-s)" % (100 * s["of_ceiling"], per_cpu) if s["of_ceiling"] else ""), file=sys.stderr)
' "$work/server$measured.log" <<< "$result")
echo "$result"
if $check; then check_all_ok <<< "$result"; fi

#!/usr/bin/env bash
# A/B benchmark of two commits: checks each out into its own worktree (under $TMPDIR), builds
# it, then runs each one's own scripts/bench.sh with the same arguments, alternating A, B, A,
# B, ... and prints the medians of goodput, p50 and p99 per commit (and every run, as CSV, to
# DIR/ab.csv).
#
#   scripts/ab.sh --a REV --b REV [--runs 3] [--out DIR] -- BENCH_ARGS...
#
# Example (what storing certificates costs confirmations):
#   scripts/ab.sh --a HEAD~5 --b HEAD -- --phase confirmations --rate 40000 --duration 5
# Run it on a quiet machine: nothing else should compile or run meanwhile.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

a="" b="" runs=3 out=ab
while [ $# -gt 0 ]; do
    case "$1" in
        --a) a=$(value "$@"); shift 2 ;;
        --b) b=$(value "$@"); shift 2 ;;
        --runs) runs=$(value "$@"); shift 2 ;;
        --out) out=$(value "$@"); shift 2 ;;
        --) shift; break ;;
        *) help_or_die "$1" ;;
    esac
done
[ -n "$a" ] && [ -n "$b" ] || die "--a and --b are required"
mkdir -p "$out"
root=${TMPDIR:-/tmp}/fastpay-ab
declare -A tree
for rev in "$a" "$b"; do
    sha=$(git rev-parse --short "$rev^{commit}")
    dir="$root/$sha"
    if [ ! -d "$dir" ]; then
        git worktree add -q --detach "$dir" "$sha"
    fi
    tree[$rev]=$dir
    step "building $rev ($sha) in $dir"
    # A short bench.sh run with the same arguments (the later options win) builds what the
    # runs need (native or --portable); its output is kept only if it fails.
    (cd "$dir" && bench_json "$@" --rate 100 --duration 0.2 >/dev/null)
done

echo "commit,run,achieved,p50_us,p99_us,timeouts" > "$out/ab.csv"
for run in $(seq 1 "$runs"); do
    for rev in "$a" "$b"; do
        step "$rev run $run: bench.sh $*"
        (cd "${tree[$rev]}" && bench_json "$@") | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(",".join(str(x) for x in [sys.argv[1], sys.argv[2], round(r["achieved_rate"]),
      r["latency_us"]["p50"], r["latency_us"]["p99"], r["timeouts"]]))' "$rev" "$run" | tee -a "$out/ab.csv" >&2
    done
done
python3 - "$out/ab.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'commit':>14} {'runs':>4} {'achieved/s':>11} {'p50 us':>8} {'p99 us':>8} {'timeouts':>8}")
for rev in dict.fromkeys(r["commit"] for r in rows):
    rs = [r for r in rows if r["commit"] == rev]
    med = lambda k: round(statistics.median(float(r[k]) for r in rs))
    print(f"{rev:>14} {len(rs):>4} {med('achieved'):>11} {med('p50_us'):>8} {med('p99_us'):>8} {med('timeouts'):>8}")
PY

#!/usr/bin/env bash
# The metrics as an operator's monitoring sees them: a committee of 4 authorities × 2 shards
# started with --metrics-address, a real Prometheus (Debian's package) scraping them every
# second, and a short loadgen payments run. Fails unless Prometheus's HTTP API shows the
# committee's vote and confirmation counters moved by the run, and unless promtool accepts
# the servers' /metrics and loadgen's --metrics-file, and unless every query of the sample
# Grafana dashboard (docs/grafana-dashboard.json) evaluates.
#
#   scripts/prometheus.sh [--debug]
#
# --debug uses the debug binaries in target/debug (quicker to build) instead of release.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=portable
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "prometheus.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "==> installing prometheus (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; }
fi

. scripts/lib.sh
if [ "$profile" = debug ]; then
    cargo build --locked -p fastpay-engine -p fastpay-loadgen >&2
    bin="$PWD/target/debug"
else
    build_binaries portable
fi

work=$(mktemp -d)
pids=()
prom_pid=
cleanup() {
    [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# HTTP GET of $1, body on stdout (python3 rather than curl: CI has it already).
get() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
EOF
}

# A Prometheus instant query $1; prints the value of its single result (or "none").
query() {
    python3 - "http://$prom_address/api/v1/query" "$1" <<'EOF'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "?" + urllib.parse.urlencode({"query": sys.argv[2]})
with urllib.request.urlopen(url, timeout=10) as r:
    body = json.load(r)
assert body["status"] == "success", body
result = body["data"]["result"]
print(result[0]["value"][1] if result else "none")
EOF
}

authorities=4 shards=2 rate=500 duration=3
port_base=$(( 20000 + (RANDOM % 2000) * 10 ))
metrics_base=$(( 42000 + (RANDOM % 1000) * 10 ))
prom_address="127.0.0.1:$(( metrics_base + 9 ))"
: > "$work/committee.json"
for i in $(seq 1 "$authorities"); do
    port=$(( port_base + (i - 1) * (shards + 2) ))
    "$bin/server" --server "$work/server$i.json" generate --host 127.0.0.1 --port "$port" \
        --shards "$shards" >> "$work/committee.json"
done
accounts=$(( rate * duration + 1000 ))
"$bin/loadgen" genesis --accounts "$accounts" > "$work/initial_accounts.txt"

targets=()
for i in $(seq 1 "$authorities"); do
    address="127.0.0.1:$(( metrics_base + i ))"
    targets+=("'$address'")
    flags=(--initial-accounts "$work/initial_accounts.txt" --committee "$work/committee.json"
           --stats-interval 0 --metrics-address "$address")
    "$bin/server" --server "$work/server$i.json" check "${flags[@]}" >&2
    "$bin/server" --server "$work/server$i.json" run "${flags[@]}" 2> "$work/server$i.log" &
    pids+=($!)
done
for i in $(seq 1 "$authorities"); do
    wait_listening "${pids[$((i - 1))]}" "$work/server$i.log"
done

echo "==> promtool check metrics on authority 1's /metrics" >&2
get "http://127.0.0.1:$(( metrics_base + 1 ))/metrics" > "$work/server1.prom"
promtool check metrics < "$work/server1.prom"

cat > "$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: fastpay
    static_configs:
      - targets: [$(IFS=,; echo "${targets[*]}")]
EOF
promtool check config "$work/prometheus.yml" >&2
echo "==> prometheus on $prom_address scraping ${#targets[@]} authorities" >&2
prometheus --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/tsdb" \
    --web.listen-address "$prom_address" 2> "$work/prometheus.log" &
prom_pid=$!

# Wait until every authority has been scraped at least once.
up=none
for _ in $(seq 1 300); do
    if kill -0 "$prom_pid" 2>/dev/null; then
        up=$(query 'sum(up{job="fastpay"})' 2>/dev/null || echo none)
        [ "$up" = "$authorities" ] && break
    else
        cat "$work/prometheus.log" >&2
        echo "prometheus died" >&2
        exit 1
    fi
    sleep 0.1
done
if [ "$up" != "$authorities" ]; then
    tail -20 "$work/prometheus.log" >&2
    echo "prometheus sees $up of $authorities authorities up" >&2
    exit 1
fi
before=$(query 'sum(fastpay_shard_voted_total)')
echo "==> votes before the run: $before" >&2

echo "==> loadgen --phase payments --rate $rate --duration $duration" >&2
result=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase payments --metrics-file "$work/loadgen.prom")
echo "$result"
echo "==> promtool check metrics on loadgen's --metrics-file" >&2
promtool check metrics < "$work/loadgen.prom"
ok=$(echo "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ok"])')

# Two scrape intervals and a shard publication later, every vote and confirmation is in.
deadline=$(( SECONDS + 20 ))
while :; do
    votes=$(query 'sum(fastpay_shard_voted_total)')
    confirmed=$(query 'sum(fastpay_shard_confirmed_total)')
    replies=$(query 'sum(fastpay_shard_reply_delay_seconds_count)')
    if python3 -c "import sys; v, c, r, ok, n = map(float, sys.argv[1:]); sys.exit(0 if v >= ok * (n - 1) and c >= ok * (n - 1) and r > 0 else 1)" \
        "$votes" "$confirmed" "$replies" "$ok" "$authorities" 2>/dev/null; then
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "prometheus: votes $votes, confirmations $confirmed, replies $replies after $ok payments" >&2
        exit 1
    fi
    sleep 0.5
done
# Every query of the sample Grafana dashboard evaluates, with a result.
python3 - "http://$prom_address/api/v1/query" docs/grafana-dashboard.json <<'EOF'
import json, sys, urllib.error, urllib.parse, urllib.request
panels = json.load(open(sys.argv[2]))["panels"]
for panel in panels:
    for target in panel["targets"]:
        url = sys.argv[1] + "?" + urllib.parse.urlencode({"query": target["expr"]})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        if isinstance(body, str) or body["status"] != "success" or not body["data"]["result"]:
            sys.exit("dashboard panel %r: %s gave %s" % (panel["title"], target["expr"], body))
print("==> the %d dashboard queries evaluate" % len(panels), file=sys.stderr)
EOF
p99=$(query 'histogram_quantile(0.99, sum by (le) (rate(fastpay_shard_reply_delay_seconds_bucket[30s])))')
echo "==> prometheus: votes $before -> $votes, confirmations $confirmed, replies $replies for $ok payments; reply p99 ${p99} s" >&2
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 and float(sys.argv[2]) == 0 else 1)" "$ok" "$before" \
    || { echo "no payment completed, or votes before the run" >&2; exit 1; }
echo "==> prometheus.sh: ok" >&2

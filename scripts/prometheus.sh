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
. "$(dirname "$0")/lib.sh"

flavour=portable
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) flavour=debug; shift ;;
        *) help_or_die "$1" ;;
    esac
done

need_deb prometheus prometheus
need_deb promtool prometheus
build_binaries "$flavour"
make_work
prom_pid=
at_exit '[ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null'

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
metrics_base=$(( 42000 + (RANDOM % 1000) * 10 ))
prom_address="127.0.0.1:$(( metrics_base + 9 ))"
generate_committee "$authorities" "$shards"
accounts=$(( rate * duration + 1000 ))
genesis "$accounts"

targets=() names=()
for i in $(seq 1 "$authorities"); do
    address="127.0.0.1:$(( metrics_base + i ))"
    targets+=("'$address'")
    "$bin/server" --server "$work/server$i.json" check --initial-accounts "$work/initial_accounts.txt" \
        --committee "$work/committee.json" --stats-interval 0 --metrics-address "$address" >&2
    start_server "server$i" "$i" --metrics-address "$address"
    names+=("server$i")
done
wait_listening "${names[@]}"

step "promtool check metrics on authority 1's /metrics"
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
step "prometheus on $prom_address scraping ${#targets[@]} authorities"
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
step "votes before the run: $before"

step "loadgen --phase payments --rate $rate --duration $duration"
result=$("$bin/loadgen" --committee "$work/committee.json" --accounts "$accounts" \
    --rate "$rate" --duration "$duration" --phase payments --metrics-file "$work/loadgen.prom")
echo "$result"
step "promtool check metrics on loadgen's --metrics-file"
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
step "prometheus: votes $before -> $votes, confirmations $confirmed, replies $replies for $ok payments; reply p99 ${p99} s"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 and float(sys.argv[2]) == 0 else 1)" "$ok" "$before" \
    || { echo "no payment completed, or votes before the run" >&2; exit 1; }
step "prometheus.sh: ok"

#!/usr/bin/env bash
# Point-of-sale latency through the wallet service: a committee of --authorities (default 4,
# 2 shards each) on 127.0.0.1, a payer wallet and a merchant wallet each served by
# `client serve`, the merchant's live stream open (/api/events). --payments payments of 1,
# one after the other, each timed from the moment the pay request is sent until (a) its answer
# says the payment is final and (b) the merchant's stream reports it (the merchant's service
# learns it from the committee, polling every --poll-ms). Prints p50, p99 and max of both on
# stderr and as JSON, the last line on stdout; fails if a payment or an event goes missing.
#
#   scripts/service-latency.sh [--payments N] [--authorities K] [--shards S] [--poll-ms MS]
#                              [--portable]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

payments=1000 authorities=4 shards=2 poll_ms=20 flavour=native
while [ $# -gt 0 ]; do
    case "$1" in
        --payments) payments=$(value "$@"); shift 2 ;;
        --authorities) authorities=$(value "$@"); shift 2 ;;
        --shards) shards=$(value "$@"); shift 2 ;;
        --poll-ms) poll_ms=$(value "$@"); shift 2 ;;
        --portable) flavour=portable; shift ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries "$flavour"
make_work
service_pids=()
at_exit 'for p in "${service_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; stop_servers'
generate_committee "$authorities" "$shards"
client() {
    local wallet=$1
    shift
    "$bin/client" --committee "$work/committee.json" --accounts "$work/$wallet" "$@"
}
client payer.json create_accounts 1 --initial-funding "$payments" \
    > "$work/initial_accounts.txt" 2>/dev/null
payer=$(cut -d: -f1 "$work/initial_accounts.txt")
merchant=$(client merchant.json create_accounts 1 --initial-funding 0 2>/dev/null | cut -d: -f1)
start_committee "$authorities"

# `serve WALLET PORT`: starts `client serve` for WALLET on PORT and waits until it answers.
serve() {
    "$bin/client" --committee "$work/committee.json" --accounts "$work/$1" \
        serve --listen "127.0.0.1:$2" --poll-ms "$poll_ms" 2>> "$work/serve-$1.log" &
    service_pids+=($!)
    for _ in $(seq 1 200); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "http://127.0.0.1:$2/openapi.json" 2>/dev/null && return
        sleep 0.1
    done
    cat "$work/serve-$1.log" >&2
    fail "client serve for $1 did not start"
}
payer_port=$(( port_base + authorities * (shards + 2) + 1 ))
merchant_port=$(( payer_port + 1 ))
serve payer.json "$payer_port"
serve merchant.json "$merchant_port"

step "$payments payments of 1 from the payer's service, each awaited on the merchant's stream"
python3 - "$payer_port" "$merchant_port" "$payer" "$merchant" "$payments" <<'PY'
import http.client, json, statistics, sys, time
payer_port, merchant_port, payer, merchant, count = sys.argv[1:]
count = int(count)

stream = http.client.HTTPConnection("127.0.0.1", int(merchant_port), timeout=60)
stream.request("GET", "/api/events?account=" + merchant)
events = stream.getresponse()
assert events.status == 200, events.read()

def next_event():
    name = None
    while True:
        line = events.fp.readline()
        if not line:
            sys.exit("the merchant's stream ended")
        line = line.decode().rstrip("\r\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            return name, json.loads(line[5:])

assert next_event()[0] == "ready"
pay = http.client.HTTPConnection("127.0.0.1", int(payer_port), timeout=60)
final_ms, event_ms = [], []
for i in range(count):
    body = json.dumps({"from": payer, "to": merchant, "amount": 1,
                       "idempotency_key": "latency-%d" % i})
    start = time.perf_counter()
    pay.request("POST", "/api/payments", body, {"Content-Type": "application/json"})
    answer = pay.getresponse()
    paid = json.loads(answer.read())
    if answer.status != 201:
        sys.exit("payment %d: %d %s" % (i, answer.status, paid))
    final_ms.append((time.perf_counter() - start) * 1000)
    while True:
        name, event = next_event()
        if name == "payment" and event["certificate"] == paid["certificate"]:
            break
    event_ms.append((time.perf_counter() - start) * 1000)
    if (i + 1) % max(count // 10, 1) == 0:
        print("  %d/%d" % (i + 1, count), file=sys.stderr)

def figures(values):
    values = sorted(values)
    return {"p50": round(statistics.median(values), 2),
            "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 2),
            "max": round(values[-1], 2)}
result = {"payments": count, "pay_to_final_ms": figures(final_ms),
          "pay_to_merchant_event_ms": figures(event_ms)}
print("pay request to final answer:    p50 %(p50)s ms, p99 %(p99)s ms, max %(max)s ms"
      % result["pay_to_final_ms"], file=sys.stderr)
print("pay request to merchant's event: p50 %(p50)s ms, p99 %(p99)s ms, max %(max)s ms"
      % result["pay_to_merchant_event_ms"], file=sys.stderr)
print(json.dumps(result))
PY

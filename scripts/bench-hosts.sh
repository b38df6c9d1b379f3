#!/usr/bin/env bash
# The paper's figures across hosts, through the Ansible deployment (deploy/ansible): payments
# per second against shards per authority, against committee size, and latency against
# offered load, as CSV and PNG plots. Each configuration is wiped, deployed with
# deploy.yml and measured with loadgen.yml from the client host (payments end to end: order,
# quorum of votes, certificate, confirmation), so the hosts are whatever the inventory names.
#
#   scripts/bench-hosts.sh --inventory FILE [options]   real hosts (this machine controls)
#   scripts/bench-hosts.sh --netns N [options]          N namespace hosts made here (root)
#
# Options: --shards "1 2 4" (with --fixed-committee 4), --committees "4 7 10" (with
# --fixed-shards 1), --loads "500 1000 2000 4000 8000" (4 authorities × 2 shards),
# --saturate "2000 4000 8000 16000" (offered rates for the throughput points), --duration S (3),
# --out DIR (bench-hosts). The inventory's fastpay_committee is replaced: authority i puts
# shard j on the (i + j)-th host of fastpay_hosts (wrapping), base port 9100 + 100 i.
# Throughput at a point is given two ways (scripts/plot-hosts.py, which redraws from
# runs.csv): the highest sustained rate (a --saturate run with at most 1% timed out and p99
# under 500 ms), and the payments completed per second under the highest offered load.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

inventory="" netns=0 out=bench-hosts duration=3
shards_list="1 2 4" committees="4 7 10" loads="500 1000 2000 4000 8000"
saturate="2000 4000 8000 16000" fixed_committee=4 fixed_shards=1 keep=false
while [ $# -gt 0 ]; do
    case "$1" in
        --inventory) inventory=$(realpath "$(value "$@")"); shift 2 ;;
        --netns) netns=$(value "$@"); shift 2 ;;
        --shards) shards_list=$(value "$@"); shift 2 ;;
        --committees) committees=$(value "$@"); shift 2 ;;
        --loads) loads=$(value "$@"); shift 2 ;;
        --saturate) saturate=$(value "$@"); shift 2 ;;
        --fixed-committee) fixed_committee=$(value "$@"); shift 2 ;;
        --fixed-shards) fixed_shards=$(value "$@"); shift 2 ;;
        --duration) duration=$(value "$@"); shift 2 ;;
        --out) out=$(value "$@"); shift 2 ;;
        --keep) keep=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done
if [ -z "$inventory" ] && [ "$netns" -eq 0 ]; then
    die "give --inventory FILE or --netns N"
fi
mkdir -p "$out"
out=$(realpath "$out")

if [ "$netns" -gt 0 ]; then
    source scripts/netns-hosts.sh
    install_missing
    build_binaries portable
    netns_dir=$(mktemp -d /tmp/fastpay-bench-hosts.XXXXXX)
    at_exit 'netns_hosts_down "$exit_status"'
    netns_hosts_up "$netns_dir" "$netns"
    inventory="$netns_dir/inventory.yml"
    artifacts="$netns_dir/artifacts"
    run_playbook() { playbook "$@"; }
else
    artifacts="$out/artifacts"
    run_playbook() {
        (cd deploy/ansible && ansible-playbook -i "$inventory" -e "fastpay_artifacts=$artifacts" "$@")
    }
fi
hosts=$(cd deploy/ansible && ansible-inventory -i "$inventory" --list \
    | /usr/bin/python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["fastpay_hosts"]["hosts"]))')
step "hosts: $hosts"

# Accounts per deployment: every loadgen run uses fresh ones (one payment each).
accounts=$(/usr/bin/python3 -c '
import sys
d = float(sys.argv[1]); rates = [int(r) for r in " ".join(sys.argv[2:]).split()]
print(int(d * sum(rates) * 1.2) + 10000)' "$duration" "$saturate" "$loads")

# vars_file N S: the extra variables of a committee of N authorities with S shards each.
vars_file() {
    /usr/bin/python3 - "$1" "$2" "$accounts" $hosts > "$out/vars-$1x$2.yml" <<'PY'
import json, sys
n, s, accounts, hosts = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
committee = [{"name": f"a{i + 1}", "port": 9100 + 100 * i,
              "shards": [hosts[(i + j) % len(hosts)] for j in range(s)]} for i in range(n)]
print(json.dumps({"fastpay_committee": committee, "fastpay_genesis_accounts": accounts,
                  "fastpay_loadgen_rate": 100, "fastpay_loadgen_duration": 1,
                  "fastpay_run_name": f"warmup-{n}x{s}"}))
PY
    echo "$out/vars-$1x$2.yml"
}

echo "figure,authorities,shards,target_rate,achieved_rate,p50_us,p99_us,loss" > "$out/runs.csv"
previous=""
# measure FIGURE N S RATES...: deploys N × S afresh and runs loadgen once per rate.
measure() {
    local figure=$1 n=$2 s=$3 vars first=10000 rate name
    shift 3
    vars=$(vars_file "$n" "$s")
    if [ -n "$previous" ]; then
        run_playbook wipe.yml -e "@$previous" -e fastpay_wipe_keys=true > "$out/ansible.log"
    fi
    previous=$vars
    step "$figure: $n authorities × $s shards"
    run_playbook deploy.yml -e "@$vars" >> "$out/ansible.log"
    for rate in "$@"; do
        name="$figure-${n}x$s-$rate"
        run_playbook loadgen.yml -e "@$vars" -e "fastpay_run_name=$name" \
            -e "fastpay_loadgen_rate=$rate" -e "fastpay_loadgen_duration=$duration" \
            -e "fastpay_loadgen_extra='--account-offset $first'" >> "$out/ansible.log"
        first=$((first + $(/usr/bin/python3 -c 'import sys; print(int(float(sys.argv[1]) * float(sys.argv[2])) + 100)' "$rate" "$duration")))
        /usr/bin/python3 - "$artifacts/loadgen-$name.json" "$figure" "$n" "$s" "$rate" \
            >> "$out/runs.csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
figure, n, s, rate = sys.argv[2:6]
print(f"{figure},{n},{s},{rate},{r['achieved_rate']:.1f},{r['latency_us']['p50']},"
      f"{r['latency_us']['p99']},{r['loss']:.4f}")
PY
        tail -n 1 "$out/runs.csv" >&2
    done
}

for s in $shards_list; do measure shards "$fixed_committee" "$s" $saturate; done
for n in $committees; do measure committee "$n" "$fixed_shards" $saturate; done
measure load 4 2 $loads
run_playbook wipe.yml -e "@$previous" -e fastpay_wipe_keys=true > "$out/ansible.log"

/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || install_deb python3-matplotlib
/usr/bin/python3 scripts/plot-hosts.py "$out"
step "wrote $out/runs.csv, throughput.csv and the PNG plots"

#!/usr/bin/env bash
# The Ansible deployment (deploy/ansible) end to end, on this one machine: network namespaces
# stand in for hosts, each running its own sshd (key authentication with a key made here).
# deploy.yml puts a committee of 4 authorities × 2 shards on 4 "hosts" (every authority's
# shards on two of them) from a controller namespace, makes a payment and a short loadgen
# run from a client "host"; the test checks loadgen's fetched JSON and that no secret
# reached the controller, checks the systemd units with `systemd-analyze verify`, then runs
# upgrade.yml (a rolling restart), another loadgen run, stop.yml and wipe.yml.
#
#   scripts/ansible-test.sh [--keep]     (--keep leaves the namespaces and files for a look)
#
# Needs root (ip netns, sshd). Installs ansible-core and openssh-server from Debian if they
# are missing. systemd cannot run inside a network namespace here, so the shards start from
# the units' own command lines under setsid/nohup (fastpay_service_manager=nohup); the unit
# files are still rendered (fastpay_root/units) and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = --keep ] && keep=true
source scripts/netns-hosts.sh
install_missing

echo "==> building (release)" >&2
cargo build --release --locked -p fastpay-engine -p fastpay-loadgen >&2

work=$(mktemp -d /tmp/fastpay-ansible.XXXXXX)
trap 'netns_hosts_down $?' EXIT
trap 'exit 130' INT TERM
netns_hosts_up "$work" 4
# The example inventory's layout (every authority's shards on two hosts), short runs.
{
    echo "    fastpay_genesis_accounts: 20000"
    echo "    fastpay_loadgen_rate: 500"
    echo "    fastpay_loadgen_duration: 3"
    echo "    fastpay_committee:"
    echo "      - {name: a1, port: 9100, shards: [h1, h2]}"
    echo "      - {name: a2, port: 9200, shards: [h2, h3]}"
    echo "      - {name: a3, port: 9300, shards: [h3, h4]}"
    echo "      - {name: a4, port: 9400, shards: [h4, h1]}"
} >> "$work/inventory.yml"

check_run() { # NAME: loadgen's fetched JSON shows every payment completed
    /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("loadgen %s: sent %d, ok %d, p50 %d us" % (sys.argv[1], r["sent"], r["ok"],
      r["latency_us"]["p50"]), file=sys.stderr)
assert r["sent"] > 0 and r["ok"] == r["sent"], r' "$work/artifacts/loadgen-$1.json"
}

echo "==> deploy.yml" >&2
playbook deploy.yml
check_run run
# Each key stayed on its host: the controller holds public entries only.
if grep -rq secret "$work/artifacts"; then
    echo "a secret reached the controller's artifacts" >&2
    exit 1
fi
for i in 1 2 3 4; do
    test -f "$work/hosts/h$i/a$i/server.json"
done

echo "==> systemd-analyze verify on the rendered units" >&2
units=("$work"/hosts/h*/units/*.service)
[ ${#units[@]} -eq 8 ] || { echo "expected 8 units, found ${#units[@]}" >&2; exit 1; }
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify exits 0 on unknown keys and unparsable values, printing them: any output fails.
    verify() { systemd-analyze verify "$@" 2>&1 || echo "exit status $?"; }
    out=$(verify "${units[@]}")
    if [ -n "$out" ]; then
        echo "systemd-analyze verify refused the units: $out" >&2
        exit 1
    fi
    # The check bites: a misspelt hardening option is reported.
    sed 's/^NoNewPrivileges=/NoNewPrivilegs=/' "${units[0]}" > "$work/broken-unit.service"
    [ -n "$(verify "$work/broken-unit.service")" ] || { echo "verify missed a bad key" >&2; exit 1; }
else
    echo "systemd-analyze not available: the unit files were not verified" >&2
fi

echo "==> upgrade.yml (a rolling restart), then another loadgen run" >&2
playbook upgrade.yml
# Fresh accounts: the first run used accounts 0..1500 (one payment each).
playbook loadgen.yml -e fastpay_run_name=after-upgrade -e "fastpay_loadgen_extra='--account-offset 5000'"
check_run after-upgrade

echo "==> stop.yml and wipe.yml" >&2
playbook stop.yml
if compgen -G "$work/hosts/*/*/shard-*.pid" >/dev/null; then
    echo "stop.yml left pid files" >&2
    exit 1
fi
playbook wipe.yml
if compgen -G "$work/hosts/*/*/data" >/dev/null; then
    echo "wipe.yml left data directories" >&2
    exit 1
fi
echo "==> ansible deployment test passed" >&2

#!/usr/bin/env bash
# The Ansible deployment (deploy/ansible) end to end, on this one machine: network namespaces
# stand in for hosts, each running its own sshd (key authentication with a key made here).
# deploy.yml puts a committee of 4 authorities × 2 shards on 4 "hosts" (every authority's
# shards on two of them) from a controller namespace, makes a payment and a short loadgen
# run from a client "host"; the test checks loadgen's fetched JSON and that no secret
# reached the controller, checks the systemd units with `systemd-analyze verify`, then runs
# upgrade.yml (a rolling restart), another loadgen run, stop.yml and wipe.yml (keys kept),
# and deploys the kept keys again as a new network. Every shard is checked to run as its
# unit says (user, working directory, open-file limit).
#
#   scripts/ansible-test.sh [--keep]     (--keep leaves the namespaces and files for a look)
#
# Needs root (ip netns, sshd). Installs ansible-core and openssh-server from Debian if they
# are missing. systemd cannot run inside a network namespace here, so the shards start from
# the units' own command lines under setsid/nohup (fastpay_service_manager=nohup); the unit
# files are still rendered (fastpay_root/units) and verified.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
source scripts/netns-hosts.sh

keep=false
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) keep=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done
install_missing
build_binaries portable

netns_dir=$(mktemp -d /tmp/fastpay-ansible.XXXXXX)
at_exit 'netns_hosts_down "$exit_status"'
netns_hosts_up "$netns_dir" 4
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
} >> "$netns_dir/inventory.yml"

check_run() { # NAME: loadgen's fetched JSON shows every payment completed
    /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("loadgen %s: sent %d, ok %d, p50 %d us" % (sys.argv[1], r["sent"], r["ok"],
      r["latency_us"]["p50"]), file=sys.stderr)
assert r["sent"] > 0 and r["ok"] == r["sent"], r' "$netns_dir/artifacts/loadgen-$1.json"
}

step "deploy.yml"
playbook deploy.yml
check_run run
# Each key stayed on its host: the controller holds public entries only.
if grep -rq secret "$netns_dir/artifacts"; then
    echo "a secret reached the controller's artifacts" >&2
    exit 1
fi
for i in 1 2 3 4; do
    test -f "$netns_dir/hosts/h$i/a$i/server.json"
done
# Every shard runs as its unit says: the unit's user, from /, with the unit's open-file limit
# (or the machine's hard limit where that is lower). A permission the user lacks (the
# authority directory once belonged to root, mode 0700) kills the shard at start: no process.
check_shards_run_as_units() {
    local pidfile pid root authority shard unit uid limit want hard
    hard=$(ulimit -Hn)
    for pidfile in "$netns_dir"/hosts/h*/a*/shard-*.pid; do
        pid=$(cat "$pidfile")
        root=$(dirname "$(dirname "$pidfile")")
        authority=$(basename "$(dirname "$pidfile")")
        shard=$(basename "$pidfile" .pid)
        shard=${shard#shard-}
        if [ ! -d "/proc/$pid" ]; then
            echo "shard $authority-$shard is not running; its log ends:" >&2
            tail -5 "$root/logs/$authority-$shard.log" >&2
            exit 1
        fi
        unit=$(echo "$root"/units/*-"$authority-$shard".service)
        uid=$(id -u "$(sed -n 's/^User=//p' "$unit")")
        [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = "$uid" ] \
            || { echo "shard $authority-$shard does not run as its unit's user (uid $uid)" >&2; exit 1; }
        [ "$(readlink "/proc/$pid/cwd")" = / ] \
            || { echo "shard $authority-$shard runs in $(readlink "/proc/$pid/cwd"), not /" >&2; exit 1; }
        for assignment in $(sed -n 's/^Environment=//p' "$unit"); do
            tr '\0' '\n' < "/proc/$pid/environ" | grep -qxF "$assignment" \
                || { echo "shard $authority-$shard lacks $assignment of its unit's Environment" >&2; exit 1; }
        done
        want=$(sed -n 's/^LimitNOFILE=//p' "$unit")
        [ "$hard" = unlimited ] || [ "$want" -le "$hard" ] || want=$hard
        limit=$(awk '/^Max open files/ {print $4}' "/proc/$pid/limits")
        [ "$limit" = "$want" ] \
            || { echo "shard $authority-$shard may open $limit files, its unit says $want" >&2; exit 1; }
    done
}
check_shards_run_as_units

step "systemd-analyze verify on the rendered units"
units=("$netns_dir"/hosts/h*/units/*.service)
[ ${#units[@]} -eq 8 ] || { echo "expected 8 units, found ${#units[@]}" >&2; exit 1; }
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify exits 0 on unknown keys and unparsable values, printing them: any output fails.
    verify() { systemd-analyze verify "$@" 2>&1 || echo "exit status $?"; }
    out=$(verify "${units[@]}")
    if [ -n "$out" ]; then
        echo "systemd-analyze verify refused the units: $out" >&2
        exit 1
    fi
    # ExecStart is the command line alone (a unit once ran its next line's comment as
    # arguments, which verify does not see).
    if grep -h '^ExecStart=' "${units[@]}" | grep -q '#'; then
        echo "an ExecStart line runs on into the unit's next line: $(grep -h '^ExecStart=' "${units[0]}")" >&2
        exit 1
    fi
    # The check bites: a misspelt hardening option is reported.
    sed 's/^NoNewPrivileges=/NoNewPrivilegs=/' "${units[0]}" > "$netns_dir/broken-unit.service"
    [ -n "$(verify "$netns_dir/broken-unit.service")" ] || { echo "verify missed a bad key" >&2; exit 1; }
    # With the primary chain set, the unit follows it (rendered only: this deployment runs
    # no chain), in the first unit's root.
    root=$(sed -n 's|^ExecStart=\(.*\)/bin/server .*|\1|p' "${units[0]}")
    ANSIBLE_CONFIG="$PWD/deploy/ansible/ansible.cfg" ansible localhost -c local \
        -m ansible.builtin.template \
        -a "src=$PWD/deploy/ansible/roles/fastpay_shards/templates/fastpay-shard.service.j2 dest=$netns_dir/primary-unit.service" \
        -e '{"item": {"authority": "a1", "shard": 0}}' -e "fastpay_root=$root" \
        -e fastpay_user=fastpay -e fastpay_stats_interval=10 -e fastpay_server_extra= \
        -e fastpay_primary_rpc=http://127.0.0.1:8545 \
        -e fastpay_primary_contract=0x5FbDB2315678afecb367f032d93F642f64180aa3 \
        -e fastpay_primary_confirmations=64 >/dev/null
    grep -q -- '--primary-rpc http://127.0.0.1:8545 --primary-contract 0x5FbDB2315678afecb367f032d93F642f64180aa3 --primary-confirmations 64' \
        "$netns_dir/primary-unit.service" || { echo "the unit does not follow the chain" >&2; exit 1; }
    out=$(verify "$netns_dir/primary-unit.service")
    [ -z "$out" ] || { echo "systemd-analyze verify refused the primary unit: $out" >&2; exit 1; }
else
    echo "systemd-analyze not available: the unit files were not verified" >&2
fi

step "upgrade.yml (a rolling restart), then another loadgen run"
playbook upgrade.yml
# Fresh accounts: the first run used accounts 0..1500 (one payment each).
playbook loadgen.yml -e fastpay_run_name=after-upgrade -e "fastpay_loadgen_extra='--account-offset 5000'"
check_run after-upgrade
check_shards_run_as_units

step "stop.yml and wipe.yml"
playbook stop.yml
if compgen -G "$netns_dir/hosts/*/*/shard-*.pid" >/dev/null; then
    echo "stop.yml left pid files" >&2
    exit 1
fi
instances() { # the committee's network instances, as the key hosts' server files say
    cat "$netns_dir"/hosts/h*/a*/server.json | /usr/bin/python3 -c '
import json, sys
decoder, text, found = json.JSONDecoder(), sys.stdin.read(), set()
while text.strip():
    entry, end = decoder.raw_decode(text.strip())
    found.add(entry["authority"]["instance"])
    text = text.strip()[end:]
print(" ".join(sorted(found)))'
}
before=$(instances)
playbook wipe.yml
if compgen -G "$netns_dir/hosts/*/*/data" >/dev/null; then
    echo "wipe.yml left data directories" >&2
    exit 1
fi
[ "$(instances)" != "$before" ] || { echo "wipe.yml kept the network instances" >&2; exit 1; }

step "deploy.yml again: the kept keys as a new network"
playbook deploy.yml
check_run run
check_shards_run_as_units
playbook stop.yml
step "ansible deployment test passed"

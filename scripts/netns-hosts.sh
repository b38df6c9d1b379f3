# shellcheck shell=bash
# Network namespaces as hosts for the Ansible playbooks (deploy/ansible): sourced after
# scripts/lib.sh, not run. Used by scripts/ansible-test.sh (CI) and scripts/bench-hosts.sh.
#
#   netns_hosts_up DIR N   makes a switch namespace (one bridge), a controller namespace
#                          (10.214.0.2), N host namespaces h1..hN (10.214.0.11..) and a client
#                          namespace c1 (10.214.0.200), each host and the client running sshd
#                          on its address with key authentication (a key made in DIR); writes
#                          DIR/inventory.yml (hosts, client, per-host fastpay_root under
#                          DIR/hosts, the nohup service manager). Its `vars:` come last, so a
#                          caller may append variables indented by four spaces.
#   playbook ARGS...       runs ansible-playbook from deploy/ansible in the controller
#                          namespace against DIR/inventory.yml.
#   netns_hosts_down [STATUS]  stops the shards and sshds started there, deletes the
#                          namespaces and DIR (unless $keep is true).
# Needs root; install_missing installs ansible-core and openssh-server from Debian.

install_missing() {
    need_deb ansible-playbook ansible-core
    need_deb /usr/sbin/sshd openssh-server
}

netns_prefix="fpa$$"
netns_switch="${netns_prefix}s"
netns_subnet=10.214.0
netns_names=()
netns_work=""

netns_add_host() { # NAME LAST-OCTET
    local ns="${netns_prefix}$1"
    ip netns add "$ns"
    netns_names+=("$ns")
    ip -n "$ns" link add eth0 type veth peer name "${ns}p"
    ip -n "$ns" link set "${ns}p" netns "$netns_switch"
    ip -n "$netns_switch" link set "${ns}p" master br0
    ip -n "$netns_switch" link set "${ns}p" up
    ip -n "$ns" addr add "$netns_subnet.$2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

netns_start_sshd() { # NAME LAST-OCTET
    local work=$netns_work
    {
        echo "ListenAddress $netns_subnet.$2"
        echo "HostKey $work/host_key"
        echo "PidFile $work/sshd-$1.pid"
        echo "AuthorizedKeysFile $work/authorized_keys"
        echo "PermitRootLogin prohibit-password"
        echo "PasswordAuthentication no"
        echo "KbdInteractiveAuthentication no"
        echo "UsePAM no"
        echo "StrictModes no"
        echo "MaxStartups 100"
        echo "Subsystem sftp internal-sftp"
    } > "$work/sshd-$1.conf"
    ip netns exec "${netns_prefix}$1" /usr/sbin/sshd -f "$work/sshd-$1.conf" -E "$work/sshd-$1.log"
}

netns_hosts_up() { # DIR N
    netns_work=$1
    local work=$1 count=$2 i
    ip netns add "$netns_switch"
    ip -n "$netns_switch" link add br0 type bridge
    ip -n "$netns_switch" link set br0 up
    netns_add_host ctl 2
    for i in $(seq 1 "$count"); do netns_add_host "h$i" $((10 + i)); done
    netns_add_host c1 200
    mkdir -p /run/sshd "$work/hosts"
    # The shards run as the service account (as their units would): it must reach each
    # host's fastpay_root below here, as it reaches /opt/fastpay.
    chmod 0755 "$work" "$work/hosts"
    ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C fastpay-netns-hosts
    ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
    cp "$work/id.pub" "$work/authorized_keys"
    for i in $(seq 1 "$count"); do netns_start_sshd "h$i" $((10 + i)); done
    netns_start_sshd c1 200
    {
        echo "all:"
        echo "  children:"
        echo "    fastpay_hosts:"
        echo "      hosts:"
        for i in $(seq 1 "$count"); do
            echo "        h$i: {ansible_host: $netns_subnet.$((10 + i)), fastpay_root: $work/hosts/h$i}"
        done
        echo "    fastpay_client:"
        echo "      hosts:"
        echo "        c1: {ansible_host: $netns_subnet.200, fastpay_root: $work/hosts/c1}"
        echo "  vars:"
        echo "    ansible_user: root"
        echo "    ansible_ssh_private_key_file: $work/id"
        echo "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        echo "    ansible_python_interpreter: /usr/bin/python3"
        echo "    fastpay_build: false"
        echo "    fastpay_bin_dir: ${bin:-$PWD/target/release}"
        echo "    fastpay_artifacts: $work/artifacts"
        echo "    fastpay_service_manager: nohup"
        echo "    fastpay_stats_interval: 0"
    } > "$work/inventory.yml"
}

playbook() {
    # Own SSH control sockets: a master left from another run would hold a dead connection.
    (cd deploy/ansible && ANSIBLE_LOCAL_TEMP="$netns_work/ansible-local" \
        ANSIBLE_SSH_CONTROL_PATH_DIR="$netns_work/cp" \
        ip netns exec "${netns_prefix}ctl" ansible-playbook -i "$netns_work/inventory.yml" "$@")
}

netns_hosts_down() { # [STATUS]
    local status=${1:-0} work=$netns_work pidfile ns socket
    if [ "${keep:-false}" = true ]; then
        step "kept $work and namespaces ${netns_names[*]} $netns_switch"
        return
    fi
    # The SSH masters first (their sessions then end), then shards and sshds.
    for socket in "$work"/cp/*; do
        [ -S "$socket" ] && ssh -o ControlPath="$socket" -O exit fastpay-host 2>/dev/null || true
    done
    for pidfile in "$work"/hosts/*/*/shard-*.pid "$work"/sshd-*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 0.2
    for ns in "${netns_names[@]}" "$netns_switch"; do ip netns del "$ns" 2>/dev/null || true; done
    if [ "$status" -ne 0 ]; then
        step "failed; the end of each shard log:"
        tail -n 5 "$work"/hosts/*/logs/*.log >&2 2>/dev/null || true
    fi
    if [ -n "$work" ]; then rm -rf "$work"; fi
}

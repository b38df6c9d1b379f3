# shellcheck shell=bash
# Helpers shared by the scripts in this folder: sourced, not run (scripts/README.md lists the
# scripts). Sourcing it moves to the repository root and sets an EXIT trap that runs the
# hooks given to `at_exit`, stops every server started with `start_server` and removes $work.
#
# Every script has the same shape:
#
#   #!/usr/bin/env bash
#   # What it does, then its synopsis: this first comment block is its --help.
#   set -euo pipefail
#   . "$(dirname "$0")/lib.sh"
#
#   rate=1000 check=false
#   while [ $# -gt 0 ]; do
#       case "$1" in
#           --rate) rate=$(value "$@"); shift 2 ;;
#           --check) check=true; shift ;;
#           *) help_or_die "$1" ;;
#       esac
#   done

script=$(basename "$0")
script_path=$(realpath "$0")
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit

# ---- arguments and messages ----

# Prints the script's first comment block (after the #! line) without the leading "# ".
usage() {
    sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$script_path"
}

# Fails with status 2 (wrong usage) and message $*.
die() {
    echo "$script: $* (try --help)" >&2
    exit 2
}

# Fails with status 1 (a wrong result) and message $*.
fail() {
    echo "$script: FAIL: $*" >&2
    exit 1
}

# A progress line on stderr.
step() {
    echo "==> $*" >&2
}

# The argument loop's last case: --help prints the usage and exits, anything else fails.
help_or_die() {
    case "$1" in
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
}

# `value "$@"` prints the value of option $1 (that is $2), or fails if there is none.
value() {
    [ $# -ge 2 ] || die "$1 needs a value"
    printf '%s\n' "$2"
}

# ---- cleanup ----

# Runs at exit, in order: the at_exit hooks (they see the exit status in $exit_status), then
# SIGINT to every server still running (waiting for each), then $work is removed.
exit_hooks=()
exit_status=0
work=""
declare -A pid_of=()

at_exit() {
    exit_hooks+=("$1")
}

on_exit() {
    exit_status=$?
    set +e
    local hook
    for hook in "${exit_hooks[@]}"; do eval "$hook"; done
    stop_servers
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap on_exit EXIT
# The EXIT trap also runs on Ctrl-C and kill.
trap 'exit 130' INT
trap 'exit 143' TERM

# Sets `work` to a fresh temporary directory, removed at exit.
make_work() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/fastpay-${script%.sh}.XXXXXX")
}

# ---- building ----

# Builds every binary of the workspace in release (server, loadgen, client, bench) and sets
# `bin` to their directory. $1: `native` (default; -C target-cpu=native and the AVX-512 field
# arithmetic, in target/native), `portable` (the ordinary release build in target/release:
# AVX-512 chosen at run time) or `debug` (target/debug, quicker to build). Further arguments go
# to cargo (`--features fastpay-engine/primary`, say). With FASTPAY_BIN_DIR set (CI: the
# binaries `cargo test` just built), nothing is built and `bin` is that directory.
build_binaries() {
    local flavour=${1:-native}
    [ $# = 0 ] || shift
    if [ -n "${FASTPAY_BIN_DIR:-}" ]; then
        bin=$(realpath "$FASTPAY_BIN_DIR")
        local name
        for name in server client; do
            [ -x "$bin/$name" ] || die "FASTPAY_BIN_DIR=$FASTPAY_BIN_DIR has no $name"
        done
        step "using the binaries in $bin (FASTPAY_BIN_DIR)"
        return
    fi
    local cargo=(cargo build --locked --workspace --bins "$@")
    case "$flavour" in
        native)
            step "building (release, native CPU)"
            RUSTFLAGS='-C target-cpu=native --cfg curve25519_dalek_backend="avx512"' \
                CARGO_TARGET_DIR="$PWD/target/native" "${cargo[@]}" --release >&2
            bin="$PWD/target/native/release"
            ;;
        portable)
            step "building (release, portable)"
            "${cargo[@]}" --release >&2
            bin="$PWD/target/release"
            ;;
        debug)
            step "building (debug)"
            "${cargo[@]}" >&2
            bin="$PWD/target/debug"
            ;;
        *) die "build_binaries: unknown flavour $flavour" ;;
    esac
}

# `install_deb PACKAGE`: installs Debian's PACKAGE (apt-get update first if the package
# lists lack it; sudo unless root).
install_deb() {
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
    step "installing $1 (Debian package)"
    "${apt[@]}" install -y -q --no-install-recommends "$1" >/dev/null 2>&1 || {
        "${apt[@]}" update -q >/dev/null &&
            "${apt[@]}" install -y -q --no-install-recommends "$1" >/dev/null
    }
}

# `need_deb COMMAND PACKAGE`: install_deb PACKAGE unless COMMAND (a name on the PATH, or a
# path) is there already.
need_deb() {
    command -v "$1" >/dev/null 2>&1 || install_deb "$2"
}

# ---- a committee on 127.0.0.1 ----

# `generate_committee N S [ARGS...]`: N authorities of S shards each on 127.0.0.1, their keys in
# $work/server$i.json and the committee in $work/committee.json; ARGS go to `server generate`.
# Ports come from a random base (`port_base`): authority i listens on
# port_base + (i - 1)(S + 2), its shards' link ports right after it.
generate_committee() {
    local n=$1 shards=$2 i
    shift 2
    port_base=$(( 20000 + (RANDOM % 2000) * 10 ))
    : > "$work/committee.json"
    for i in $(seq 1 "$n"); do
        "$bin/server" --server "$work/server$i.json" generate --host 127.0.0.1 \
            --port $(( port_base + (i - 1) * (shards + 2) )) --shards "$shards" "$@" \
            >> "$work/committee.json"
    done
}

# `genesis ACCOUNTS [ARGS...]`: loadgen's genesis of ACCOUNTS accounts in
# $work/initial_accounts.txt; ARGS go to `loadgen genesis` (e.g. --funding 100).
genesis() {
    local accounts=$1
    shift
    step "genesis: $accounts accounts"
    "$bin/loadgen" genesis --accounts "$accounts" "$@" > "$work/initial_accounts.txt"
}

# ---- starting and stopping servers ----

# `start_server NAME I [ARGS...]`: starts authority I of the committee in $work in the
# background as process NAME (`server run` with the genesis, no periodic stats, then ARGS,
# e.g. --shard J), its stderr appended to $work/NAME.log and its PID in pid_of[NAME].
start_server() {
    local name=$1 i=$2
    shift 2
    "$bin/server" --server "$work/server$i.json" run \
        --initial-accounts "$work/initial_accounts.txt" --committee "$work/committee.json" \
        --stats-interval 0 "$@" 2>> "$work/$name.log" &
    pid_of[$name]=$!
}

# `wait_listening NAME...`: waits until each process NAME says in its log that it listens (up
# to 2 minutes each: large genesis files take a while); prints the log and fails if it died.
wait_listening() {
    local name pid log
    for name in "$@"; do
        pid=${pid_of[$name]} log="$work/$name.log"
        for _ in $(seq 1 1200); do
            grep -q "listening" "$log" 2>/dev/null && continue 2
            if ! kill -0 "$pid" 2>/dev/null; then
                cat "$log" >&2
                fail "server $name exited before listening"
            fi
            sleep 0.1
        done
        fail "server $name did not start listening within 2 minutes"
    done
}

# `start_committee N [ARGS...]`: starts authorities 1..N (processes server1..serverN, every
# shard in one process) with ARGS and waits until they all listen.
start_committee() {
    local n=$1 i names=()
    shift
    step "starting $n authorit$([ "$n" = 1 ] && echo y || echo ies)"
    for i in $(seq 1 "$n"); do
        start_server "server$i" "$i" "$@"
        names+=("server$i")
    done
    wait_listening "${names[@]}"
}

# `stop_server NAME [SIGNAL]`: sends SIGNAL (default INT: a clean stop) to process NAME and
# waits for it.
stop_server() {
    local pid=${pid_of[$1]:-}
    unset "pid_of[$1]"
    [ -n "$pid" ] || return 0
    kill -"${2:-INT}" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops every server still running (SIGINT to all, then waits for each).
stop_servers() {
    local name
    for name in "${!pid_of[@]}"; do kill -INT "${pid_of[$name]}" 2>/dev/null || true; done
    for name in "${!pid_of[@]}"; do stop_server "$name"; done
}

# ---- results ----

# `bench_json ARGS...`: runs scripts/bench.sh ARGS and prints its JSON (the last line on its
# stdout); if it fails, prints the end of its log and fails.
bench_json() {
    local log
    log=$(mktemp)
    if ! scripts/bench.sh "$@" 2> "$log" | tail -n 1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        fail "scripts/bench.sh $* failed"
    fi
    rm -f "$log"
}

# Reads loadgen's JSON on stdin and fails unless something was sent and every request
# succeeded: none rejected, timed out or answered by an equivocating authority.
check_all_ok() {
    python3 -c '
import json, sys
r = json.load(sys.stdin)
bad = r["sent"] == 0 or r["ok"] != r["sent"] or r["rejected"] or r["timeouts"] or r["equivocations"]
print("check: %d sent, %d ok, %d rejected, %d timeouts, %d equivocations" % (r["sent"], r["ok"], r["rejected"], r["timeouts"], r["equivocations"]), file=sys.stderr)
# The latency on the wire, without loadgens own delays, is at most the whole.
split = r["wire_latency_us"]["p99"] <= r["latency_us"]["p99"] and r["reply_waited_us"]["max"] <= r["latency_us"]["max"] and r["start_delay_us"]["max"] <= r["latency_us"]["max"]
print("check: p99 %d us, %d us on the wire" % (r["latency_us"]["p99"], r["wire_latency_us"]["p99"]), file=sys.stderr)
bad = bad or not split
sys.exit(1 if bad else 0)' || fail "not every request succeeded"
}

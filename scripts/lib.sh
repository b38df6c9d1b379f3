# Shared by the benchmark scripts: sourced, not run.

# Builds the server and loadgen in release and sets `bin` to their directory: for this
# machine's CPU (-C target-cpu=native, in target/native) unless $1 is `portable`.
build_binaries() {
    if [ "${1:-native}" = portable ]; then
        echo "==> building (release, portable)" >&2
        cargo build --release --locked -p fastpay-engine -p fastpay-loadgen >&2
        bin="$PWD/target/release"
    else
        echo "==> building (release, native CPU)" >&2
        RUSTFLAGS='-C target-cpu=native --cfg curve25519_dalek_backend="avx512"' \
            CARGO_TARGET_DIR="$PWD/target/native" \
            cargo build --release --locked -p fastpay-engine -p fastpay-loadgen >&2
        bin="$PWD/target/native/release"
    fi
}

# Starts one authority with $2 shards in directory $1 (server.json, committee.json, a genesis
# of $3 loadgen accounts in initial_accounts.txt, log in server.log), passing any further
# arguments to `server run`; sets `server_pid` and waits until it listens.
start_authority() {
    local dir=$1 shards=$2 accounts=$3
    shift 3
    local port=$(( 20000 + (RANDOM % 2000) * 10 ))
    "$bin/server" --server "$dir/server.json" generate --host 127.0.0.1 --port "$port" \
        --shards "$shards" > "$dir/committee.json"
    echo "==> genesis: $accounts accounts" >&2
    "$bin/loadgen" genesis --accounts "$accounts" > "$dir/initial_accounts.txt"
    "$bin/server" --server "$dir/server.json" run --initial-accounts "$dir/initial_accounts.txt" \
        --committee "$dir/committee.json" --stats-interval 0 "$@" 2> "$dir/server.log" &
    server_pid=$!
    wait_listening "$server_pid" "$dir/server.log"
}

# Waits until the server with PID $1 says in log $2 that it listens (up to 2 minutes: large
# genesis files take a while); prints the log and fails if it died first.
wait_listening() {
    local pid=$1 log=$2
    for _ in $(seq 1 1200); do
        grep -q "listening" "$log" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "server $pid did not start listening within 2 minutes" >&2
    return 1
}

#!/usr/bin/env bash
# The reference prototype's quickstart, step by step, with fastpay's binaries: a committee of
# 4 authorities × 4 shards on 127.0.0.1, 1000 accounts funded with 100 each; query two
# balances, transfer 10, query again, run the closed-loop benchmark; then kill one authority
# and show that a payment still completes.
#
#   scripts/quickstart.sh             every authority in one process (shards as pinned threads)
#   scripts/quickstart.sh --per-shard every shard in its own process, as the reference ran it
#
# It works in a fresh temporary directory and stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."

per_shard=false
case "${1:-}" in
    --per-shard) per_shard=true ;;
    "") ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
esac

echo "==> building (release)" >&2
cargo build --release --locked -p fastpay-engine >&2
bin="$PWD/target/release"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

echo "==> generating 4 authorities with 4 shards each" >&2
for I in 1 2 3 4; do
    "$bin/server" --server server"$I".json generate --host 127.0.0.1 --port 9"$I"00 --shards 4 >> committee.json
done
"$bin/client" --committee committee.json --accounts accounts.json create_accounts 1000 --initial-funding 100 >> initial_accounts.txt

echo "==> starting the servers" >&2
for I in 1 2 3 4; do
    if $per_shard; then
        for J in $(seq 0 3); do
            "$bin/server" --server server"$I".json run --shard "$J" --initial-accounts initial_accounts.txt \
                --committee committee.json --stats-interval 0 2> server"$I"-"$J".log &
            pids+=($!)
        done
    else
        "$bin/server" --server server"$I".json run --initial-accounts initial_accounts.txt \
            --committee committee.json --stats-interval 0 2> server"$I".log &
        pids+=($!)
    fi
done
sleep 1

client() { "$bin/client" --committee committee.json --accounts accounts.json "$@"; }
ACCOUNT1="$(head -n 1 initial_accounts.txt | awk -F: '{ print $1 }')"
ACCOUNT2="$(tail -n -1 initial_accounts.txt | awk -F: '{ print $1 }')"

echo "==> balances before: $(client query_balance "$ACCOUNT1" 2>/dev/null) $(client query_balance "$ACCOUNT2" 2>/dev/null)"
client transfer 10 --from "$ACCOUNT1" --to "$ACCOUNT2"
echo "==> balances after transferring 10: $(client query_balance "$ACCOUNT1" 2>/dev/null) $(client query_balance "$ACCOUNT2" 2>/dev/null)"

echo "==> benchmark over all 1000 accounts"
client benchmark

echo "==> ACCOUNT1 in the wallet (grep, as in the reference):"
grep -c "$ACCOUNT1" accounts.json | sed 's/^/    lines mentioning ACCOUNT1: /'

echo "==> killing authority 4"
if $per_shard; then kill "${pids[@]:12:4}"; else kill "${pids[3]}"; fi
client transfer 5 --from "$ACCOUNT2" --to "$ACCOUNT1"
echo "==> balances with authority 4 down: $(client query_balance "$ACCOUNT1" 2>/dev/null) $(client query_balance "$ACCOUNT2" 2>/dev/null)"

echo "==> additional local benchmark (./bench, as the reference's last line)"
(cd "$bin" && ./bench)

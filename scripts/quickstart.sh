#!/usr/bin/env bash
# The reference prototype's quickstart, step by step, with fastpay's binaries: a committee of
# 4 authorities × 4 shards on 127.0.0.1, 1000 accounts funded with 100 each; query two
# balances, transfer 10, query again, run the closed-loop benchmark; then kill one authority
# and show that a payment still completes.
#
#   scripts/quickstart.sh             every authority in one process (shards as pinned threads)
#   scripts/quickstart.sh --per-shard every shard in its own process, as the reference ran it
#
# It works in a fresh temporary directory and stops only the processes it started. It fails
# if a step fails or a balance is not what the transfers make it. The authorities listen on
# ports 9100..9404, as in the reference.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

per_shard=false
while [ $# -gt 0 ]; do
    case "$1" in
        --per-shard) per_shard=true; shift ;;
        *) help_or_die "$1" ;;
    esac
done

build_binaries portable
make_work
cd "$work"

step "generating 4 authorities with 4 shards each"
for I in 1 2 3 4; do
    "$bin/server" --server server"$I".json generate --host 127.0.0.1 --port 9"$I"00 --shards 4 >> committee.json
done
"$bin/client" --committee committee.json --accounts accounts.json create_accounts 1000 --initial-funding 100 >> initial_accounts.txt

step "starting the servers"
names=()
for I in 1 2 3 4; do
    if $per_shard; then
        for J in $(seq 0 3); do
            start_server "server$I-$J" "$I" --shard "$J"
            names+=("server$I-$J")
        done
    else
        start_server "server$I" "$I"
        names+=("server$I")
    fi
done
wait_listening "${names[@]}"

client() { "$bin/client" --committee committee.json --accounts accounts.json "$@"; }
ACCOUNT1="$(head -n 1 initial_accounts.txt | awk -F: '{ print $1 }')"
ACCOUNT2="$(tail -n -1 initial_accounts.txt | awk -F: '{ print $1 }')"
# `balances "WHEN" B1 B2`: prints both balances and fails unless they are B1 and B2.
balances() {
    local b1 b2
    b1=$(client query_balance "$ACCOUNT1" 2>/dev/null)
    b2=$(client query_balance "$ACCOUNT2" 2>/dev/null)
    echo "==> balances $1: $b1 $b2"
    [ "$b1 $b2" = "$2 $3" ] || fail "balances $1 are $b1 and $b2, not $2 and $3"
}

balances before 100 100
client transfer 10 --from "$ACCOUNT1" --to "$ACCOUNT2"
balances "after transferring 10" 90 110

echo "==> benchmark over all 1000 accounts"
client benchmark

echo "==> ACCOUNT1 in the wallet (grep, as in the reference):"
grep -c "$ACCOUNT1" accounts.json | sed 's/^/    lines mentioning ACCOUNT1: /'

echo "==> killing authority 4"
if $per_shard; then
    for J in 0 1 2 3; do stop_server "server4-$J" TERM; done
else
    stop_server server4 TERM
fi
client transfer 5 --from "$ACCOUNT2" --to "$ACCOUNT1"
balances "with authority 4 down" 95 105

echo "==> additional local benchmark (./bench, as the reference's last line)"
(cd "$bin" && ./bench)

#!/usr/bin/env bash
# Money into FastPay through the primary chain, on one machine: starts anvil (the pinned npm
# package; `npm ci --prefix primary` installs it) mining a block every second, generates a
# committee of 4 authorities, deploys the FastPay contract with `server deploy-contract`,
# starts the authorities following it, deposits into one wallet account with `client
# deposit`, pays another wallet account from the deposit, redeems part of it to an Ethereum
# address with `client redeem`, and prints the balances. Fails if one is not what it should
# be.
#
#   scripts/primary.sh [--confirmations N] [--latency DEPOSITS]
#
# --confirmations N   blocks built on a deposit before it is credited (default 2)
# --latency DEPOSITS  then measure deposit-to-spendable latency: DEPOSITS deposits one after
#                     the other, each timed from `client deposit` starting until the wallet's
#                     sync counts it (a quorum credited it); prints p50, p99 and max
#
# Builds the debug binaries with the primary feature (quick after `scripts/check.sh`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

confirmations=2 latency=0
while [ $# -gt 0 ]; do
    case "$1" in
        --confirmations) confirmations=$(value "$@"); shift 2 ;;
        --latency) latency=$(value "$@"); shift 2 ;;
        *) help_or_die "$1" ;;
    esac
done

anvil=primary/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
[ -x "$anvil" ] || die "anvil is missing: run 'npm ci --prefix primary' first"
build_binaries debug --features fastpay-engine/primary,fastpay-wallet/primary
make_work
anvil=$(realpath "$anvil")
cd "$work"

step "starting anvil (a block every second)"
"$anvil" --port 0 --block-time 1 --accounts 2 > anvil.log 2>&1 &
pid_of[anvil]=$!
rpc=
for _ in $(seq 1 600); do
    rpc=$(sed -n 's/^Listening on \(.*\)$/http:\/\/\1/p' anvil.log)
    [ -n "$rpc" ] && break
    sleep 0.1
done
[ -n "$rpc" ] || fail "anvil did not start: $(cat anvil.log)"
echo "anvil at $rpc"
# Anvil's well-known first two development keys: one deploys, one deposits.
echo ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 > deployer.key
echo 59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d > payer.key

step "generating 4 authorities (2 shards each) and 2 wallet accounts with 100 each"
generate_committee 4 2
client() { "$bin/client" --committee committee.json --accounts accounts.json "$@"; }
client create_accounts 2 --initial-funding 100 > initial_accounts.txt
ALICE=$(head -n 1 initial_accounts.txt | cut -d: -f1)
BOB=$(tail -n 1 initial_accounts.txt | cut -d: -f1)
PAYEE=0x00000000000000000000000000000000000000aa
# The exit account: transfers to it leave FastPay for the primary chain.
EXIT=0000000000000000000000000000000000000000000000000000000000000000

step "deploying the contract for the committee"
contract=$("$bin/server" deploy-contract --primary-rpc "$rpc" --eth-key deployer.key --committee committee.json)
echo "contract at $contract"
primary=(--primary-rpc "$rpc" --primary-contract "$contract")
start_committee 4 "${primary[@]}" --primary-confirmations "$confirmations" --primary-poll-ms 200

# `wait_wallet ACCOUNT UNITS`: waits (up to 2 minutes) until the wallet's sync of ACCOUNT
# shows UNITS, deposits counted once a quorum credited them.
wait_wallet() {
    local balance
    for _ in $(seq 1 1200); do
        balance=$(client sync "$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"])' || true)
        [ "$balance" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 holds ${balance:-nothing} after 2 minutes, not $2"
}

step "depositing 500 units (500 gwei) for $ALICE"
client deposit --amount 500 --to "$ALICE" "${primary[@]}" --eth-key payer.key
wait_wallet "$ALICE" 600
step "paying 250 from $ALICE to $BOB"
client transfer 250 --from "$ALICE" --to "$BOB" >/dev/null
step "redeeming 100 of $BOB's units to the Ethereum address $PAYEE"
client redeem --from "$BOB" --amount 100 --to "$PAYEE" "${primary[@]}" --eth-key payer.key
a=$(client query_balance "$ALICE" 2>/dev/null)
b=$(client query_balance "$BOB" 2>/dev/null)
out=$(client query_balance "$EXIT" 2>/dev/null)
echo "==> FastPay balances: $ALICE $a, $BOB $b; left for the primary chain: $out"
[ "$a $b $out" = "350 250 100" ] || fail "balances are $a, $b and $out, not 350, 250 and 100"
step "auditing the supply across FastPay and the contract"
client audit --settled "${primary[@]}"

if [ "$latency" -gt 0 ]; then
    step "deposit-to-spendable latency over $latency deposits ($confirmations confirmations, a block a second)"
    expected=350
    : > latency.txt
    for i in $(seq 1 "$latency"); do
        start=$(date +%s%N)
        client deposit --amount 1 --to "$ALICE" "${primary[@]}" --eth-key payer.key >/dev/null 2>&1
        expected=$((expected + 1))
        wait_wallet "$ALICE" "$expected"
        echo $(( ($(date +%s%N) - start) / 1000000 )) >> latency.txt
        printf '\r%s/%s deposits' "$i" "$latency" >&2
    done
    echo >&2
    python3 - latency.txt <<'PY'
import sys
ms = sorted(int(l) for l in open(sys.argv[1]))
pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"deposit-to-spendable over {len(ms)} deposits: p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {ms[-1]} ms")
PY
fi

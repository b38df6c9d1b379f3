#!/usr/bin/env bash
# The wallet page in a real browser: installs Debian's Chromium and chromedriver if missing,
# then runs the ignored end-to-end test `in_a_browser_the_merchant_page_turns_to_paid`
# (engine/tests/wallet_service.rs): a committee of four, two wallets each served by
# `client serve`, a merchant page waiting for 12, the other wallet's page paying it, and the
# merchant page turning to "paid". Screenshots of both pages are kept in --out (default
# target/browser: merchant-paid.png, payer-paid.png).
#
#   scripts/browser-test.sh [--out DIR]
#
# Builds with the same features as scripts/check.sh, so after it nothing is rebuilt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=target/browser
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$(value "$@"); shift 2 ;;
        *) help_or_die "$1" ;;
    esac
done

need_deb chromium chromium
need_deb chromedriver chromium-driver
# Some font for the screenshots (the packages above come without their recommended ones).
[ -n "$(fc-list 2>/dev/null)" ] || install_deb fonts-liberation
mkdir -p "$out"
out=$(cd "$out" && pwd)
step "browser test (screenshots in $out)"
FASTPAY_SCREENSHOTS="$out" cargo test --locked -p fastpay-engine --test wallet_service \
    --features fastpay-engine/primary,fastpay-wallet/primary \
    -- --ignored in_a_browser_the_merchant_page_turns_to_paid
for png in merchant-paid.png payer-paid.png; do
    [ -s "$out/$png" ] || fail "no screenshot $out/$png"
done
step "screenshots: $out/merchant-paid.png, $out/payer-paid.png"

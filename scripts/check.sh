#!/usr/bin/env bash
# What CI checks, runnable locally: module cycles, formatting, function length, lints, then the
# test suite.
#
#   scripts/check.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# = 0 ] || help_or_die "$1"
# No crate's files import each other in a cycle (every crate's src/, fuzz/ included).
python3 scripts/module-cycles.py */src
cargo fmt --all -- --check
# No function outside tests longer than 120 lines.
python3 scripts/long-functions.py
# The primary chain (Ethereum) is a feature of the server and the client: the tests build it
# in and run against a real anvil (`npm ci --prefix primary` installs it); the benchmark
# scripts' release builds leave it out. Lints run both ways.
features=fastpay-engine/primary,fastpay-wallet/primary
cargo clippy --workspace --all-targets --locked --features "$features" -- -D warnings
cargo clippy -p fastpay-engine -p fastpay-wallet --all-targets --locked -- -D warnings
cargo test --workspace --locked --features "$features"

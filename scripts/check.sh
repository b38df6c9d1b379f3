#!/usr/bin/env bash
# What CI checks, runnable locally: module cycles, formatting, function length, lints, then the
# test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# No crate's files import each other in a cycle (every crate's src/, fuzz/ included).
python3 scripts/module-cycles.py */src
cargo fmt --all -- --check
# No function outside tests longer than 120 lines.
python3 scripts/long-functions.py
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

#!/usr/bin/env bash
# What CI checks, runnable locally: formatting, lints, then the test suite.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

#!/usr/bin/env bash
# What CI checks, runnable locally: formatting, lints, then the test suite.
#
#   scripts/check.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# = 0 ] || help_or_die "$1"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

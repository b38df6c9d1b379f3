#!/usr/bin/env bash
# The long, #[ignore]d stress runs (names start with stress_): many crashes, long loads.
#
#   scripts/stress.sh [TEST ARGS...]    (passed on to the test binaries, after `--ignored stress_`)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) usage; exit 0 ;; esac
cargo test --release --locked --workspace -- --ignored stress_ "$@"

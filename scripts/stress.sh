#!/usr/bin/env bash
# The long, #[ignore]d stress runs (names start with stress_): many crashes, long loads.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cargo test --release --locked --workspace -- --ignored stress_ "$@"

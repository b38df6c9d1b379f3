#!/usr/bin/env bash
# The long, #[ignore]d stress runs (names start with stress_): many crashes, long loads.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked --workspace -- --ignored stress_ "$@"

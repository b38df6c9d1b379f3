#!/usr/bin/env bash
# The primary-chain contract's artifact: `build` compiles primary/contracts/ with the pinned
# solcjs (primary/package-lock.json) and writes primary/artifacts/FastPayPrimary.json; `check`
# compiles again and fails if the committed artifact differs. Needs `npm ci --prefix primary`.
set -euo pipefail
cd "$(dirname "$0")/.."

ARTIFACT=primary/artifacts/FastPayPrimary.json

if [[ ! -d primary/node_modules/solc ]]; then
    echo "solc is missing: run 'npm ci --prefix primary' first" >&2
    exit 1
fi

case "${1:-}" in
    build)
        node primary/compile.js >"$ARTIFACT.tmp"
        mv "$ARTIFACT.tmp" "$ARTIFACT"
        echo "wrote $ARTIFACT" >&2
        ;;
    check)
        fresh=$(mktemp)
        trap 'rm -f "$fresh"' EXIT
        node primary/compile.js >"$fresh"
        if ! diff -u "$ARTIFACT" "$fresh" >&2; then
            echo "$ARTIFACT differs from a fresh compile: run 'scripts/contract.sh build' and commit it" >&2
            exit 1
        fi
        echo "$ARTIFACT matches a fresh compile" >&2
        ;;
    *)
        echo "usage: $0 build|check" >&2
        exit 2
        ;;
esac

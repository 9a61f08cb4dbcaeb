#!/usr/bin/env bash
# The long fuzz pass: every parser of untrusted input with CASES cases (default 1,000,000),
# in release mode. CI runs the same tests with proptest's default of 256 cases.
#
#   bash scripts/fuzz.sh            # about an hour on 2 cores
#   CASES=50000 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${CASES:-1000000}"
export PROPTEST_CASES="$cases"
echo "== $cases cases per parser"
failed=0
run() {
    echo "== $*"
    local started=$SECONDS
    if ! cargo test --release --quiet "$@" > /tmp/ratethrottle-fuzz.log 2>&1; then
        failed=1
        grep -E "FAILED|panicked|minimal failing" /tmp/ratethrottle-fuzz.log || true
    fi
    grep -E "test result" /tmp/ratethrottle-fuzz.log || true
    echo "   $((SECONDS - started)) s"
}
run -p ratethrottle --test tests fuzz::                      # rate strings, names, identifiers
run -p ratethrottle-config --test tests fuzz::               # YAML, aliases, nesting, ${VAR}
run -p ratethrottle-http --all-features --test tests fuzz::  # X-Forwarded-For, Forwarded, X-Real-IP
run -p ratethrottle-http --all-features --lib any_header     # JWT subjects, user headers
run -p ratethrottle-redis --lib any_reply                    # Redis script replies
run -p ratethrottle --lib integer_edges                      # strategies at the integer edges
if [ -x python/.venv/bin/python ]; then
    echo "== Python argument conversions"
    FUZZ_CASES="$cases" python/.venv/bin/python -m pytest -q -p no:cacheprovider \
        python/tests/test_hardening.py -k fuzz || failed=1
fi
exit "$failed"

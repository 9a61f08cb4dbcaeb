#!/usr/bin/env bash
# All tests: the Rust workspace, then the Python package built as a wheel into a fresh venv and
# tested with pytest (Flask, FastAPI, Starlette, Django, WSGI; Redis when redis-server exists).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --workspace --all-features"
cargo test --workspace --all-features

echo "== Python: wheel in a fresh venv, then pytest"
if ! command -v python3 >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then echo "python3 is required in CI" >&2; exit 1; fi
    echo "python3 not found: Python tests skipped"
    exit 0
fi
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "./python[test]"
# From the repository root, so `import ratethrottle` is the installed wheel, not python/ratethrottle.
"$venv/bin/python" -I -m pytest -q -p no:cacheprovider python/tests
echo "== Python: the installed package's types (mypy --strict on a typed usage file)"
"$venv/bin/python" -I -m mypy --strict --no-incremental python/tests/test_typing_usage.py

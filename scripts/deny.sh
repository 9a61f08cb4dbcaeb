#!/usr/bin/env bash
# Licenses, bans and sources of every dependency (deny.toml), with cargo-deny. Run by hand:
#   bash scripts/deny.sh        # installs cargo-deny first when it is missing (a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install cargo-deny --locked
fi
exec cargo deny --all-features check licenses bans sources

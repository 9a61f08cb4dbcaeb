#!/usr/bin/env bash
# Checks that each crate builds with the oldest Rust its `rust-version` claims (run by hand;
# installs the toolchains with rustup when missing, a minute or two each).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/msrv"
check() { # version, cargo arguments...
    local version="$1"; shift
    rustup toolchain list | grep -q "^$version" || rustup toolchain install "$version" --profile minimal
    echo "== Rust $version: cargo check $*"
    CARGO_TARGET_DIR="$target-$version" cargo "+$version" check --quiet "$@"
}
check 1.85 -p ratethrottle --features conformance
check 1.85 -p ratethrottle-protect
check 1.88 --workspace --all-features

#!/usr/bin/env bash
# The soak test of the Redis store under a failing Redis (run by hand; results in BENCHMARKS.md).
#
#   bash scripts/soak.sh            # 10 minutes, 4 worker processes
#   SOAK_SECONDS=120 bash scripts/soak.sh
#
# Starts its own redis-server (appendonly yes, appendfsync always) on a free port, kills and
# restarts it every 30 s and pauses it once for 5 s while 4 processes check limits and change
# lists, then checks: no list entry lost, no circuit stuck open, p99.9 latency within the
# per-call timeout + 10 ms, each degraded period logged once, flat memory, exact limits in
# every calm second. Exits 1 if any check fails. See crates/ratethrottle-redis/examples/soak.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "soak needs redis-server (apt-get install redis-server)" >&2; exit 2; }
cargo build --release --quiet -p ratethrottle-redis --example soak
exec ./target/release/examples/soak run --seconds "${SOAK_SECONDS:-600}" --workers "${SOAK_WORKERS:-4}"

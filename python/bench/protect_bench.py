#!/usr/bin/env python3
"""
`DDoSProtection.analyze_traffic`, `RateThrottleAnalytics.record_request` and
`AdaptiveRateLimiter.check_adaptive` per call: this package against the original
`ratethrottle==1.4.0`, in one run. Workload: 10,000 identifiers round-robin over 100 endpoints,
a browser's user agent, the system clock; the adaptive limiter's, 1,000 users round-robin
with the default settings.

    python python/bench/protect_bench.py                  # sets up its venvs on first use
    python python/bench/protect_bench.py --rounds 5 --calls 200000
    python python/bench/protect_bench.py --ours-python python/.venv/bin/python

The venvs are those of `bench.py` (`.venv-peers` with 1.4.0, `.venv-ours` with a release
build of this package). Each contestant runs in its own process; rounds interleave them and
the ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench import ours_python, peers_python, run

IDENTIFIERS = 10_000
ENDPOINTS = 100
USERS = 1_000


def worker(args: argparse.Namespace) -> None:
    import ratethrottle as rt

    ids = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(IDENTIFIERS)]
    endpoints = [f"/api/resource/{i}" for i in range(ENDPOINTS)]
    calls = args.calls
    if args.what == "analyze":
        ddos = rt.DDoSProtection({"enabled": True})
        analyze = ddos.analyze_traffic
        start = time.perf_counter()
        for i in range(calls):
            analyze(ids[i % IDENTIFIERS], endpoints[i % ENDPOINTS], user_agent="Mozilla/5.0")
    elif args.what == "adaptive":
        from ratethrottle.adaptive import AdaptiveRateLimiter

        users = [f"user_{i}" for i in range(USERS)]
        check = AdaptiveRateLimiter().check_adaptive
        start = time.perf_counter()
        for i in range(calls):
            check(users[i % USERS])
    else:
        analytics = rt.RateThrottleAnalytics(max_history=10_000)
        record = analytics.record_request
        start = time.perf_counter()
        for i in range(calls):
            record(ids[i % IDENTIFIERS], "api", i % 10 != 0)
    elapsed = time.perf_counter() - start
    print(json.dumps({"us_per_call": elapsed / calls * 1e6}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("analyze", "record", "adaptive"), default="analyze")
    parser.add_argument("--only", choices=("analyze", "record", "adaptive"),
                        help="run this benchmark alone")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--ours-python", help="an interpreter that has this package installed")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    pythons = {
        "original": peers_python(),
        "ours": ours_python(args.ours_python),
    }
    results = {}
    for what in (args.only,) if args.only else ("analyze", "record", "adaptive"):
        rounds = []
        for r in range(args.rounds):
            row = {}
            for name in ("ours", "original"):
                out = run([pythons[name], __file__, "--worker", "--what", what,
                           "--calls", str(args.calls)])
                row[name] = json.loads(out)["us_per_call"]
            rounds.append(row)
            print(f"{what} round {r + 1}: ours {row['ours']:.2f} µs, 1.4.0 {row['original']:.2f} µs",
                  file=sys.stderr)
        results[what] = {
            "us_per_call": {n: statistics.median(r[n] for r in rounds) for n in ("ours", "original")},
            "speedup": statistics.median(r["original"] / r["ours"] for r in rounds),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

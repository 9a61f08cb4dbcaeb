#!/usr/bin/env python3
"""
`await WebSocketRateLimiter.check_message(...)` per second with this package against the
original `ratethrottle==1.4.0`, in one run: one registered connection, 64-byte messages,
message and byte limits far above the load (each call decides both), in memory.

    python python/bench/ws_bench.py --ours-python python/.venv/bin/python
    python python/bench/ws_bench.py --rounds 5 --calls 200000

Each contestant runs in its own process; rounds interleave them and the ratio is the median
of per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from bench import ours_python, peers_python, run


def worker(args: argparse.Namespace) -> None:
    from ratethrottle import WebSocketLimits, WebSocketRateLimiter

    limiter = WebSocketRateLimiter(WebSocketLimits(
        messages_per_minute=10**12, bytes_per_minute=10**15, connections_per_minute=10))

    async def main() -> float:
        assert await limiter.check_connection("10.0.0.1")
        await limiter.register_connection("conn", "10.0.0.1")
        check = limiter.check_message
        for _ in range(2000):
            assert (await check("conn", 64))["allowed"]
        start = time.perf_counter()
        for _ in range(args.calls):
            await check("conn", 64)
        elapsed = time.perf_counter() - start
        assert (await check("conn", 64))["allowed"]
        return args.calls / elapsed

    print(json.dumps({"checks_per_s": asyncio.run(main())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--ours-python", help="an interpreter that has this package installed")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    pythons = {"original": peers_python(), "ours": ours_python(args.ours_python)}
    rounds = []
    for r in range(args.rounds):
        row = {}
        for name in ("ours", "original"):
            calls = args.calls if name == "ours" else max(args.calls // 10, 1000)
            out = run([pythons[name], __file__, "--worker", "--calls", str(calls)])
            row[name] = json.loads(out)["checks_per_s"]
        rounds.append(row)
        print(f"round {r + 1}: ours {row['ours']:.0f}/s, 1.4.0 {row['original']:.0f}/s",
              file=sys.stderr)
    print(json.dumps({
        "checks_per_s": {n: statistics.median(r[n] for r in rounds) for n in ("ours", "original")},
        "ours_over_original": statistics.median(r["ours"] / r["original"] for r in rounds),
    }, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""
Checks per second through `RateThrottleCore.check_rate_limit`: this package against the
original `ratethrottle==1.4.0` and against `limits`, in one run, in memory and on Redis; and how
many requests each admits when 4 processes share one limit on Redis.

    python python/bench/bench.py                      # sets up its venvs on first use
    python python/bench/bench.py --rounds 5 --seconds 2 --backends memory

The original and `limits` are installed from PyPI into `python/bench/.venv-peers`; this package
is built (release) into `python/bench/.venv-ours` unless `--ours-python` names an interpreter
that has it. Each contestant runs in its own process, rounds interleave the contestants, and
the ratios are medians of per-round ratios (the machine is shared and noisy: compare ratios,
not absolute numbers across runs). A Redis server is started on a free port when
`--redis-url` is not given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
IDENTIFIERS = 1000
CONTESTANTS = ("ours", "original", "limits")
#: The original 1.4.0's Redis block check returns `{0, nil}`, which Redis truncates to `{0}`;
#: the IndexError makes every check a denial (rule_name "error"). "original_fixed" is the
#: original with that one script corrected, so its Redis path can be timed doing real work.
FIXED_BLOCK_CHECK = """
local value = redis.call('GET', KEYS[1])
if not value then return {0, false} end
local expiry = tonumber(value) or 0
if expiry > 0 and expiry <= tonumber(ARGV[1]) then
    redis.call('DEL', KEYS[1])
    return {0, false}
end
return {1, value}
"""


def fix_original_block_check() -> None:
    from ratethrottle.storage_backend import RedisStorage

    def check_and_delete_if_expired(self, key):
        result = self.redis.eval(FIXED_BLOCK_CHECK, 1, self._make_key(key), str(time.time()))
        return bool(result[0]), self._deserialize(result[1]) if result[1] else None

    RedisStorage.check_and_delete_if_expired = check_and_delete_if_expired


# Workers: one contestant, one backend, timed in its own process.


def make_checker(name: str, backend: str, redis_url: str, limit: int, window: int, prefix: str):
    """`(call, first_argument)`: a check is `call(identifier, first_argument)` (or, for
    `limits`, `call(first_argument, identifier)`), returning whether it was allowed."""
    if name in ("ours", "original", "original_fixed"):
        import ratethrottle as rt

        if name == "original_fixed":
            fix_original_block_check()

        if backend == "memory":
            storage = rt.InMemoryStorage()
        elif name == "ours":
            storage = rt.RedisStorage(redis_url, key_prefix=prefix)
        else:
            import redis

            storage = rt.RedisStorage(redis.from_url(redis_url), key_prefix=prefix)
        core = rt.RateThrottleCore(storage=storage)
        core.add_rule(rt.RateThrottleRule(name="api", limit=limit, window=window, block_duration=0))
        return core.check_rate_limit, "api"
    import limits
    from limits import strategies

    if backend == "memory":
        storage = limits.storage.MemoryStorage()
    else:
        storage = limits.storage.RedisStorage(redis_url, key_prefix=prefix)
    strategy = getattr(strategies, "SlidingWindowCounterRateLimiter", strategies.MovingWindowRateLimiter)
    return strategy(storage).hit, limits.RateLimitItemPerSecond(limit, window)


def allowed(name: str, result) -> bool:
    return result if name == "limits" else result.allowed


def run_checks(name: str, call, argument, ids) -> None:
    """One check per identifier: the loop the throughput is measured on."""
    if name == "limits":
        for identifier in ids:
            call(argument, identifier)
    else:
        for identifier in ids:
            call(identifier, argument)


def worker(args: argparse.Namespace) -> None:
    prefix = f"bench:{args.contestant}:{os.getpid()}:{time.time_ns()}:"
    if args.exactness:
        call, argument = make_checker(args.contestant, args.backend, args.redis_url, args.limit, 3600, args.prefix)
        one = (lambda: call(argument, "shared-client")) if args.contestant == "limits" else (
            lambda: call("shared-client", argument))
        while time.time() < args.start_at:
            time.sleep(0.0005)
        admitted = sum(1 for _ in range(args.requests) if allowed(args.contestant, one()))
        print(json.dumps({"admitted": admitted}))
        return
    call, argument = make_checker(args.contestant, args.backend, args.redis_url, 10**9, 60, prefix)
    ids = [f"10.0.{i // 256}.{i % 256}" for i in range(IDENTIFIERS)]
    run_checks(args.contestant, call, argument, ids)  # warm up: every key exists
    done = 0
    deadline = time.perf_counter() + args.seconds
    start = time.perf_counter()
    while True:
        run_checks(args.contestant, call, argument, ids)
        done += len(ids)
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    print(json.dumps({"checks_per_sec": done / elapsed}))


# Driver: venvs, Redis, rounds, ratios.


def run(cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def ensure_venv(path: Path, packages: list, label: str) -> Path:
    python = path / "bin" / "python"
    marker = path / ".ready"
    if not marker.exists() or marker.read_text() != " ".join(packages):
        print(f"setting up {label} in {path} ...", file=sys.stderr)
        shutil.rmtree(path, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(path)])
        run([str(python), "-m", "pip", "install", "-q", *packages])
        marker.write_text(" ".join(packages))
    return python


def peers_python() -> str:
    """The interpreter of `.venv-peers`: the original ratethrottle 1.4.0 and the other peers."""
    packages = ["ratethrottle==1.4.0", "pyyaml", "graphql-core", "grpcio", "limits", "redis"]
    return str(ensure_venv(HERE / ".venv-peers", packages, "the original ratethrottle 1.4.0 and limits"))


def ours_python(given: str = None) -> str:
    """`given` (an interpreter with this package installed), else the one of `.venv-ours`: a
    release build of this package with its gRPC extra, which every bench here can use."""
    return given or str(ensure_venv(HERE / ".venv-ours", [str(PACKAGE) + "[grpc]"],
                                    "this package (release build)"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server not found: install it or pass --redis-url / --backends memory")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rt-bench-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("redis-server did not start")


def contestant_python(name: str, pythons: dict) -> str:
    return pythons["ours"] if name == "ours" else pythons["peers"]


def measure(name: str, backend: str, seconds: float, redis_url: str, pythons: dict) -> float:
    out = run([contestant_python(name, pythons), __file__, "--worker", "--contestant", name,
               "--backend", backend, "--seconds", str(seconds), "--redis-url", redis_url or ""])
    return json.loads(out)["checks_per_sec"]


def exactness(name: str, redis_url: str, pythons: dict, processes: int, limit: int, requests: int) -> int:
    prefix = f"exact:{name}:{time.time_ns()}:"
    start_at = time.time() + 1.5  # every process connected and waiting
    procs = [
        subprocess.Popen(
            [contestant_python(name, pythons), __file__, "--worker", "--exactness",
             "--contestant", name, "--backend", "redis", "--redis-url", redis_url,
             "--limit", str(limit), "--requests", str(requests), "--prefix", prefix,
             "--start-at", str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for _ in range(processes)
    ]
    return sum(json.loads(p.communicate()[0])["admitted"] for p in procs)


def driver(args: argparse.Namespace) -> None:
    pythons = {
        "peers": peers_python(),
        "ours": ours_python(args.ours_python),
    }
    versions = json.loads(run([pythons["peers"], "-c",
        "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in ('ratethrottle', 'limits', 'redis')}))"]))
    print(f"peers: {versions}", file=sys.stderr)
    redis_proc, redis_url = (None, args.redis_url)
    if "redis" in args.backends and not redis_url:
        redis_proc, redis_url = start_redis()
    results = {}
    try:
        for backend in args.backends:
            seconds = args.seconds if backend == "memory" else args.seconds * 2
            names = CONTESTANTS if backend == "memory" else ("ours", "original_fixed", "limits")
            rounds = []
            for r in range(args.rounds):
                row = {name: measure(name, backend, seconds, redis_url, pythons) for name in names}
                rounds.append(row)
                print(f"{backend} round {r + 1}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in row.items()),
                      file=sys.stderr)
            original = names[1]
            results[backend] = {
                "checks_per_sec": {n: statistics.median(r[n] for r in rounds) for n in names},
                f"ours_vs_{original}": statistics.median(r["ours"] / r[original] for r in rounds),
                "ours_vs_limits": statistics.median(r["ours"] / r["limits"] for r in rounds),
            }
        if "redis" in args.backends:
            results["exactness"] = {
                "processes": args.processes,
                "limit": args.limit,
                "requests": args.processes * args.requests,
                "admitted": {name: exactness(name, redis_url, pythons, args.processes, args.limit, args.requests)
                             for name in (*CONTESTANTS, "original_fixed")},
            }
    finally:
        if redis_proc is not None:
            redis_proc.kill()
    results["peers"] = versions
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement (Redis: twice this)")
    parser.add_argument("--backends", nargs="+", default=["memory", "redis"], choices=["memory", "redis"])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--ours-python", default=None, help="an interpreter with this package installed")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200, help="per process, for exactness")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exactness", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contestant", choices=(*CONTESTANTS, "original_fixed"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["memory", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()

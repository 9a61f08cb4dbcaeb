#!/usr/bin/env python3
"""
`get` / `set` / `increment` per second through the storage interface: this package's
`InMemoryStorage` and `RedisStorage` against the original `ratethrottle==1.4.0`'s, in one run,
with a bare `dict` behind the same harness as the in-memory ceiling; and checks per second of
`RateThrottleCore` over a user's dict-backed `StorageBackend` (the same class for both).

    python python/bench/storage_bench.py                   # venvs as bench.py sets them up
    python python/bench/storage_bench.py --rounds 5 --backends memory

Each contestant runs in its own process; rounds interleave them; each ratio is the median of
the per-round ratios (compare ratios, not absolute numbers across runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench import HERE, ours_python, peers_python, run, start_redis

KEYS = [f"key:{i}" for i in range(1000)]
OPERATIONS = ("get", "set", "increment")
#: A check through a user's own dict-backed StorageBackend (ours and the original only).
CUSTOM_CHECK = "check_custom"


class DictStorage:
    """The ceiling: the same three calls on a bare dict (no TTL, no locking)."""

    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.data[key] = value
        return True

    def increment(self, key, amount=1, ttl=None):
        value = self.data.get(key, 0) + amount
        self.data[key] = value
        return value


def custom_storage_class():
    """A dict-backed StorageBackend subclass of the running package (the same code for ours
    and the original: every method the original's ABC requires)."""
    import time as clock

    from ratethrottle.storage_backend import StorageBackend

    class DictBackend(StorageBackend):
        def __init__(self):
            self.data = {}

        def _live(self, key):
            value, expiry = self.data.get(key, (None, None))
            if expiry is not None and expiry <= clock.time():
                self.data.pop(key, None)
                return None
            return value

        def get(self, key):
            return self._live(key)

        def set(self, key, value, ttl=None):
            self.data[key] = (value, clock.time() + ttl if ttl else None)
            return True

        def increment(self, key, amount=1, ttl=None):
            value = (self._live(key) or 0) + amount
            self.set(key, value, ttl)
            return value

        def delete(self, key):
            return self.data.pop(key, None) is not None

        def exists(self, key):
            return self._live(key) is not None

        def check_and_delete_if_expired(self, key):
            value = self._live(key)
            return (value is not None, value)

        def set_if_not_exists(self, key, value, ttl=None):
            if self._live(key) is not None:
                return False
            return self.set(key, value, ttl)

        def delete_many(self, keys):
            return sum(self.delete(k) for k in keys)

    return DictBackend


def make_storage(name: str, backend: str, redis_url: str):
    if name == "dict":
        return DictStorage()
    import ratethrottle as rt

    if backend == "memory":
        return rt.InMemoryStorage()
    prefix = f"sbench:{name}:{time.time_ns()}:"
    if name == "ours":
        return rt.RedisStorage(redis_url, key_prefix=prefix)
    import redis

    return rt.RedisStorage(redis.from_url(redis_url), key_prefix=prefix)


def timed(loop, seconds: float) -> float:
    """Calls per second of `loop()` (one call per key each time), over about `seconds`."""
    loop()  # warm up
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        loop()
        done += len(KEYS)
    return done / (time.perf_counter() - start)


def worker(args: argparse.Namespace) -> None:
    storage = make_storage(args.contestant, args.backend, args.redis_url)
    get, set_, increment = storage.get, storage.set, storage.increment

    def gets():
        for key in KEYS:
            get(key)

    def sets():
        for key in KEYS:
            set_(key, 1, 60)

    def increments():
        for key in KEYS:
            increment(key, 1, 60)

    rates = {
        "set": timed(sets, args.seconds),
        "get": timed(gets, args.seconds),
        "increment": timed(increments, args.seconds),
    }
    if args.backend == "memory" and args.contestant != "dict":
        import ratethrottle as rt

        core = rt.RateThrottleCore(storage=custom_storage_class()())
        core.add_rule(rt.RateThrottleRule(name="api", limit=10**9, window=60))
        check = core.check_rate_limit

        def checks():
            for key in KEYS:
                check(key, "api")

        rates[CUSTOM_CHECK] = timed(checks, args.seconds)
    print(json.dumps(rates))


def measure(python: str, name: str, backend: str, seconds: float, redis_url: str) -> dict:
    out = run([python, __file__, "--worker", "--contestant", name, "--backend", backend,
               "--seconds", str(seconds), "--redis-url", redis_url or ""], cwd=str(HERE))
    return json.loads(out)


def driver(args: argparse.Namespace) -> None:
    pythons = {
        "original": peers_python(),
        "ours": ours_python(args.ours_python),
    }
    pythons["dict"] = pythons["ours"]
    redis_proc, redis_url = (None, args.redis_url)
    if "redis" in args.backends and not redis_url:
        redis_proc, redis_url = start_redis()
    results = {}
    try:
        for backend in args.backends:
            names = ("ours", "original", "dict") if backend == "memory" else ("ours", "original")
            seconds = args.seconds if backend == "memory" else args.seconds * 2
            rounds = []
            for r in range(args.rounds):
                row = {n: measure(pythons[n], n, backend, seconds, redis_url) for n in names}
                rounds.append(row)
                print(f"{backend} round {r + 1}: " + "; ".join(
                    f"{n} " + ", ".join(f"{op} {row[n][op]:,.0f}/s" for op in OPERATIONS) for n in names),
                    file=sys.stderr)
            results[backend] = {
                op: {
                    "per_sec": {n: statistics.median(r[n][op] for r in rounds) for n in names},
                    **{f"{n}_vs_original": statistics.median(r[n][op] / r["original"][op] for r in rounds)
                       for n in names if n != "original"},
                }
                for op in OPERATIONS
            }
            if backend == "memory":
                results[backend][CUSTOM_CHECK] = {
                    "per_sec": {n: statistics.median(r[n][CUSTOM_CHECK] for r in rounds)
                                for n in ("ours", "original")},
                    "ours_vs_original": statistics.median(
                        r["ours"][CUSTOM_CHECK] / r["original"][CUSTOM_CHECK] for r in rounds),
                }
    finally:
        if redis_proc is not None:
            redis_proc.kill()
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per operation (Redis: twice this)")
    parser.add_argument("--backends", nargs="+", default=["memory", "redis"], choices=["memory", "redis"])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--ours-python", default=None, help="an interpreter with this package installed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contestant", choices=("ours", "original", "dict"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["memory", "redis"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()

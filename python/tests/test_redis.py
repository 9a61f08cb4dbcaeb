"""Redis: one limit shared exactly by 4 processes, async checks, and Redis down."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time

import pytest

import ratethrottle as rt
from ratethrottle import RateThrottleRule

from conftest import run_processes, start_redis, stop_redis

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import ratethrottle as rt
    url, prefix, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    core = rt.RateThrottleCore(rt.RedisStorage(url, key_prefix=prefix))
    core.add_rule(rt.RateThrottleRule(name="api", limit=150, window=3600, strategy=sys.argv[4]))
    while time.time() < start_at:
        time.sleep(0.001)
    print(json.dumps(sum(core.check_rate_limit("shared", "api").allowed for _ in range(100))))
    """
)


@pytest.mark.parametrize("strategy", ["sliding_counter", "token_bucket", "sliding_window"])
def test_four_processes_share_one_limit_exactly(redis_url, redis_prefix, strategy):
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, redis_prefix, str(start_at), strategy],
            stdout=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    admitted = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(admitted) == 150, admitted


def test_lists_and_blocks_are_shared_through_redis(redis_url, redis_prefix):
    one = rt.RateThrottleCore(rt.RedisStorage(redis_url, key_prefix=redis_prefix))
    two = rt.create_limiter("redis", redis_url, key_prefix=redis_prefix)
    for core in (one, two):
        core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    one.add_to_blacklist("foe")
    assert two.is_blacklisted("foe")
    assert two.check_rate_limit("foe", "api").rule_name == "blacklist"
    assert one.check_rate_limit("a", "api").allowed
    denied = two.check_rate_limit("a", "api")
    # The server's clock decides; the wait rounds up to 300 or 301 s.
    assert not denied.allowed and denied.retry_after in (300, 301)
    assert one.storage.health_check()
    info = one.storage.get_info()
    assert (info["type"], info["kind"], info["healthy"]) == ("RedisStorage", "redis", True)
    assert info["redis_info"]["redis_version"]


def test_async_checks_on_redis_do_not_block_the_loop(redis_url, redis_prefix):
    core = rt.RateThrottleCore(rt.RedisStorage(redis_url, key_prefix=redis_prefix))
    core.add_rule(RateThrottleRule(name="api", limit=10, window=60))

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        statuses = await asyncio.gather(*(core.acheck_rate_limit("a", "api") for _ in range(25)))
        task.cancel()
        return sum(s.allowed for s in statuses), ticks

    allowed, ticks = asyncio.run(main())
    assert allowed == 10
    assert ticks > 0


def test_processes_exit_cleanly_right_after_async_checks(redis_url, redis_prefix):
    """A process that ends as soon as its async checks on Redis are answered exits with 0:
    every answer has left the interpreter before it finalizes. (pyo3-async-runtimes' handover
    could still be inside it, and such processes aborted at exit in about 2 runs of 3.)"""
    code = f"""
import asyncio, ratethrottle as rt
core = rt.RateThrottleCore(rt.RedisStorage({redis_url!r}, key_prefix={redis_prefix!r}))
core.add_rule(rt.RateThrottleRule(name="api", limit=15, window=60))
async def main():
    statuses = await asyncio.gather(*(core.acheck_rate_limit("fleet", "api") for _ in range(12)))
    print(sum(s.allowed for s in statuses))
asyncio.run(main())
"""
    # The abort was a race: several rounds of three processes, all refused after the first.
    admitted = [sum(int(out) for out in run_processes(code, 3)) for _ in range(3)]
    assert admitted == [15, 0, 0]


def test_an_unreachable_redis_is_a_clear_error():
    with pytest.raises(rt.StorageError, match="redis"):
        rt.RedisStorage("redis://127.0.0.1:1/0", connection_timeout=0.5)
    with pytest.raises(rt.ConfigurationError, match="Failed to connect to Redis"):
        rt.create_limiter("redis", "redis://127.0.0.1:1/0", connection_timeout=0.5)


def test_a_redis_py_client_is_accepted(redis_url, redis_prefix):
    redis = pytest.importorskip("redis")
    core = rt.RateThrottleCore(rt.RedisStorage(redis.from_url(redis_url), key_prefix=redis_prefix))
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    assert core.check_rate_limit("a", "api").allowed


@pytest.mark.parametrize("policy, allowed", [("fail_open", True), ("fail_closed", False)])
def test_a_redis_that_goes_down_follows_the_fault_policy(policy, allowed):
    proc, url = start_redis()
    core = rt.RateThrottleCore(rt.RedisStorage(url, fault_policy=policy, connection_timeout=0.2))
    core.add_rule(RateThrottleRule(name="api", limit=5, window=60))
    assert core.check_rate_limit("a", "api").allowed
    stop_redis(proc)
    status = core.check_rate_limit("a", "api")
    assert status.allowed is allowed
    if not allowed:
        assert status.rule_name == "storage_error"
        code, headers, body = status.rejection("a")
        assert code == 503 and dict(headers)["Retry-After"] == "1"


def test_the_async_core_on_redis(redis_url, redis_prefix):
    async def main():
        core = await rt.create_async_limiter("redis", redis_url, key_prefix=redis_prefix)
        other = rt.AsyncRateThrottleCore(rt.AsyncRedisStorage(redis_url, key_prefix=redis_prefix))
        core.add_rule(RateThrottleRule(name="api", limit=3, window=60))
        other.add_rule(RateThrottleRule(name="api", limit=3, window=60))
        await core.add_to_blacklist("foe")
        statuses = await asyncio.gather(*(c.check_rate_limit("a", "api") for c in (core, other) * 3))
        return sum(s.allowed for s in statuses), await other.is_blacklisted("foe"), await other.storage.health_check()

    assert asyncio.run(main()) == (3, True, True)

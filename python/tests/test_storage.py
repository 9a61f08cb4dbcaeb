"""The original's storage interface (`get`, `set`, `increment`, ...) on the engine's stores."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ratethrottle as rt
from ratethrottle import InMemoryStorage, RateThrottleRule, StorageError


def test_memory_values_are_kept_by_reference_and_expire_exactly(clock):
    storage = InMemoryStorage(clock=clock)
    value = {"nested": [1, 2]}
    assert storage.set("k", value, ttl=10) is True
    assert storage.get("k") is value
    clock.advance(9.999)
    assert storage.exists("k")
    clock.advance(0.001)
    assert storage.get("k") is None and not storage.exists("k")
    assert storage.check_and_delete_if_expired("k") == (False, None)
    storage.set("forever", "v")  # no TTL: never expires
    storage.set("zero", "v", ttl=0)  # 0: no TTL either, as in the original
    clock.advance(10**6)
    assert (storage.get("forever"), storage.get("zero")) == ("v", "v")


def test_a_storage_follows_the_clock_of_the_limiter_it_serves(clock):
    storage = InMemoryStorage()
    rt.RateThrottleCore(storage, clock=clock)
    storage.set("k", 1, ttl=5)
    clock.advance(5)
    assert storage.get("k") is None


def test_increments_count_from_zero_keep_or_restart_their_ttl(clock):
    storage = InMemoryStorage(clock=clock)
    assert storage.increment("n") == 1
    assert storage.increment("n", amount=4, ttl=60) == 5
    clock.advance(30)
    assert storage.increment("n", -2) == 3  # no ttl given: the key keeps its expiry
    clock.advance(30)
    assert storage.get("n") is None
    assert storage.increment("n", 1, ttl=60) == 1


def test_errors_start_with_the_originals_sentences(clock):
    storage = InMemoryStorage(clock=clock)
    storage.set("text", "abc")
    with pytest.raises(StorageError, match="^Cannot increment non-numeric value: str"):
        storage.increment("text")
    with pytest.raises(StorageError, match="^Key must be string, got int"):
        storage.get(1)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="^Amount must be int, got float"):
        storage.increment("n", 1.5)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="^TTL cannot be negative, got -1"):
        storage.set("k", 1, ttl=-1)
    with pytest.raises(StorageError, match="finite"):
        storage.set("k", 1, ttl=float("inf"))  # type: ignore[arg-type]
    storage.set("big", 2**63 - 1)
    with pytest.raises(StorageError, match="out of range"):
        storage.increment("big")
    assert storage.get("big") == 2**63 - 1  # nothing lost
    assert storage.get("text") == "abc"


def test_set_if_not_exists_delete_many_clear_and_stats(clock):
    storage = InMemoryStorage(clock=clock)
    assert storage.set_if_not_exists("k", 1, ttl=5)
    assert not storage.set_if_not_exists("k", 2)
    clock.advance(5)
    assert storage.set_if_not_exists("k", 3)
    assert storage.get("k") == 3
    storage.set("a", 1)
    storage.set("b", 2, ttl=1)
    clock.advance(1)
    assert storage.delete_many(["a", "b", "missing", 7]) == 1  # type: ignore[list-item]
    assert storage.delete("k") is True and storage.delete("k") is False
    storage.set("x", 1)
    stats = storage.get_stats()
    assert (stats["total_keys"], stats["active_keys"], stats["evictions"]) == (1, 1, 0)
    assert set(stats) >= {"expired_keys", "memory_usage_estimate", "sets", "gets", "deletes",
                          "cleanups"}  # 1.4.0's keys
    assert stats["deletes"] == 2 and stats["sets"] >= 6 and stats["memory_usage_estimate"] > 0
    assert storage.clear() == 1
    assert storage.get("x") is None


def test_clear_also_resets_the_limiter_state(clock):
    storage = InMemoryStorage(clock=clock)
    core = rt.RateThrottleCore(storage, clock=clock)
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60, block_duration=0))
    assert core.check_rate_limit("a", "api").allowed
    assert not core.check_rate_limit("a", "api").allowed
    storage.clear()
    assert core.check_rate_limit("a", "api").allowed


def test_memory_is_bounded(clock):
    storage = InMemoryStorage(max_keys=32, clock=clock)
    for i in range(5_000):
        storage.set(f"k{i}", i)
    stats = storage.get_stats()
    assert stats["total_keys"] <= 32 and stats["evictions"] >= 5_000 - 32, stats
    with pytest.raises(rt.ConfigurationError, match="max_keys"):
        InMemoryStorage(max_keys=0)


def test_increments_from_8_threads_add_up_exactly():
    storage = InMemoryStorage()

    def work():
        for _ in range(2_000):
            storage.increment("hits")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert storage.get("hits") == 16_000


def test_the_async_memory_storage(clock):
    async def main():
        storage = rt.AsyncInMemoryStorage(clock=clock)
        assert await storage.set("k", [1], ttl=5)
        assert await storage.get("k") == [1]
        assert await storage.increment("n", 3) == 3
        assert not await storage.set_if_not_exists("k", 2)
        assert await storage.delete_many(["k", "n"]) == 2
        assert (await storage.get_stats())["total_keys"] == 0
        assert (await storage.get_info())["type"] == "AsyncInMemoryStorage"
        assert await storage.health_check()

    asyncio.run(main())


# Redis


def test_redis_values_round_trip_as_the_original_encodes_them(redis_url, redis_prefix):
    storage = rt.RedisStorage(redis_url, key_prefix=redis_prefix)
    cases = {"text": "hello", "dict": {"a": [1, 2]}, "int": 42, "float": 1.5, "bool": True,
             "none_in_list": [None], "numeric_text": "123"}
    for key, value in cases.items():
        assert storage.set(key, value, ttl=60) is True
    got = {key: storage.get(key) for key in cases}
    # As the original: JSON round trips, and text that is JSON reads back parsed.
    assert got == {**cases, "numeric_text": 123}
    assert storage.get("missing") is None
    assert storage.increment("int", 8) == 50
    with pytest.raises(StorageError, match="^Cannot increment non-numeric value: str"):
        storage.increment("text")
    assert storage.set_if_not_exists("text", "other") is False
    assert storage.exists("dict") and storage.delete("dict") and not storage.exists("dict")
    assert storage.delete_many(["text", "int", "nope"]) == 2
    with pytest.raises(StorageError, match="^Cannot serialize value"):
        storage.set("bad", object())


def test_redis_ttls_and_scripts(redis_url, redis_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    storage = rt.RedisStorage(redis_url, key_prefix=redis_prefix)
    storage.set("t", "v", ttl=30)
    storage.increment("n", 1, ttl=20)
    assert 29_000 <= client.pttl(f"{redis_prefix}t") <= 30_000
    assert 19_000 <= client.pttl(f"{redis_prefix}n") <= 20_000
    reply = storage.evaluate_lua("return {KEYS[1], ARGV[1]}", ["k"], ["x"])
    assert reply == [f"{redis_prefix}k".encode(), b"x"]
    info = storage.get_redis_info()
    assert info["redis_version"] and isinstance(info["uptime_in_seconds"], int)


def test_clear_prefix_leaves_every_other_key_alone(redis_url, redis_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("foreign:key", "keep me")
    client.set(f"{redis_prefix[:-1]}-other", "not under the prefix either")
    storage = rt.RedisStorage(redis_url, key_prefix=redis_prefix)
    core = rt.RateThrottleCore(storage)
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    core.check_rate_limit("a", "api")
    core.add_to_blacklist("foe")
    storage.set("mine", 1)
    assert storage.clear_prefix() >= 3
    assert client.get("foreign:key") == b"keep me"
    assert client.get(f"{redis_prefix[:-1]}-other") is not None
    assert client.keys(f"{redis_prefix}*") == []
    assert core.check_rate_limit("a", "api").allowed and not core.is_blacklisted("foe")


INCREMENTER = textwrap.dedent(
    """
    import sys, time
    import ratethrottle as rt
    url, prefix, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    storage = rt.RedisStorage(url, key_prefix=prefix)
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(250):
        storage.increment("shared", 2, ttl=60)
    """
)


def test_redis_increments_from_4_processes_add_up_exactly(redis_url, redis_prefix):
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", INCREMENTER, redis_url, redis_prefix, str(start_at)])
        for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert rt.RedisStorage(redis_url, key_prefix=redis_prefix).get("shared") == 2_000


def test_the_async_redis_storage_writes_json(redis_url, redis_prefix):
    import redis

    async def main():
        storage = rt.AsyncRedisStorage(redis_url, key_prefix=redis_prefix)
        assert await storage.set("k", "text")
        assert await storage.get("k") == "text"
        assert client.get(f"{redis_prefix}k") == b'"text"'  # JSON, as the original's async storage
        assert await storage.increment("n", 2) == 2
        assert await storage.evaluate_lua("return 1", [], []) == 1
        assert (await storage.get_stats())["redis_version"]
        assert await storage.clear() >= 2

    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}probe", json.dumps("x"))
    asyncio.run(main())
    assert client.keys(f"{redis_prefix}*") == []


def test_a_sentinel_client_is_followed_through_its_sentinels():
    from redis.sentinel import Sentinel

    from ratethrottle.storage_backend import _sentinel_of_redis_client

    sentinel = Sentinel([("sentinel-a", 26379), ("sentinel-b", 26380)], socket_timeout=0.1)
    client = sentinel.master_for("mymaster")
    assert _sentinel_of_redis_client(client) == {
        "master": "mymaster", "nodes": ["sentinel-a:26379", "sentinel-b:26380"]}
    # Not read as localhost:6379 (what its connection settings would say): the Sentinels.
    storage = rt.RedisStorage(client, fault_policy="fail_open", connection_timeout=0.1)
    address = storage.get_info()["address"]
    assert "sentinel-a:26379" in address and "6379/" not in address, address

"""A user's StorageBackend subclass holds the limiter's state."""

import threading

import pytest

import ratethrottle as rt
from ratethrottle import RateThrottleCore, RateThrottleRule
from ratethrottle.storage_backend import StorageBackend


class DictStorage(StorageBackend):
    """A dict with TTLs on a ManualClock: what a user might write (no locking at all)."""

    def __init__(self, clock=None):
        self.data = {}
        self.clock = clock
        self.calls = {"get": 0, "set": 0, "delete": 0}

    def _now(self):
        return self.clock.time() if self.clock else 0.0

    def get(self, key):
        self.calls["get"] += 1
        value, expiry = self.data.get(key, (None, None))
        if expiry is not None and expiry <= self._now():
            self.data.pop(key, None)
            return None
        return value

    def set(self, key, value, ttl=None):
        self.calls["set"] += 1
        self.data[key] = (value, self._now() + ttl if ttl else None)
        return True

    def delete(self, key):
        self.calls["delete"] += 1
        return self.data.pop(key, None) is not None


@pytest.mark.parametrize("strategy", rt.RateThrottleCore.STRATEGIES)
def test_every_strategy_runs_through_the_backend(strategy, clock):
    storage = DictStorage(clock)
    core = RateThrottleCore(storage=storage, clock=clock)
    core.add_rule(RateThrottleRule(name="api", limit=3, window=60, strategy=strategy,
                                   block_duration=0))
    assert [core.check_rate_limit("a", "api").allowed for _ in range(4)] == [True] * 3 + [False]
    assert storage.calls["get"] >= 4 and storage.calls["set"] >= 3
    assert any(key.startswith("rt:state:") for key in storage.data)
    clock.advance(120)
    assert core.check_rate_limit("a", "api").allowed


def test_blocks_lists_and_metrics_live_in_the_backend(clock):
    storage = DictStorage(clock)
    core = rt.create_limiter(storage)
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60, block_duration=300))
    core.check_rate_limit("a", "api")
    assert not core.check_rate_limit("a", "api").allowed  # the violation starts the block
    blocked = core.check_rate_limit("a", "api")
    assert not blocked.allowed and blocked.blocked and blocked.retry_after in (299, 300)
    assert any(key.startswith("rt:block:") for key in storage.data)
    core.add_to_blacklist("foe")
    core.add_to_whitelist("friend")
    assert core.is_blacklisted("foe") and core.is_whitelisted("friend")
    assert core.check_rate_limit("foe", "api").rule_name == "blacklist"
    assert all(core.check_rate_limit("friend", "api").allowed for _ in range(3))
    assert core.remove_from_blacklist("foe") and not core.is_blacklisted("foe")
    assert core.get_metrics()["total_requests"] >= 5


def test_the_documented_example_works_as_written():
    # user_guide/storage.rst, "Custom Storage Backend": every method a stub.
    class CustomStorage(StorageBackend):
        def get(self, key):
            pass

        def set(self, key, value, ttl=None):
            pass

        def increment(self, key, amount=1, ttl=None):
            pass

        def delete(self, key):
            pass

        def exists(self, key):
            pass

        def clear(self):
            pass

    limiter = RateThrottleCore(storage=CustomStorage())
    limiter.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    # It keeps nothing, so every request looks like a first one: allowed.
    assert all(limiter.check_rate_limit("a", "api").allowed for _ in range(3))


def test_a_backend_that_lacks_a_method_is_named():
    class NoDelete:
        def get(self, key):
            return None

        def set(self, key, value, ttl=None):
            return True

    with pytest.raises(rt.ConfigurationError, match="has no `delete` method"):
        RateThrottleCore(storage=NoDelete())

    class AsyncOne(rt.AsyncStorageBackend):
        async def get(self, key): ...
        async def set(self, key, value, ttl=None): ...
        async def increment(self, key, amount=1, ttl=None): ...
        async def delete(self, key): ...

    with pytest.raises(rt.ConfigurationError, match="coroutine methods"):
        RateThrottleCore(storage=AsyncOne())


def test_a_failing_or_foreign_backend_costs_one_check_and_corrupts_nothing(clock):
    storage = DictStorage(clock)
    core = RateThrottleCore(storage=storage, clock=clock)
    core.add_rule(RateThrottleRule(name="api", limit=2, window=60, block_duration=0))
    assert core.check_rate_limit("a", "api").allowed
    original_get = storage.get

    def broken(key):
        raise RuntimeError("disk on fire")

    storage.get = broken
    failed = core.check_rate_limit("a", "api")
    assert not failed.allowed and failed.rule_name == "storage_error"
    storage.get = original_get
    assert core.check_rate_limit("a", "api").allowed  # the second of 2: the count survived
    assert not core.check_rate_limit("a", "api").allowed
    # Foreign values under its keys count as fresh keys, never a crash.
    for key in list(storage.data):
        if key.startswith("rt:state:"):
            storage.data[key] = ({"tokens": "many"}, None)
    assert core.check_rate_limit("a", "api").allowed


def test_8_threads_through_a_custom_backend_admit_exactly_the_limit():
    storage = DictStorage()
    core = RateThrottleCore(storage=storage)
    core.add_rule(RateThrottleRule(name="api", limit=200, window=3600, block_duration=0))
    admitted = []

    def work():
        admitted.append(sum(core.check_rate_limit("shared", "api").allowed for _ in range(100)))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 200, admitted


def test_the_default_increment_builds_on_get_and_set():
    storage = DictStorage()
    assert storage.increment("n") == 1 and storage.increment("n", 4) == 5
    storage.set("t", "text")
    with pytest.raises(rt.StorageError, match="^Cannot increment non-numeric value: str"):
        storage.increment("t")
    assert storage.exists("n") and not storage.exists("missing")
    assert storage.set_if_not_exists("new", 1) and not storage.set_if_not_exists("new", 2)
    assert storage.delete_many(["n", "new", "missing"]) == 2

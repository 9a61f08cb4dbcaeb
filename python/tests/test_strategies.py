"""`ratethrottle.strategies` and `async_strategies`: the original's classes on the engine."""

import asyncio

import pytest

from ratethrottle import InMemoryStorage, RateThrottleRule
from ratethrottle import async_strategies, strategies

CLASSES = [
    (strategies.TokenBucketStrategy, "tokenbucket"),
    (strategies.LeakyBucketStrategy, "leakybucket"),
    (strategies.FixedWindowStrategy, "fixedwindow"),
    (strategies.SlidingWindowStrategy, "slidingwindow"),
    (strategies.SlidingWindowCounterStrategy, "slidingwindowcounter"),
    (strategies.GcraStrategy, "gcra"),
]


@pytest.mark.parametrize("cls, name", CLASSES)
def test_each_class_admits_its_limit_then_refills(cls, name, clock):
    storage = InMemoryStorage(clock=clock)
    rule = RateThrottleRule(name="api", limit=2, window=60, block_duration=300,
                            strategy="fixed_window")
    strategy = cls()
    answers = [strategy.is_allowed("10.0.0.1", rule, storage) for _ in range(3)]
    assert [allowed for allowed, _ in answers] == [True, True, False]
    status = answers[-1][1]
    assert (status.rule_name, status.strategy, status.limit) == ("api", cls.algorithm, 2)
    assert not status.blocked  # strategies never start a block
    clock.advance(120)
    assert strategy.is_allowed("10.0.0.1", rule, storage)[0]
    assert strategy.get_name() == name


def test_a_custom_storage_holds_the_state_and_foreign_values_are_fresh():
    from ratethrottle.storage_backend import StorageBackend

    class DictStorage(StorageBackend):
        def __init__(self):
            self.data = {}

        def get(self, key):
            return self.data.get(key)

        def set(self, key, value, ttl=None):
            self.data[key] = value
            return True

        def delete(self, key):
            return self.data.pop(key, None) is not None

    storage = DictStorage()
    rule = RateThrottleRule(name="api", limit=1, window=3600)
    strategy = strategies.FixedWindowStrategy()
    assert strategy.is_allowed("a", rule, storage)[0]
    assert not strategy.is_allowed("a", rule, storage)[0]
    for key in storage.data:
        storage.data[key] = "garbage that is not ours"
    assert strategy.is_allowed("a", rule, storage)[0]


def test_the_async_classes(clock):
    storage = InMemoryStorage(clock=clock)
    rule = RateThrottleRule(name="api", limit=1, window=60)

    async def main():
        strategy = async_strategies.AsyncSlidingWindowStrategy()
        first = await strategy.is_allowed("a", rule, storage)
        second = await strategy.is_allowed("a", rule, storage)
        return first[0], second[0], strategy.get_name()

    assert asyncio.run(main()) == (True, False, "slidingwindow")

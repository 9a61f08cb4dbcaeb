"""
The original's strategy classes: `is_allowed(identifier, rule, storage) -> (allowed, status)`,
decided by the engine's strategy code (the same as every limiter's), with the state kept in
`storage` (an engine storage, or a `StorageBackend` subclass of your own).

    >>> from ratethrottle import InMemoryStorage, RateThrottleRule
    >>> from ratethrottle.strategies import TokenBucketStrategy
    >>> storage = InMemoryStorage()
    >>> rule = RateThrottleRule(name="api", limit=2, window=60)
    >>> [TokenBucketStrategy().is_allowed("10.0.0.1", rule, storage)[0] for _ in range(3)]
    [True, True, False]

Each class applies its own algorithm whatever `rule.strategy` says, and, as the original's
classes, never starts a block (`RateThrottleCore` does that). The storage's whitelist and
blacklist still apply.
"""

from __future__ import annotations

import dataclasses
import threading
from abc import ABC
from collections import OrderedDict
from typing import Any, Tuple

from .core import RateThrottleCore, RateThrottleRule, RateThrottleStatus

__all__ = [
    "FixedWindowStrategy",
    "GcraStrategy",
    "LeakyBucketStrategy",
    "RateLimitStrategy",
    "SlidingWindowCounterStrategy",
    "SlidingWindowStrategy",
    "TokenBucketStrategy",
]

#: The most storages a strategy keeps an engine for at once (the least recently used goes).
_ENGINES = 64


class _Engines:
    """One engine per storage, with the rules the strategies asked about."""

    def __init__(self) -> None:
        self._engines: "OrderedDict[int, Tuple[Any, RateThrottleCore]]" = OrderedDict()
        self._lock = threading.Lock()

    def engine(self, storage: Any, rule: RateThrottleRule, algorithm: str) -> Tuple[RateThrottleCore, str]:
        name = f"{rule.name}@{algorithm}"
        with self._lock:
            held = self._engines.get(id(storage))
            if held is None or held[0] is not storage:
                # The storage's test clock, if it has one, is the engine's too.
                clock = getattr(getattr(storage, "_native", None), "clock", None)
                held = (storage, RateThrottleCore(storage=storage, clock=clock))
                self._engines[id(storage)] = held
                while len(self._engines) > _ENGINES:
                    self._engines.popitem(last=False)
            self._engines.move_to_end(id(storage))
        core = held[1]
        wanted = dataclasses.replace(rule, name=name, strategy=algorithm, block_duration=0)
        if core.get_rule(name) != wanted:
            core.add_rule(wanted)
        return core, name


_engines = _Engines()


class RateLimitStrategy(ABC):
    """A rate-limiting algorithm: `is_allowed(identifier, rule, storage)`."""

    #: The engine's name of the algorithm.
    algorithm: str = ""

    def is_allowed(
        self, identifier: str, rule: RateThrottleRule, storage: Any
    ) -> Tuple[bool, RateThrottleStatus]:
        """Counts one request of `identifier` under `rule` (with this class's algorithm);
        `(allowed, status)`. A storage that fails gives `(False, status)` with
        `rule_name="storage_error"`."""
        core, name = _engines.engine(storage, rule, self.algorithm)
        status = core.check_rate_limit(identifier, name)
        if status.rule_name == name:
            status.rule_name = rule.name
        return status.allowed, status

    def get_name(self) -> str:
        """The class name without "Strategy", lower case (as the original)."""
        return type(self).__name__.replace("Strategy", "").lower()


class TokenBucketStrategy(RateLimitStrategy):
    """Token bucket: `burst` tokens, refilled at `limit` per `window`."""

    algorithm = "token_bucket"


class LeakyBucketStrategy(RateLimitStrategy):
    """Leaky bucket: a queue of `burst` draining at `limit` per `window`."""

    algorithm = "leaky_bucket"


class FixedWindowStrategy(RateLimitStrategy):
    """Fixed window: `limit` per window starting at multiples of `window`."""

    algorithm = "fixed_window"


class SlidingWindowStrategy(RateLimitStrategy):
    """Sliding window log: `limit` in any `window`, exactly."""

    algorithm = "sliding_window"


class SlidingWindowCounterStrategy(RateLimitStrategy):
    """Sliding window counter: the previous window's count weighted by its overlap."""

    algorithm = "sliding_counter"


class GcraStrategy(RateLimitStrategy):
    """GCRA: requests spaced by `window / limit`, with `burst` in advance."""

    algorithm = "gcra"

"""
The original's async strategy classes: `await is_allowed(identifier, rule, storage)`, as
`ratethrottle.strategies` (the engine decides; Redis calls never block the event loop).

    >>> import asyncio
    >>> from ratethrottle import InMemoryStorage, RateThrottleRule
    >>> from ratethrottle.async_strategies import AsyncFixedWindowStrategy
    >>> rule = RateThrottleRule(name="api", limit=1, window=60)
    >>> storage = InMemoryStorage()
    >>> async def twice():
    ...     return [(await AsyncFixedWindowStrategy().is_allowed("a", rule, storage))[0] for _ in range(2)]
    >>> asyncio.run(twice())
    [True, False]
"""

from __future__ import annotations

from typing import Any, Tuple

from .core import RateThrottleRule, RateThrottleStatus
from .strategies import _engines

__all__ = [
    "AsyncFixedWindowStrategy",
    "AsyncGcraStrategy",
    "AsyncLeakyBucketStrategy",
    "AsyncRateLimitStrategy",
    "AsyncSlidingWindowCounterStrategy",
    "AsyncSlidingWindowStrategy",
    "AsyncTokenBucketStrategy",
]


class AsyncRateLimitStrategy:
    """A rate-limiting algorithm: `await is_allowed(identifier, rule, storage)`."""

    algorithm: str = ""

    async def is_allowed(
        self, identifier: str, rule: RateThrottleRule, storage: Any
    ) -> Tuple[bool, RateThrottleStatus]:
        """As `RateLimitStrategy.is_allowed`, awaited."""
        core, name = _engines.engine(getattr(storage, "_sync", storage), rule, self.algorithm)
        status = await core.acheck_rate_limit(identifier, name)
        if status.rule_name == name:
            status.rule_name = rule.name
        return status.allowed, status

    def get_name(self) -> str:
        """The class name without "Async" and "Strategy", lower case."""
        return type(self).__name__.replace("Strategy", "").replace("Async", "").lower()


class AsyncTokenBucketStrategy(AsyncRateLimitStrategy):
    """Token bucket."""

    algorithm = "token_bucket"


class AsyncLeakyBucketStrategy(AsyncRateLimitStrategy):
    """Leaky bucket."""

    algorithm = "leaky_bucket"


class AsyncFixedWindowStrategy(AsyncRateLimitStrategy):
    """Fixed window."""

    algorithm = "fixed_window"


class AsyncSlidingWindowStrategy(AsyncRateLimitStrategy):
    """Sliding window log."""

    algorithm = "sliding_window"


class AsyncSlidingWindowCounterStrategy(AsyncRateLimitStrategy):
    """Sliding window counter."""

    algorithm = "sliding_counter"


class AsyncGcraStrategy(AsyncRateLimitStrategy):
    """GCRA."""

    algorithm = "gcra"

"""
`AsyncRateThrottleCore`: the original's async engine. Checks are awaitables that never block
the event loop (Redis checks run on the Rust runtime); list operations on Redis run in a
thread.

    >>> import asyncio
    >>> from ratethrottle import AsyncRateThrottleCore, RateThrottleRule
    >>> async def main():
    ...     limiter = AsyncRateThrottleCore()
    ...     limiter.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    ...     return [(await limiter.check_rate_limit("1.2.3.4", "api")).allowed for _ in range(2)]
    >>> asyncio.run(main())
    [True, False]
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, Optional, TypeVar, Union

from .async_storage import AsyncInMemoryStorage, AsyncStorageBackend
from .core import RateThrottleCore, RateThrottleStatus
from .storage_backend import StorageBackend

__all__ = ["AsyncRateThrottleCore"]

T = TypeVar("T")


class AsyncRateThrottleCore(RateThrottleCore):
    """RateThrottleCore whose checks, list operations and metrics are coroutines, as the
    original's async engine (rules are added and removed synchronously, as there)."""

    def __new__(
        cls,
        storage: Union[StorageBackend, AsyncStorageBackend, None] = None,
        use_distributed_lists: bool = True,
        **kwargs: Any,
    ) -> "AsyncRateThrottleCore":
        return super().__new__(
            cls, storage or AsyncInMemoryStorage(), use_distributed_lists, **kwargs  # type: ignore[arg-type]
        )  # type: ignore[return-value]

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        """Runs `call` here for the memory store (it answers at once), else in a thread."""
        if self._store_kind == "memory":
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def check_rate_limit(  # type: ignore[override]
        self, identifier: str, rule_name: str, metadata: Optional[Dict[str, Any]] = None,
        *, cost: int = 1,
    ) -> RateThrottleStatus:
        """`RateThrottleCore.check_rate_limit`, awaited without blocking the loop."""
        return await self.acheck_rate_limit(identifier, rule_name, metadata, cost=cost)

    async def add_to_whitelist(self, identifier: str, persistent: bool = True) -> None:  # type: ignore[override]
        await self._off_loop(RateThrottleCore.add_to_whitelist, self, identifier, persistent)

    async def remove_from_whitelist(self, identifier: str) -> bool:  # type: ignore[override]
        return await self._off_loop(RateThrottleCore.remove_from_whitelist, self, identifier)

    async def is_whitelisted(self, identifier: str) -> bool:  # type: ignore[override]
        return await self._off_loop(RateThrottleCore.is_whitelisted, self, identifier)

    async def add_to_blacklist(  # type: ignore[override]
        self, identifier: str, duration: Optional[int] = None, persistent: bool = True
    ) -> None:
        await self._off_loop(RateThrottleCore.add_to_blacklist, self, identifier, duration, persistent)

    async def remove_from_blacklist(self, identifier: str) -> bool:  # type: ignore[override]
        return await self._off_loop(RateThrottleCore.remove_from_blacklist, self, identifier)

    async def is_blacklisted(self, identifier: str) -> bool:  # type: ignore[override]
        return await self._off_loop(RateThrottleCore.is_blacklisted, self, identifier)

    async def get_metrics(self) -> Dict[str, Any]:  # type: ignore[override]
        return RateThrottleCore.get_metrics(self)

    async def reset_metrics(self) -> None:  # type: ignore[override]
        RateThrottleCore.reset_metrics(self)

    async def get_status(self) -> Dict[str, Any]:  # type: ignore[override]
        return RateThrottleCore.get_status(self)

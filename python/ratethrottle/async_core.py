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
from typing import Any, Callable, Dict, Optional, TypeVar, Union, cast

from .async_storage import AsyncInMemoryStorage, AsyncStorageBackend
from .failover import FailoverHandler, FailureMode
from .core import RateThrottleCore, RateThrottleStatus
from .storage_backend import StorageBackend

__all__ = ["AsyncRateThrottleCore"]

T = TypeVar("T")


class AsyncRateThrottleCore(RateThrottleCore):
    """RateThrottleCore whose checks, list operations and metrics are coroutines, as the
    original's async engine (rules are added and removed synchronously, as there).

    Args:
        storage: As for RateThrottleCore (default: AsyncInMemoryStorage())
        use_distributed_lists: Kept for compatibility
        failure_mode: A `FailureMode` (or its value, "strict", "open", "bypass"): checks the
            storage cannot decide are counted by a `FailoverHandler`; STRICT denies them once
            5 happened within 60 s, until a check succeeds again; OPEN and BYPASS admit them.
            Left out (unlike the original, whose default is STRICT), the storage's fault
            policy alone answers (`RedisStorage(fault_policy=...)`, fail open by default): a
            Redis outage does not take the site down unless asked to.
        failover_handler: A `FailoverHandler` to use instead (its mode wins)
        clock: A `ManualClock` for tests
    """

    failover_handler: Optional[FailoverHandler]

    def __new__(
        cls,
        storage: Union[StorageBackend, AsyncStorageBackend, None] = None,
        use_distributed_lists: bool = True,
        failure_mode: Union[FailureMode, str, None] = None,
        failover_handler: Optional[FailoverHandler] = None,
        **kwargs: Any,
    ) -> "AsyncRateThrottleCore":
        self = cast(
            "AsyncRateThrottleCore",
            super().__new__(
                cls, storage or AsyncInMemoryStorage(), use_distributed_lists, **kwargs  # type: ignore[arg-type]
            ),
        )
        if failover_handler is None and failure_mode is not None:
            failover_handler = FailoverHandler(FailureMode(failure_mode))
        self.failover_handler = failover_handler
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _failover(self, status: RateThrottleStatus, rule_name: str) -> RateThrottleStatus:
        """The failover handler's say on `status` (when there is a handler)."""
        handler = self.failover_handler
        if handler is None:
            return status
        if not status.degraded:
            handler.record_success()
            return status
        handler.record_failure()
        now = int(self._now())
        if not handler.should_allow():
            return RateThrottleStatus(False, 0, 0, now, rule_name="storage_error", blocked=True,
                                      degraded=True)
        if status.allowed:
            return status
        rule = self.get_rule(rule_name)
        limit = rule.limit if rule is not None else 0
        return RateThrottleStatus(True, limit, limit, now, rule_name=rule_name, degraded=True)

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
        status = await self.acheck_rate_limit(identifier, rule_name, metadata, cost=cost)
        return self._failover(status, rule_name)

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

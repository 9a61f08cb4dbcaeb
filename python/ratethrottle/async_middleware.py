"""
The original's async FastAPI and Starlette integrations, on `AsyncRateThrottleCore`: rules are
named, checks are awaited without blocking the loop, and refusals and headers are those of
the other adapters (and of the Rust middleware).

    limiter = AsyncFastAPIRateLimiter()
    limiter.add_rule(RateThrottleRule(name="api", limit=100, window=60))

    @app.get("/data", dependencies=[Depends(limiter.limit("api"))])
    async def data(): ...
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from .async_core import AsyncRateThrottleCore
from .async_storage import AsyncStorageBackend
from .core import RateThrottleRule
from .middleware import FastAPIRateLimiter, StarletteRateLimitMiddleware
from .storage_backend import StorageBackend

__all__ = ["AsyncFastAPIRateLimiter", "AsyncStarletteRateLimitMiddleware"]

Storage = Union[StorageBackend, AsyncStorageBackend, None]


class _RuleAdmin:
    """The original async adapters' rule, list and metrics methods, over `self.limiter`."""

    limiter: AsyncRateThrottleCore

    def add_rule(self, rule: RateThrottleRule) -> None:
        self.limiter.add_rule(rule)

    def get_rule(self, rule_name: str) -> Optional[RateThrottleRule]:
        return self.limiter.get_rule(rule_name)

    def remove_rule(self, rule_name: str) -> bool:
        return self.limiter.remove_rule(rule_name)

    def list_rules(self) -> List[str]:
        return self.limiter.list_rules()

    async def add_to_whitelist(self, identifier: str, persistent: bool = True) -> None:
        await self.limiter.add_to_whitelist(identifier, persistent=persistent)

    async def remove_from_whitelist(self, identifier: str) -> bool:
        return await self.limiter.remove_from_whitelist(identifier)

    async def add_to_blacklist(
        self, identifier: str, duration: Optional[int] = None, persistent: bool = True
    ) -> None:
        await self.limiter.add_to_blacklist(identifier, duration=duration, persistent=persistent)

    async def remove_from_blacklist(self, identifier: str) -> bool:
        return await self.limiter.remove_from_blacklist(identifier)

    async def get_metrics(self) -> Dict[str, Any]:
        return await self.limiter.get_metrics()

    async def get_status(self) -> Dict[str, Any]:
        return await self.limiter.get_status()

    async def shutdown(self) -> None:
        shutdown = getattr(self.limiter.storage, "shutdown", None)
        if shutdown is not None:
            result = shutdown()
            if hasattr(result, "__await__"):
                await result


class AsyncFastAPIRateLimiter(_RuleAdmin, FastAPIRateLimiter):
    """
    FastAPI dependencies checking named rules: `limit("api")` for a rule added with
    `add_rule`. `limit(100, 60)` and `limit("100/minute")` make a rule, as
    `FastAPIRateLimiter.limit` does.

    Args:
        storage: AsyncInMemoryStorage (default), AsyncRedisStorage, or a sync storage
        **options: As for FastAPIRateLimiter (`key_func`, `trusted_proxies`, ...)
    """

    limiter: AsyncRateThrottleCore

    def __init__(self, storage: Storage = None, **options: Any) -> None:
        super().__init__(limiter=AsyncRateThrottleCore(storage=storage), **options)

    def limit(self, rule_name: Union[str, int], *args: Any, **kwargs: Any) -> Callable[..., Any]:  # type: ignore[override]
        """A dependency (or endpoint decorator) checking the rule `rule_name`, as the
        original's `limit(rule_name, key_func=None)`; for a number or a rate string, a rule
        made from it, as `FastAPIRateLimiter.limit`. The status is in
        `request.state.ratelimit_status`."""
        if isinstance(rule_name, str) and self.limiter.get_rule(rule_name) is not None:
            key_func = args[0] if args else kwargs.get("key_func")
            return self._dependency([self.guard.add_rule(rule_name)], key_func or self.key_func)
        return super().limit(rule_name, *args, **kwargs)


class AsyncStarletteRateLimitMiddleware(_RuleAdmin, StarletteRateLimitMiddleware):
    """
    ASGI middleware checking every HTTP request against `rules` in order (see
    StarletteRateLimitMiddleware), on an AsyncRateThrottleCore.

    The original applied a rule only to paths containing the rule's name; here every rule
    applies to every request, as in the sync middleware and the Rust one (limit a part of an
    app by mounting the middleware on it).
    """

    limiter: AsyncRateThrottleCore

    def __init__(
        self,
        app: Any,
        storage: Storage = None,
        rules: Optional[Sequence[Union[RateThrottleRule, str]]] = None,
        key_func: Optional[Callable[[Any], str]] = None,
        *,
        trusted_proxies: Optional[Iterable[str]] = None,
        **options: Any,
    ) -> None:
        super().__init__(app, rules=rules, key_func=key_func,
                         limiter=AsyncRateThrottleCore(storage=storage),
                         trusted_proxies=trusted_proxies, **options)

    def add_rule(self, rule: RateThrottleRule) -> None:
        """Adds `rule`; it applies to every request from now on."""
        self.guard.add_rule(rule)

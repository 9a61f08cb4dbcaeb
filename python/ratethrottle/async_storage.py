"""
The original's async storage names. The engine's stores serve sync and async code alike
(Redis calls run on the Rust runtime), so these are the same stores under their async names.
"""

from __future__ import annotations

from typing import Any

from .storage_backend import InMemoryStorage, RedisStorage, StorageBackend

__all__ = ["AsyncInMemoryStorage", "AsyncRedisStorage", "AsyncStorageBackend"]


class AsyncStorageBackend(StorageBackend):
    """A store for `AsyncRateThrottleCore` (any engine store is one)."""

    async def health_check(self) -> bool:  # type: ignore[override]
        """Whether the store answers (a round trip for Redis, off the event loop)."""
        import asyncio

        return await asyncio.to_thread(self._native.health_check)


class AsyncInMemoryStorage(AsyncStorageBackend, InMemoryStorage):
    """State in this process's memory."""


class AsyncRedisStorage(AsyncStorageBackend, RedisStorage):
    """
    State in Redis, shared by every process using the same server and prefix.

    Args:
        redis_url: `redis://[user:pass@]host:6379/0` (`rediss://` for TLS)
        key_prefix: Prefix of every key (the original's async default, "rt:")
        **kwargs: As for RedisStorage (`connection_timeout`, `fault_policy`, ...)
    """

    def __init__(self, redis_url: str = "redis://localhost:6379/0", key_prefix: str = "rt:",
                 **kwargs: Any) -> None:
        kwargs.pop("decode_responses", None)  # a redis-py option with no meaning here
        RedisStorage.__init__(self, redis_url, key_prefix, **kwargs)

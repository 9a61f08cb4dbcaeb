"""
The original's async storage: the same engine stores as `storage_backend`, with coroutine
methods. In memory they answer at once, with no trip through a thread; Redis calls run on a
worker thread, so the event loop never waits on the network.

    >>> import asyncio
    >>> from ratethrottle import AsyncInMemoryStorage
    >>> storage = AsyncInMemoryStorage()
    >>> asyncio.run(storage.increment("hits", 2))
    2
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ._native import ManualClock, NativeStore
from .exceptions import StorageError
from .storage_backend import InMemoryStorage, RedisStorage, _EngineStorage

__all__ = ["AsyncInMemoryStorage", "AsyncRedisStorage", "AsyncStorageBackend"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class AsyncStorageBackend(ABC):
    """
    Where values live, for async code. A subclass implements `get`, `set`, `increment` and
    `delete`; the other methods have working defaults built on those (only as atomic as they
    are). `clear` and `get_stats` are a subclass's own to offer, as on the sync
    `StorageBackend`. (A subclass cannot hold a limiter's state yet: give the async core an
    engine storage.)
    """

    @abstractmethod
    async def get(self, key: str) -> Optional[Any]:
        """The value of `key`, or None when it is missing or expired."""

    @abstractmethod
    async def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores `value` under `key`, for `ttl` seconds (None or 0: no expiry)."""

    @abstractmethod
    async def increment(self, key: str, amount: int = 1, ttl: Optional[int] = None) -> int:
        """Adds `amount` to the number under `key` (0 when missing); the new value."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Removes `key`; whether it existed."""

    async def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return await self.get(key) is not None

    async def check_and_delete_if_expired(self, key: str) -> Tuple[bool, Optional[Any]]:
        """`(True, value)` for a live key, `(False, None)` for a missing or expired one."""
        value = await self.get(key)
        return (value is not None, value)

    async def set_if_not_exists(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores `value` only if `key` holds none; whether it did."""
        if await self.exists(key):
            return False
        return bool(await self.set(key, value, ttl))

    async def delete_many(self, keys: List[str]) -> int:
        """Removes `keys`; how many existed."""
        return sum([1 for key in keys if isinstance(key, str) and await self.delete(key)])

    async def evaluate_lua(self, script: str, keys: List[str], args: List[Any]) -> Any:
        """Runs a Lua script (Redis only)."""
        raise NotImplementedError("evaluate_lua is only supported in AsyncRedisStorage")

    async def health_check(self) -> bool:
        """Whether the storage answers: a value written, read back and removed."""
        try:
            test_key = "__health_check_async__"
            await self.set(test_key, True, ttl=1)
            result = await self.get(test_key)
            await self.delete(test_key)
            return result is not None
        except Exception as e:
            logger.error(f"Async health check failed: {e}")
            return False

    async def get_info(self) -> Dict[str, Any]:
        """What the storage is, and whether it answers."""
        return {"type": type(self).__name__, "healthy": await self.health_check()}


class _AsyncEngineStorage(AsyncStorageBackend):
    """Coroutines over a sync engine storage (`self._sync`)."""

    _sync: _EngineStorage

    @property
    def _native(self) -> NativeStore:
        return self._sync._native

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return method(*args)

    async def get(self, key: str) -> Optional[Any]:
        return await self._call(self._sync.get, key)

    async def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        return await self._call(self._sync.set, key, value, ttl)

    async def increment(self, key: str, amount: int = 1, ttl: Optional[int] = None) -> int:
        return await self._call(self._sync.increment, key, amount, ttl)

    async def delete(self, key: str) -> bool:
        return await self._call(self._sync.delete, key)

    async def delete_many(self, keys: List[str]) -> int:
        return await self._call(self._sync.delete_many, keys)

    async def exists(self, key: str) -> bool:
        return await self._call(self._sync.exists, key)

    async def set_if_not_exists(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        return await self._call(self._sync.set_if_not_exists, key, value, ttl)

    async def clear(self) -> int:
        """Removes everything this storage holds (on Redis, every key under the prefix)."""
        return await self._call(self._sync.clear)

    async def health_check(self) -> bool:
        return await self._call(self._sync.health_check)

    async def get_info(self) -> Dict[str, Any]:
        info = await self._call(self._sync.get_info)
        info["type"] = type(self).__name__
        return info

    async def shutdown(self) -> None:
        """Nothing runs in the background; kept for compatibility."""


class AsyncInMemoryStorage(_AsyncEngineStorage):
    """
    State in this process's memory (see `InMemoryStorage`).

    Args:
        cleanup_interval: Kept for compatibility
        max_keys: The most keys kept
        clock: A `ManualClock` TTLs expire by
    """

    _sync: InMemoryStorage

    def __init__(
        self,
        cleanup_interval: int = 300,
        max_keys: int = 1000000,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        self._sync = InMemoryStorage(cleanup_interval, max_keys, clock=clock)
        self.max_keys = max_keys

    async def get_stats(self) -> Dict[str, Any]:
        return self._sync.get_stats()

    async def shutdown(self) -> None:
        """Drops everything held."""
        self._sync.shutdown()


class _JsonRedisStorage(RedisStorage):
    """The async original's encoding: every value as JSON (text too)."""

    def _serialize(self, value: Any) -> Any:
        if type(value) is int and -(2**63) <= value < 2**63:
            return value
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as e:
            raise StorageError(f"Cannot serialize value: {e}") from e


class AsyncRedisStorage(_AsyncEngineStorage):
    """
    State in Redis, shared by every process using the same server and prefix. Values are
    JSON, as the original's async storage writes them.

    Args:
        redis_url: `redis://[user:pass@]host:6379/0` (`rediss://` for TLS)
        key_prefix: Prefix of every key (the original's async default, "rt:")
        **kwargs: As for RedisStorage (`connection_timeout`, `fault_policy`, ...)
    """

    _sync: _JsonRedisStorage

    def __init__(
        self, redis_url: str = "redis://localhost:6379/0", key_prefix: str = "rt:", **kwargs: Any
    ) -> None:
        kwargs.pop("decode_responses", None)  # a redis-py option with no meaning here
        self._sync = _JsonRedisStorage(redis_url, key_prefix, **kwargs)
        self.key_prefix = key_prefix

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(method, *args)

    async def evaluate_lua(self, script: str, keys: List[str], args: List[Any]) -> Any:
        return await self._call(self._sync.evaluate_lua, script, keys, args)

    async def get_stats(self) -> Dict[str, Any]:
        """The server's figures (see `RedisStorage.get_redis_info`)."""
        return await self._call(self._sync.get_redis_info)

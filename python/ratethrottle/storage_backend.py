"""
Where the engine keeps its state: `InMemoryStorage` (one process) or `RedisStorage` (shared by
every process and server using the same Redis: standalone, TLS, Sentinel or Cluster).

The state itself lives in Rust (the `NativeStore` each backend wraps); these classes choose
and describe it.

    >>> from ratethrottle import RateThrottleCore, RedisStorage
    >>> limiter = RateThrottleCore(RedisStorage("redis://localhost:6379/0"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from ._native import ManualClock, NativeStore
from .exceptions import ConfigurationError, StorageError

__all__ = ["InMemoryStorage", "RedisStorage", "StorageBackend"]

logger = logging.getLogger(__name__)


class StorageBackend(ABC):
    """
    Where values live: the original library's storage interface.

    A subclass implements `get`, `set` and `delete`; the other methods have working defaults
    built on those three. `InMemoryStorage` and `RedisStorage` implement every method on the
    engine's own stores (atomically, as documented per method).

    A subclass given to `RateThrottleCore(storage=...)` holds the limiter's state: each check
    reads its key with `get` and writes it with `set` (with a TTL in whole seconds), under a
    lock of this process, so limits are exact within one process; across processes the
    backend is only as atomic as its own `get` and `set`. A value the engine cannot read under
    one of its keys (`rt:...`) counts as a fresh key, and a `get` or `set` that raises makes
    that check answer `rule_name="storage_error"` without changing anything.

    The defaults are only as atomic as the subclass's methods: `increment` and
    `set_if_not_exists` read then write, and `delete_many` deletes one key at a time.
    """

    @abstractmethod
    def get(self, key: str) -> Optional[Any]:
        """The value of `key`, or None when it is missing or expired."""

    @abstractmethod
    def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores `value` under `key`, for `ttl` seconds (None or 0: no expiry)."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Removes `key`; whether it existed."""

    def increment(self, key: str, amount: int = 1, ttl: Optional[int] = None) -> int:
        """Adds `amount` to the number under `key` (0 when missing); the new value. This
        default reads then writes (not atomic; override it with the backend's own)."""
        value = self.get(key)
        if value is None:
            value = 0
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StorageError(f"Cannot increment non-numeric value: {type(value).__name__}")
        new_value = int(value) + amount
        self.set(key, new_value, ttl)
        return new_value

    def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return self.get(key) is not None

    def check_and_delete_if_expired(self, key: str) -> Tuple[bool, Optional[Any]]:
        """`(True, value)` for a live key, `(False, None)` for a missing or expired one."""
        value = self.get(key)
        return (value is not None, value)

    def set_if_not_exists(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores `value` only if `key` holds none; whether it did."""
        if self.exists(key):
            return False
        return bool(self.set(key, value, ttl))

    def delete_many(self, keys: List[str]) -> int:
        """Removes `keys`; how many existed."""
        return sum(1 for key in keys if isinstance(key, str) and self.delete(key))

    def evaluate_lua(self, script: str, keys: List[str], args: List[Any]) -> Any:
        """Runs a Lua script (Redis only)."""
        raise NotImplementedError("evaluate_lua is only supported in RedisStorage")

    def health_check(self) -> bool:
        """Whether the storage answers: a value written, read back and removed."""
        try:
            test_key = "__health_check__"
            self.set(test_key, True, ttl=1)
            result = self.get(test_key)
            self.delete(test_key)
            return result is not None
        except Exception as e:
            logger.error(f"Health check failed: {e}")
            return False

    def get_info(self) -> Dict[str, Any]:
        """What the storage is, and whether it answers."""
        return {"type": type(self).__name__, "healthy": self.health_check()}


class _EngineStorage(StorageBackend):
    """A storage on one of the engine's stores (`self._native`)."""

    _native: NativeStore

    def get(self, key: str) -> Optional[Any]:
        return self._native.get(key)

    def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        return self._native.set(key, value, ttl)

    def increment(self, key: str, amount: int = 1, ttl: Optional[int] = None) -> int:
        """Adds `amount` atomically (across processes on Redis). With `ttl` the key expires
        `ttl` seconds after this increment; without, it keeps the expiry it had."""
        return self._native.increment(key, amount, ttl)

    def delete(self, key: str) -> bool:
        return self._native.delete_many([key]) > 0

    def delete_many(self, keys: List[str]) -> int:
        return self._native.delete_many(list(keys))

    def exists(self, key: str) -> bool:
        return self._native.exists(key)

    def set_if_not_exists(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores `value` only if `key` holds no live value, atomically (`SET NX` on Redis)."""
        return self._native.set(key, value, ttl, nx=True)

    def check_and_delete_if_expired(self, key: str) -> Tuple[bool, Optional[Any]]:
        value = self.get(key)
        return (value is not None, value)

    def clear(self) -> int:
        """Removes everything this storage holds: values, rate-limit state and lists (on Redis,
        every key under the prefix, and no other key). How many keys it removed."""
        return self._native.clear()

    def health_check(self) -> bool:
        """Whether the store answers (a round trip for Redis)."""
        return self._native.health_check()

    def get_info(self) -> Dict[str, Any]:
        """What the store is and where, and whether it answers."""
        info = self._native.get_info()
        info["kind"] = info.pop("type")
        return {"type": type(self).__name__, "healthy": self.health_check(), **info}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._native.get_info()})"


class InMemoryStorage(_EngineStorage):
    """
    State in this process's memory: sharded, bounded, expired keys swept as they age.
    Values are kept by reference (any Python object).

    Args:
        cleanup_interval: Kept for compatibility (expired keys are swept as keys are written)
        max_keys: The most keys kept (rate-limit keys, and as many plain values); when full,
            of a few sampled values the one expiring soonest is dropped
        clock: A `ManualClock` TTLs expire by (default: the clock of the first
            `RateThrottleCore(clock=...)` this storage serves, else the system's)

        >>> storage = InMemoryStorage()
        >>> storage.set('key', 'value', ttl=60)
        True
        >>> storage.get('key')
        'value'
    """

    def __init__(
        self,
        cleanup_interval: int = 300,
        max_keys: int = 1000000,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigurationError(f"max_keys must be a whole number above 0, got {max_keys!r}")
        self.cleanup_interval = cleanup_interval
        self.max_keys = max_keys
        self._native = NativeStore.memory(max_keys, clock)
        self._call_engine_directly()

    def _call_engine_directly(self) -> None:
        """Binds the engine's own `get`, `set`, `increment` and `exists` to this instance, so
        a call costs no Python frame (they take the same arguments); a subclass that overrides
        one keeps its own."""
        for name in ("get", "set", "increment", "exists"):
            if getattr(type(self), name) is getattr(_EngineStorage, name):
                setattr(self, name, getattr(self._native, name))

    @classmethod
    def _of_native(cls, native: NativeStore) -> "InMemoryStorage":
        """The storage over an engine store built elsewhere (a configuration's)."""
        storage = cls.__new__(cls)
        storage.cleanup_interval = 300
        storage.max_keys = 1000000
        storage._native = native
        storage._call_engine_directly()
        return storage

    def get_stats(self) -> Dict[str, Any]:
        """The original's keys: `total_keys`, `expired_keys` (not yet swept), `active_keys`,
        `memory_usage_estimate` (bytes, approximate: objects count 64), `sets`, `gets`,
        `deletes`, `cleanups` (sweeps that dropped expired keys) and `evictions`."""
        return self._native.value_stats()

    def shutdown(self) -> None:
        """Drops everything held (nothing runs in the background to stop)."""
        self._native.clear()

    def get_info(self) -> Dict[str, Any]:
        info = super().get_info()
        info["stats"] = self.get_stats()
        info["cleanup_interval"] = self.cleanup_interval
        return info


def _sentinel_of_redis_client(client: Any) -> Optional[Dict[str, Any]]:
    """The Sentinel setup of a redis-py client from `Sentinel.master_for(...)`: the master's
    name and the Sentinel nodes (the store then follows failovers as that client does);
    `None` for any other client."""
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    service = getattr(pool, "service_name", None)
    if manager is None or not service:
        return None
    nodes = []
    for sentinel in getattr(manager, "sentinels", []):
        kwargs = sentinel.connection_pool.connection_kwargs
        nodes.append(f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 26379)}")
    return {"master": service, "nodes": nodes}


def _url_of_redis_client(client: Any) -> str:
    """The URL a redis-py client connects to (host, port, db, credentials, TLS)."""
    kwargs = dict(client.connection_pool.connection_kwargs)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    connection_class = getattr(client.connection_pool, "connection_class", type(None))
    scheme = "rediss" if "ssl" in connection_class.__name__.lower() else "redis"
    auth = ""
    if kwargs.get("password"):
        user = quote(str(kwargs.get("username") or ""), safe="")
        auth = f"{user}:{quote(str(kwargs['password']), safe='')}@"
    host = kwargs.get("host", "localhost")
    return f"{scheme}://{auth}{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class RedisStorage(_EngineStorage):
    """
    State in Redis, shared by every process that uses the same server and prefix. Each check
    is one atomic script call: a limit of N admits at most N across all of them.

    Args:
        redis_client: A Redis URL (`redis://[user:pass@]host:6379/0`, `rediss://` for TLS) or a
            redis-py client (its host, port, db and credentials are used)
        key_prefix: Prefix of every key
        serialize_json: Kept for compatibility
        connection_timeout: The longest one attempt to connect may take, in seconds (TCP, TLS
            handshake, authentication). Unlike the original (where it also bounds every
            call, default 5), each call is bounded by the `timeout` option (default 0.05 s):
            a slow Redis costs a check at most that before the fault policy answers.
        retry_on_timeout: Kept for compatibility
        fault_policy: What checks answer while Redis fails: 'fail_open' (the default: allow),
            'fail_closed' (deny) or 'fallback_memory' (limit per process). Left out, Redis
            must answer now (StorageError otherwise), as in the original; given, the store
            also starts while Redis is down and connects as soon as it answers.
        sentinel: {'master': name, 'nodes': ['host:26379', ...]} to find the master through
            Redis Sentinel
        cluster: {'nodes': ['host:7000', ...]} for Redis Cluster
        **options: Other keys of the configuration's `storage` section (`ssl_ca_certs`,
            `time_source`, `list_cache_ttl`, ...)

    Raises:
        StorageError: If Redis does not answer (and no fault_policy was given)
        ConfigurationError: If a setting is invalid, or Redis refuses the credentials or the
            database
    """

    def __init__(
        self,
        redis_client: Any = "redis://localhost:6379/0",
        key_prefix: str = "ratethrottle:",
        serialize_json: bool = True,
        connection_timeout: float = 1.0,
        retry_on_timeout: bool = True,
        *,
        fault_policy: Optional[str] = None,
        sentinel: Optional[Dict[str, Any]] = None,
        cluster: Optional[Dict[str, Any]] = None,
        **options: Any,
    ) -> None:
        if (
            isinstance(connection_timeout, bool)
            or not isinstance(connection_timeout, (int, float))
            or not math.isfinite(connection_timeout)
            or connection_timeout <= 0
        ):
            raise ConfigurationError(
                f"connection_timeout must be a finite number of seconds above 0, got {connection_timeout!r}"
            )
        if sentinel is None and not isinstance(redis_client, str):
            sentinel = _sentinel_of_redis_client(redis_client)
        url = redis_client if isinstance(redis_client, str) else _url_of_redis_client(redis_client)
        section: Dict[str, Any] = {
            "type": "redis",
            "url": url,
            "key_prefix": key_prefix,
            "connect_timeout": connection_timeout,
            "fault_policy": fault_policy or "fail_open",
            "require_connection": fault_policy is None,
            **options,
        }
        if sentinel is not None:
            section["sentinel"] = sentinel
        if cluster is not None:
            section["cluster"] = cluster
        self.key_prefix = key_prefix
        self.serialize_json = serialize_json
        try:
            section_json = json.dumps(section, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"storage options must be strings, finite numbers, lists or dicts: {error}"
            ) from None
        self._native = NativeStore.connect(section_json)

    @classmethod
    def _of_native(cls, native: NativeStore, key_prefix: str) -> "RedisStorage":
        """The storage over an engine store built elsewhere (a configuration's)."""
        storage = cls.__new__(cls)
        storage.key_prefix = key_prefix
        storage.serialize_json = True
        storage._native = native
        return storage

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "RedisStorage":
        """A store on the Redis at `url`."""
        return cls(url, **kwargs)

    def _serialize(self, value: Any) -> Any:
        """`value` as Redis keeps it: text and bytes as they are, whole numbers as numbers
        (so they can be incremented), anything else as JSON (or `str` without
        `serialize_json`)."""
        if isinstance(value, (str, bytes)) or (type(value) is int and -(2**63) <= value < 2**63):
            return value
        if not self.serialize_json:
            return str(value)
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as e:
            raise StorageError(f"Cannot serialize value: {e}") from e

    def _deserialize(self, value: Optional[bytes]) -> Any:
        """A value read back: text, parsed as JSON when it is JSON (as the original does)."""
        if value is None:
            return None
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return value
        if self.serialize_json:
            try:
                return json.loads(text)
            except ValueError:
                pass
        return text

    def get(self, key: str) -> Optional[Any]:
        return self._deserialize(self._native.get(key))

    def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        return self._native.set(key, self._serialize(value), ttl)

    def set_if_not_exists(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        return self._native.set(key, self._serialize(value), ttl, nx=True)

    def evaluate_lua(self, script: str, keys: List[str], args: List[Any]) -> Any:
        """Runs `script` atomically on `keys` (prefixed) and `args`."""
        return self._native.evaluate_lua(script, list(keys), list(args))

    def clear_prefix(self) -> int:
        """Removes every key under the prefix (values, rate-limit state, lists) and no other
        key of the server; how many. On Redis Cluster it raises StorageError."""
        return self._native.clear()

    def get_redis_info(self) -> Dict[str, Any]:
        """The server's version, clients, memory, uptime and commands processed; `{"error":
        message}` when Redis does not answer (as the original)."""
        try:
            info = self._native.server_info()
        except StorageError as e:
            logger.error(f"Failed to get Redis info: {e}")
            return {"error": str(e)}

        def number(field: str) -> Any:
            value = info.get(field)
            return int(value) if value is not None and value.isdigit() else value

        return {
            "redis_version": info.get("redis_version"),
            "connected_clients": number("connected_clients"),
            "used_memory_human": info.get("used_memory_human"),
            "uptime_in_seconds": number("uptime_in_seconds"),
            "total_commands_processed": number("total_commands_processed"),
        }

    def get_info(self) -> Dict[str, Any]:
        info = super().get_info()
        info["redis_info"] = self.get_redis_info()
        return info

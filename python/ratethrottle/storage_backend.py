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
import math
from abc import ABC
from typing import Any, Dict, Optional
from urllib.parse import quote

from ._native import NativeStore
from .exceptions import ConfigurationError

__all__ = ["InMemoryStorage", "RedisStorage", "StorageBackend"]


class StorageBackend(ABC):
    """A store the engine can keep its state in (only the two classes below can)."""

    _native: NativeStore

    def health_check(self) -> bool:
        """Whether the store answers (a round trip for Redis)."""
        return self._native.health_check()

    def get_info(self) -> Dict[str, Any]:
        """What the store is and where."""
        return self._native.get_info()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._native.get_info()})"


class InMemoryStorage(StorageBackend):
    """
    State in this process's memory: sharded, lock-free reads, idle keys swept.

    Args:
        cleanup_interval: Kept for compatibility (idle keys are swept as they age)
        max_keys: Kept for compatibility
    """

    def __init__(self, cleanup_interval: int = 300, max_keys: int = 1000000) -> None:
        self.cleanup_interval = cleanup_interval
        self.max_keys = max_keys
        self._native = NativeStore.memory()


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


class RedisStorage(StorageBackend):
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
        try:
            section_json = json.dumps(section, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"storage options must be strings, finite numbers, lists or dicts: {error}"
            ) from None
        self._native = NativeStore.connect(section_json)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "RedisStorage":
        """A store on the Redis at `url`."""
        return cls(url, **kwargs)

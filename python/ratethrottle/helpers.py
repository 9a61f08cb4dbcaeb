"""
Helpers: `create_limiter`, `parse_rate_limit` / `parse_rate` and `get_client_ip`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Optional, Tuple, Union

from . import _native
from ._http import environ_header_getter, header_getter, proxy_list
from .core import RateThrottleCore, _shown
from .exceptions import ConfigurationError, StorageError
from .storage_backend import InMemoryStorage, RedisStorage, StorageBackend

if TYPE_CHECKING:
    from .async_core import AsyncRateThrottleCore

logger = logging.getLogger(__name__)

__all__ = ["create_async_limiter", "create_limiter", "get_client_ip", "parse_rate", "parse_rate_limit"]


def create_limiter(
    storage: Union[str, StorageBackend] = "memory", redis_url: Optional[str] = None, **storage_kwargs: Any
) -> RateThrottleCore:
    """
    A limiter over in-memory storage, or over Redis at `redis_url`, or over `storage` itself
    when it is a StorageBackend instance (a custom backend).

        >>> limiter = create_limiter()
        >>> limiter = create_limiter("redis", "redis://localhost:6379/0")  # doctest: +SKIP

    `storage_kwargs` go to `RedisStorage` (`key_prefix`, `fault_policy`, ...). As in the
    original, Redis must answer now, unless a `fault_policy` is given: then the limiter also
    starts while Redis is down, answers by that policy and connects as soon as Redis answers.

    Raises:
        ConfigurationError: For an unknown storage type, a missing URL, a Redis that does
            not answer (without a fault_policy) or that refuses the credentials or database
    """
    return RateThrottleCore(storage=_storage(storage, redis_url, storage_kwargs))


def _storage(storage: Any, redis_url: Optional[str], storage_kwargs: dict) -> StorageBackend:
    """The backend `create_limiter` names (or is given: a StorageBackend instance);
    ConfigurationError for a bad choice."""
    backend: StorageBackend
    if isinstance(storage, StorageBackend):
        backend = storage
    elif storage == "memory":
        backend = InMemoryStorage()
    elif storage == "redis":
        if not redis_url:
            raise ConfigurationError(
                "redis_url is required when using Redis storage. "
                "Example: create_limiter('redis', 'redis://localhost:6379/0')"
            )
        for option in ("decode_responses", "retry_on_timeout", "health_check_interval",
                       "max_connections"):
            storage_kwargs.pop(option, None)  # redis-py options with no meaning here
        if "socket_connect_timeout" in storage_kwargs:
            storage_kwargs["connection_timeout"] = storage_kwargs.pop("socket_connect_timeout")
        if "socket_timeout" in storage_kwargs:
            storage_kwargs["timeout"] = storage_kwargs.pop("socket_timeout")
        try:
            backend = RedisStorage(redis_url, **storage_kwargs)
        except StorageError as error:
            raise ConfigurationError(
                f"Failed to connect to Redis at {redact_url(redis_url)}: {error}"
            ) from error
    else:
        raise ConfigurationError(
            f"Unknown storage type: {storage}. Valid options are: 'memory', 'redis'"
        )
    return backend


async def create_async_limiter(
    storage: str = "memory", redis_url: Optional[str] = None, **storage_kwargs: Any
) -> "AsyncRateThrottleCore":
    """`create_limiter` for async code: an AsyncRateThrottleCore (connecting off the loop)."""
    import asyncio

    from .async_core import AsyncRateThrottleCore

    backend = await asyncio.to_thread(_storage, storage, redis_url, storage_kwargs)
    return AsyncRateThrottleCore(backend)


def redact_url(url: Any) -> str:
    """`url` with its password (if any) replaced by `***`, for messages and logs."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://***@{host}"


def parse_rate(rate: str) -> Tuple[int, float]:
    """
    `(limit, window_seconds)` of a rate: `"100/minute"`, `"5/second"`, `"1000/hour"`,
    `"10 per 30s"`, `"50/2m"`.

        >>> parse_rate("100/minute")
        (100, 60.0)

    Raises:
        ValueError: For anything else, naming what is accepted (`"100/fortnight"`)
    """
    return _native.parse_rate(rate)


def parse_rate_limit(rate_string: str) -> Tuple[int, int]:
    """
    The original's `parse_rate_limit`: `(limit, window_seconds)` with whole seconds.

        >>> parse_rate_limit("100/minute")
        (100, 60)

    Raises:
        ValueError: If the format is invalid; the message starts with the original's
            sentence ("Rate string must contain '/' separator", "Unknown time period:
            fortnight", "Limit must be positive, got 0", ...), then says what is accepted
    """
    if not isinstance(rate_string, str):
        raise ValueError("Rate string must be a string")
    try:
        limit, window = parse_rate(rate_string)
    except ValueError as error:
        raise ValueError(f"{_original_rate_error(rate_string)} ({error})") from None
    if window < 1 or window != int(window):
        raise ValueError(f"Window of {rate_string!r} is not a whole number of seconds")
    return limit, int(window)


def _original_rate_error(rate_string: str) -> str:
    """The sentence 1.4.0's `parse_rate_limit` raises for `rate_string`, which code written
    for it may match on."""
    if "/" not in rate_string:
        return "Rate string must contain '/' separator"
    parts = rate_string.strip().split("/")
    if len(parts) != 2:
        return f"Invalid rate limit format: '{_shown(rate_string)}'"
    try:
        limit = int(parts[0].strip())
    except ValueError:
        return f"Invalid rate limit format: '{_shown(rate_string)}'"
    if limit <= 0:
        return f"Limit must be positive, got {limit}"
    return f"Unknown time period: {_shown(parts[1].strip().lower())}"


def _peer_of(request: Any) -> Optional[str]:
    """The TCP peer of a Flask/Werkzeug, Django or Starlette request."""
    remote_addr = getattr(request, "remote_addr", None)
    if remote_addr:
        return str(remote_addr)
    client = getattr(request, "client", None)
    if client is not None and getattr(client, "host", None):
        return str(client.host)
    meta = getattr(request, "META", None)
    if isinstance(meta, Mapping) and meta.get("REMOTE_ADDR"):
        return str(meta["REMOTE_ADDR"])
    return None


def get_client_ip(
    request: Any,
    trusted_proxies: Optional[Iterable[str]] = None,
    default: str = "0.0.0.0",  # nosec B104
    header: str = "x-forwarded-for",
) -> str:
    """
    The client address of a Flask, Django, FastAPI/Starlette or WSGI request.

    `X-Forwarded-For` (or `header`) is only read when the request comes from one of
    `trusted_proxies` (addresses or networks such as `"10.0.0.0/8"`), and then from the right
    past the trusted proxies, as the Rust middleware does: a client cannot choose its key by
    sending the header itself. IPv6 clients are grouped by their /64. `default` is returned
    when no address is known.
    """
    resolver = _resolver(tuple(proxy_list(trusted_proxies)), header)
    values: List[str] = []
    if resolver.trusts_proxies:
        headers = getattr(request, "headers", None)
        if headers is not None:
            values = header_getter(headers)(resolver.header)
        else:
            values = environ_header_getter(getattr(request, "META", None) or {})(resolver.header)
    return resolver.resolve(_peer_of(request), values, default)


_RESOLVERS: dict = {}


def _resolver(trusted: Tuple[str, ...], header: str) -> "_native.ClientIpResolver":
    key = (trusted, header)
    resolver = _RESOLVERS.get(key)
    if resolver is None:
        resolver = _native.ClientIpResolver(list(trusted), header)
        if len(_RESOLVERS) < 64:
            _RESOLVERS[key] = resolver
    return resolver


def report_violation(callback: Any, info: Any, log: logging.Logger) -> None:
    """Calls `callback(info)` when there is one; what it raises is logged on `log`, never
    raised into the request (the decision stands)."""
    if callback is None:
        return
    try:
        callback(info)
    except Exception:
        log.exception("on_violation callback raised; the decision stands")

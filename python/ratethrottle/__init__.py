"""
RateThrottle on a Rust engine: the original library's API, many times faster, exact under
concurrency and across processes sharing Redis.

    >>> from ratethrottle import RateThrottleCore, RateThrottleRule
    >>> limiter = RateThrottleCore()
    >>> limiter.add_rule(RateThrottleRule(name="api", limit=100, window=60))
    >>> limiter.check_rate_limit("192.168.1.1", "api").allowed
    True
"""

import logging
from typing import Optional

from ._native import ClientIpResolver, ManualClock
from ._native import __version__ as __version__
from .adaptive import AdaptiveRateLimiter, UserProfile
from .alerting import AlertDispatcher
from .async_core import AsyncRateThrottleCore
from .async_middleware import AsyncFastAPIRateLimiter, AsyncStarletteRateLimitMiddleware
from .async_storage import AsyncInMemoryStorage, AsyncRedisStorage, AsyncStorageBackend
from .analytics import RateThrottleAnalytics
from .config import ConfigManager
from .core import RateThrottleCore, RateThrottleRule, RateThrottleStatus, RateThrottleViolation
from .ddos import DDoSProtection, TrafficPattern
from .exceptions import (
    ConfigurationError,
    InvalidIdentifierError,
    InvalidRuleError,
    RateLimitDegradedError,
    RateLimitExceeded,
    RateThrottleException,
    RuleConfigurationError,
    RuleNotFoundError,
    StorageError,
    StorageUnavailableError,
    StrategyNotFoundError,
)
from .graphQL import (
    AriadneRateLimiter,
    ComplexityAnalyzer,
    DepthAnalyzer,
    GrapheneRateLimiter,
    GraphQLLimits,
    GraphQLRateLimiter,
)
from .helpers import (
    create_async_limiter,
    create_limiter,
    get_client_ip,
    parse_rate,
    parse_rate_limit,
)
from .monitoring import RateThrottleMonitor
from .middleware import (
    DjangoRateLimitMiddleware,
    FastAPIRateLimiter,
    FlaskRateLimiter,
    StarletteRateLimitMiddleware,
    WSGIRateLimitMiddleware,
    django_ratelimit,
)
from .failover import FailoverHandler, FailureMode
from .storage_backend import InMemoryStorage, RedisStorage, StorageBackend
from .websocket import (
    ChannelsRateLimiter,
    ConnectionInfo,
    FastAPIWebSocketLimiter,
    SocketIOLimiter,
    WebSocketLimits,
    WebSocketRateLimiter,
)

__author__ = "ratethrottle contributors"
__license__ = "MIT"


#: Names of `ratethrottle.gRPC`, importable from here as the original's docs do; the module
#: (and `grpcio`, the `grpc` extra) is imported on first use, so `import ratethrottle` works
#: without grpcio.
_GRPC_NAMES = frozenset({
    "AsyncGRPCRateLimitInterceptor",
    "GRPCLimits",
    "GRPCRateLimitInterceptor",
    "ServiceRateLimiter",
    "extract_user_id_from_metadata",
    "grpc_ratelimit",
})


def __getattr__(name: str) -> object:
    if name == "StrawberryRateLimiter":
        from . import graphQL

        return graphQL.StrawberryRateLimiter
    if name in _GRPC_NAMES:
        from . import gRPC

        return getattr(gRPC, name)
    raise AttributeError(f"module 'ratethrottle' has no attribute {name!r}")


def get_version() -> str:
    """The package's version."""
    return __version__


def configure_logging(level: int = logging.INFO, handler: Optional[logging.Handler] = None) -> None:
    """
    Sends the `ratethrottle` loggers' records at `level` and above to `handler` (default: a
    stream handler on stderr with time, logger, level and message), as the original does.
    """
    logger = logging.getLogger("ratethrottle")
    logger.setLevel(level)
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
        )
    logger.addHandler(handler)


__all__ = [
    "AdaptiveRateLimiter",
    "AlertDispatcher",
    "AriadneRateLimiter",
    "AsyncFastAPIRateLimiter",
    "AsyncInMemoryStorage",
    "AsyncRateThrottleCore",
    "AsyncRedisStorage",
    "AsyncStarletteRateLimitMiddleware",
    "AsyncStorageBackend",
    "ChannelsRateLimiter",
    "ClientIpResolver",
    "ComplexityAnalyzer",
    "ConfigManager",
    "ConfigurationError",
    "ConnectionInfo",
    "DDoSProtection",
    "DepthAnalyzer",
    "DjangoRateLimitMiddleware",
    "FailoverHandler",
    "FailureMode",
    "FastAPIRateLimiter",
    "FastAPIWebSocketLimiter",
    "FlaskRateLimiter",
    "GraphQLLimits",
    "GraphQLRateLimiter",
    "GrapheneRateLimiter",
    "InMemoryStorage",
    "InvalidIdentifierError",
    "InvalidRuleError",
    "ManualClock",
    "RateLimitDegradedError",
    "RateLimitExceeded",
    "RateThrottleAnalytics",
    "RateThrottleCore",
    "RateThrottleException",
    "RateThrottleMonitor",
    "RateThrottleRule",
    "RateThrottleStatus",
    "RateThrottleViolation",
    "RedisStorage",
    "RuleConfigurationError",
    "RuleNotFoundError",
    "SocketIOLimiter",
    "StarletteRateLimitMiddleware",
    "StorageBackend",
    "StorageError",
    "StorageUnavailableError",
    "StrategyNotFoundError",
    "TrafficPattern",
    "UserProfile",
    "WSGIRateLimitMiddleware",
    "WebSocketLimits",
    "WebSocketRateLimiter",
    "configure_logging",
    "create_async_limiter",
    "create_limiter",
    "django_ratelimit",
    "get_client_ip",
    "get_version",
    "parse_rate",
    "parse_rate_limit",
]

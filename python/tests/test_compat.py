"""Names and messages of the original 1.4.0 that code written for it relies on."""

import asyncio
import logging
import subprocess
import sys

import pytest

import ratethrottle as rt
from ratethrottle import RateThrottleRule


@pytest.mark.parametrize(
    "rate, sentence",
    [
        ("100", "Rate string must contain '/' separator"),
        ("100/fortnight", "Unknown time period: fortnight"),
        ("0/minute", "Limit must be positive, got 0"),
        ("-10/minute", "Limit must be positive, got -10"),
        ("ten/minute", "Invalid rate limit format: 'ten/minute'"),
    ],
)
def test_parse_rate_limit_errors_start_with_the_originals_sentence(rate, sentence):
    with pytest.raises(ValueError) as raised:
        rt.parse_rate_limit(rate)
    message = str(raised.value)
    assert message.startswith(sentence) and len(message) > len(sentence) + 20, message


def test_version_and_logging_helpers():
    assert rt.get_version() == rt.__version__
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("ratethrottle")
    level, handlers = logger.level, list(logger.handlers)
    handler = Keep()
    try:
        rt.configure_logging(logging.DEBUG, handler)
        logging.getLogger("ratethrottle.test").debug("hello")
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["hello"]
    assert logger.handlers == handlers


def test_every_documented_module_imports():
    import ratethrottle.async_middleware
    import ratethrottle.failover

    assert ratethrottle.failover.FailureMode("strict") is rt.FailureMode.STRICT
    assert ratethrottle.async_middleware.AsyncFastAPIRateLimiter is rt.AsyncFastAPIRateLimiter


def _unreachable_redis_core(mode):
    from conftest import free_port

    storage = rt.RedisStorage(f"redis://127.0.0.1:{free_port()}/0", fault_policy="fail_closed",
                              timeout=0.05)
    core = rt.AsyncRateThrottleCore(storage, failure_mode=mode)
    core.add_rule(RateThrottleRule(name="api", limit=10, window=60))
    return core


def test_failure_mode_strict_denies_once_failures_pile_up():
    core = _unreachable_redis_core(rt.FailureMode.STRICT)

    async def main():
        return [await core.check_rate_limit("a", "api") for _ in range(6)]

    statuses = asyncio.run(main())
    assert [s.allowed for s in statuses] == [True] * 4 + [False] * 2
    assert all(s.degraded for s in statuses)
    assert statuses[-1].rule_name == "storage_error"
    assert core.failover_handler.get_status()["in_failover"]


def test_failure_mode_open_admits_what_the_store_cannot_decide():
    core = _unreachable_redis_core("open")

    async def main():
        return [await core.check_rate_limit("a", "api") for _ in range(6)]

    statuses = asyncio.run(main())
    assert all(s.allowed and s.degraded for s in statuses)
    assert statuses[0].limit == 10


def test_the_fastapi_quickstart_form_decorates_endpoints():
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    app = FastAPI()
    limiter = rt.FastAPIRateLimiter()

    @app.get("/api/data")
    @limiter.limit("2/minute")
    async def get_data():
        return {"data": "value"}

    @app.get("/sync")
    @limiter.limit("1/minute")
    def sync_endpoint(request: Request, q: int = 0):
        return {"q": q, "client": request.client.host}

    client = TestClient(app)
    answers = [client.get("/api/data") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].json() == {"data": "value"}
    assert answers[1].headers["x-ratelimit-remaining"] == "0"
    assert client.get("/sync?q=3").json() == {"q": 3, "client": "testclient"}
    assert client.get("/sync").status_code == 429


def test_the_async_adapters_check_named_rules():
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    limiter = rt.AsyncFastAPIRateLimiter()
    limiter.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    app = FastAPI()

    @app.get("/x", dependencies=[Depends(limiter.limit("api"))])
    async def x():
        return {}

    client = TestClient(app)
    assert [client.get("/x").status_code for _ in range(2)] == [200, 429]
    assert limiter.list_rules() == ["api"]
    assert asyncio.run(limiter.get_metrics())["blocked_requests"] == 1

    plain = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hi"))])
    plain.add_middleware(rt.AsyncStarletteRateLimitMiddleware,
                         rules=[RateThrottleRule(name="api", limit=1, window=60)])
    client = TestClient(plain)
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_django_adapters_can_be_made_before_settings_are_configured():
    code = """
import ratethrottle as rt
from ratethrottle.middleware import DjangoRateLimitMiddleware, django_ratelimit

middleware = DjangoRateLimitMiddleware(lambda request: None)

@django_ratelimit("5/minute")
def view(request):
    return "ok"

from django.conf import settings
settings.configure(RATELIMIT_RULES={"/api/": {"limit": 1, "window": 60}})
assert middleware.limiter.list_rules() == ["django_/api/"], middleware.limiter.list_rules()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# The original 1.4.0's `__all__`, less the features that have issues of their own (DDoS,
# adaptive, analytics, monitoring, alerting, gRPC, GraphQL, WebSocket): importable from the
# same places.
ORIGINAL_NAMES = [
    "RateThrottleCore", "RateThrottleRule", "RateThrottleStatus", "RateThrottleViolation",
    "AsyncRateThrottleCore", "StorageBackend", "InMemoryStorage", "RedisStorage",
    "AsyncStorageBackend", "AsyncInMemoryStorage", "AsyncRedisStorage", "FlaskRateLimiter",
    "FastAPIRateLimiter", "DjangoRateLimitMiddleware", "django_ratelimit",
    "StarletteRateLimitMiddleware", "WSGIRateLimitMiddleware", "AsyncFastAPIRateLimiter",
    "AsyncStarletteRateLimitMiddleware", "ConfigManager", "create_limiter",
    "create_async_limiter", "get_client_ip", "get_version", "configure_logging",
    "DDoSProtection", "RateThrottleAnalytics",
]
ORIGINAL_MODULE_NAMES = {
    "ratethrottle.ddos": ["DDoSProtection", "TrafficPattern"],
    "ratethrottle.analytics": ["RateThrottleAnalytics"],
    "ratethrottle.core": ["RateThrottleCore", "RateThrottleRule", "RateThrottleStatus",
                          "RateThrottleViolation"],
    "ratethrottle.config": ["ConfigManager", "RuleConfig"],
    "ratethrottle.storage_backend": ["StorageBackend", "InMemoryStorage", "RedisStorage"],
    "ratethrottle.async_storage": ["AsyncStorageBackend", "AsyncInMemoryStorage",
                                   "AsyncRedisStorage"],
    "ratethrottle.async_core": ["AsyncRateThrottleCore"],
    "ratethrottle.async_middleware": ["AsyncFastAPIRateLimiter",
                                      "AsyncStarletteRateLimitMiddleware"],
    "ratethrottle.failover": ["FailureMode", "FailoverHandler"],
    "ratethrottle.strategies": ["RateLimitStrategy", "TokenBucketStrategy",
                                "LeakyBucketStrategy", "FixedWindowStrategy",
                                "SlidingWindowStrategy", "SlidingWindowCounterStrategy"],
    "ratethrottle.async_strategies": ["AsyncRateLimitStrategy", "AsyncTokenBucketStrategy",
                                      "AsyncLeakyBucketStrategy", "AsyncFixedWindowStrategy",
                                      "AsyncSlidingWindowStrategy",
                                      "AsyncSlidingWindowCounterStrategy"],
    "ratethrottle.middleware": ["FlaskRateLimiter", "FastAPIRateLimiter",
                                "DjangoRateLimitMiddleware", "django_ratelimit",
                                "StarletteRateLimitMiddleware", "WSGIRateLimitMiddleware"],
    "ratethrottle.helpers": ["create_limiter", "create_async_limiter", "get_client_ip",
                             "parse_rate_limit"],
    "ratethrottle.exceptions": ["RateThrottleException", "RateLimitExceeded",
                                "ConfigurationError", "StorageError", "InvalidRuleError",
                                "RuleNotFoundError", "StrategyNotFoundError"],
    "ratethrottle.cli": ["main"],
}


def test_the_originals_names_are_importable_from_the_same_places():
    import importlib

    missing = [name for name in ORIGINAL_NAMES if not hasattr(rt, name)]
    for module_name, names in ORIGINAL_MODULE_NAMES.items():
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    assert missing == []

"""Typed use of the public API, checked with `mypy --strict` against the installed wheel (by
`scripts/test.sh`): the stubs and annotations must describe what the package really offers.
Also run as a test."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import ratethrottle as rt
from ratethrottle import (
    ConfigurationError,
    RateThrottleCore,
    RateThrottleRule,
    RateThrottleStatus,
    StorageError,
    create_limiter,
    parse_rate_limit,
)


def use_the_core() -> Tuple[bool, int, Optional[int], bool]:
    clock = rt.ManualClock(1_700_000_000)
    core: RateThrottleCore = RateThrottleCore(clock=clock)
    core.add_rule(RateThrottleRule(name="api", limit=2, window=60, block_duration=0))
    status: RateThrottleStatus = core.check_rate_limit("10.0.0.1", "api")
    as_dict: Dict[str, Any] = status.to_dict()
    headers: Dict[str, str] = status.to_headers()
    extra: List[Tuple[str, str]] = status.http_headers("ietf")
    assert as_dict["degraded"] is False and headers and extra
    clock.advance(1.5)
    metrics: Dict[str, Any] = core.get_metrics()
    assert metrics["degraded_requests"] == 0
    return status.allowed, status.remaining, status.retry_after, status.degraded


def use_the_helpers() -> Tuple[int, int]:
    limiter: RateThrottleCore = create_limiter()
    limiter.add_rule(RateThrottleRule(name="login", limit=5, window=300))
    try:
        create_limiter("carrier-pigeon")
    except ConfigurationError:
        pass
    except StorageError:
        raise
    return parse_rate_limit("100/minute")


def test_the_typed_usage_runs() -> None:
    assert use_the_core() == (True, 1, None, False)
    assert use_the_helpers() == (100, 60)

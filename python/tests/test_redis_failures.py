"""A failing Redis through the Python API: refused credentials are configuration errors, a
slow Redis costs the per-call timeout, degraded answers are marked, counted and logged once
per degraded period, and a limiter given a fault policy starts while Redis is down."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

import ratethrottle as rt
from ratethrottle import RateThrottleRule

from conftest import free_port, start_redis, stop_redis

# Headroom for a loaded CI machine.
SLACK = 0.3


def _limiter(url: str, policy: str) -> rt.RateThrottleCore:
    core = rt.create_limiter("redis", url, fault_policy=policy, key_prefix=f"f:{policy}:{time.time_ns()}:")
    core.add_rule(RateThrottleRule(name="api", limit=2, window=3600, block_duration=0))
    return core


def _until_recovered(core: rt.RateThrottleCore) -> None:
    deadline = time.monotonic() + 15
    while core.check_rate_limit("probe", "api").degraded:
        assert time.monotonic() < deadline, "redis was not used again"
        time.sleep(0.05)


@pytest.mark.parametrize("policy", [None, "fail_open", "fail_closed", "fallback_memory"])
def test_credentials_redis_refuses_are_a_configuration_error(policy):
    proc, url = start_redis("--requirepass", "s3cret")
    try:
        kwargs = {} if policy is None else {"fault_policy": policy}
        with pytest.raises(rt.ConfigurationError, match="NOAUTH"):
            rt.create_limiter("redis", url, **kwargs)
        with pytest.raises(rt.ConfigurationError, match="refused"):
            rt.RedisStorage(url.replace("redis://", "redis://:wrong@"), **kwargs)
        with pytest.raises(rt.ConfigurationError, match="DB index"):
            rt.RedisStorage(url.replace("redis://", "redis://:s3cret@").replace("/0", "/99"), **kwargs)
        core = rt.create_limiter("redis", url.replace("redis://", "redis://:s3cret@"), **kwargs)
        core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
        assert core.check_rate_limit("a", "api").allowed
    finally:
        stop_redis(proc)


def test_degraded_answers_are_marked_counted_and_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="ratethrottle")
    proc, url = start_redis()
    port = url.rsplit(":", 1)[1].split("/")[0]
    open_core, closed_core = _limiter(url, "fail_open"), _limiter(url, "fail_closed")
    for core in (open_core, closed_core):
        status = core.check_rate_limit("a", "api")
        assert status.allowed and not status.degraded and status.to_dict()["degraded"] is False
    stop_redis(proc)
    for _ in range(10):
        status = open_core.check_rate_limit("a", "api")
        assert status.allowed and status.degraded and status.to_dict()["degraded"] is True
        assert "degraded=True" in repr(status)
        status = closed_core.check_rate_limit("a", "api")
        assert (status.allowed, status.rule_name, status.degraded) == (False, "storage_error", True)

    metrics = open_core.get_metrics()
    assert (metrics["total_requests"], metrics["allowed_requests"], metrics["degraded_requests"]) == (11, 11, 10)
    assert metrics["store_errors"] >= 3 and metrics["store_circuit_open"] is True
    assert metrics["store_circuit_opens"] == 1 and metrics["rules"]["api"]["degraded"] == 10
    metrics = closed_core.get_metrics()
    assert (metrics["total_requests"], metrics["blocked_requests"], metrics["degraded_requests"]) == (11, 10, 10)

    def lines(*parts):
        return [r for r in caplog.records
                if r.name == "ratethrottle.redis" and port in r.getMessage()
                and all(p in r.getMessage() for p in parts)]

    for policy in ("fail_open", "fail_closed"):
        started = lines(f"checks are answered by {policy} until")
        assert len(started) == 1 and started[0].levelno == logging.WARNING, [r.getMessage() for r in started]

    proc, _ = start_redis(port=int(port))
    try:
        for core in (open_core, closed_core):
            _until_recovered(core)
        for policy in ("fail_open", "fail_closed"):
            assert len(lines(f"checks are answered by {policy} until")) == 1
            assert len(lines("is answering again", f"answered by {policy}")) == 1
    finally:
        stop_redis(proc)


def test_a_paused_redis_costs_the_call_timeout_not_the_connect_timeout():
    proc, url = start_redis()
    try:
        core = _limiter(url, "fail_open")
        assert not core.check_rate_limit("a", "api").degraded
        os.kill(proc.pid, signal.SIGSTOP)
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            status = core.check_rate_limit("a", "api")
            slowest = max(slowest, time.monotonic() - started)
            assert status.allowed and status.degraded
        assert slowest < 0.05 + SLACK, slowest
        # Creating a limiter now: without a fault policy Redis must answer, and the connect
        # timeout (default 1 s, not the original's 5) bounds the wait.
        started = time.monotonic()
        with pytest.raises(rt.ConfigurationError, match="timed out|no connection"):
            rt.create_limiter("redis", url)
        assert time.monotonic() - started < 1 + SLACK
        started = time.monotonic()
        with pytest.raises(rt.StorageError):
            rt.RedisStorage(url, connection_timeout=0.2)
        assert time.monotonic() - started < 0.2 + SLACK
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        stop_redis(proc)


def test_tls_to_a_plain_text_redis_names_tls_quickly(redis_url):
    started = time.monotonic()
    with pytest.raises(rt.ConfigurationError, match="TLS"):
        rt.create_limiter("redis", redis_url.replace("redis://", "rediss://"))
    assert time.monotonic() - started < 1 + SLACK


def test_a_fault_policy_lets_the_limiter_start_while_redis_is_down():
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(rt.ConfigurationError, match="unreachable"):
        rt.create_limiter("redis", url)
    started = time.monotonic()
    core = _limiter(url, "fail_closed")
    assert time.monotonic() - started < SLACK
    status = core.check_rate_limit("a", "api")
    assert (status.allowed, status.rule_name, status.degraded) == (False, "storage_error", True)
    proc, _ = start_redis(port=port)
    try:
        _until_recovered(core)
        decided = [core.check_rate_limit("b", "api") for _ in range(3)]
        assert [s.allowed for s in decided] == [True, True, False]
        assert not any(s.degraded for s in decided)
    finally:
        stop_redis(proc)

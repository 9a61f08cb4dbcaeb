"""Issue 15: hostile and careless input through the Python API — clear errors of the
documented types, nothing unbounded, no secret in a message."""

from __future__ import annotations

import logging
import math
import socket
import threading

import pytest

import ratethrottle as rt
from ratethrottle import (
    ConfigurationError,
    InvalidRuleError,
    RateThrottleCore,
    RateThrottleRule,
    create_limiter,
    parse_rate_limit,
)
from ratethrottle.middleware import FlaskRateLimiter


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(limit=float("nan")), "Limit must be a whole number"),
        (dict(limit=float("inf")), "Limit must be a whole number"),
        (dict(limit=1.5), "Limit must be a whole number, got 1.5"),
        (dict(limit=2**70), "Limit must be at most 18446744073709551615"),
        (dict(burst=2**70), "Burst must be at most 18446744073709551615"),
        (dict(burst=20.5), "Burst must be a whole number, got 20.5"),
        (dict(window=1e-300), "Window must be at least one nanosecond, got 1e-300"),
        (dict(window=2**70), "Window must be at most 3153600000 seconds (100 years)"),
        (dict(window=float("nan")), "Window must be a finite number of seconds, got nan"),
        (dict(block_duration=float("inf")), "Block duration must be a finite number"),
        (dict(name="a\nb"), "control character"),
    ],
)
def test_rules_are_validated_when_created(kwargs, message):
    args = dict(name="api", limit=10, window=60)
    args.update(kwargs)
    with pytest.raises(InvalidRuleError) as raised:
        RateThrottleRule(**args)
    assert message in str(raised.value)


def test_integral_floats_are_still_accepted_as_counts():
    rule = RateThrottleRule(name="api", limit=10.0, window=60, burst=20.0)
    assert (rule.limit, rule.burst) == (10, 20)
    assert isinstance(rule.limit, int)


@pytest.mark.parametrize("duration", [-1, -1e9, float("nan"), float("-inf"), float("inf")])
def test_blacklist_durations_that_cannot_be_are_refused(core, duration):
    with pytest.raises(ValueError, match="duration must be a finite number of seconds"):
        core.add_to_blacklist("x", duration)
    assert not core.is_blacklisted("x")


def test_a_blacklist_without_duration_or_zero_is_until_removed(core):
    core.add_to_blacklist("forever")
    core.add_to_blacklist("also", 0)
    assert core.is_blacklisted("forever") and core.is_blacklisted("also")


def test_huge_names_are_logged_and_reported_elided(core, caplog):
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    huge = "x" * 10_000_000
    with caplog.at_level(logging.ERROR, logger="ratethrottle.core"):
        status = core.check_rate_limit("client", huge)
    assert status.rule_name == "unknown_rule"
    assert max(len(r.getMessage()) for r in caplog.records) < 1_000
    with pytest.raises(ValueError) as raised:
        parse_rate_limit("1/" + "x" * 10**7)
    assert len(str(raised.value)) < 1_000


def test_odd_arguments_raise_the_documented_value_error(core):
    core.add_rule(RateThrottleRule(name="api", limit=5, window=60))
    with pytest.raises(ValueError, match="identifier is not valid text"):
        core.check_rate_limit("\ud800", "api")
    with pytest.raises(ValueError, match="cost must be a whole number from 1"):
        core.check_rate_limit("client", "api", cost=-1)
    with pytest.raises(ValueError, match="cost must be a whole number from 1"):
        core.check_rate_limit("client", "api", cost=2**70)
    assert core.check_rate_limit("client", "api", cost=2).remaining == 3


def test_a_trusted_proxy_may_be_one_string():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    limiter = FlaskRateLimiter(app, trusted_proxies="10.0.0.0/8")
    assert limiter is not None
    with pytest.raises(ConfigurationError, match="trusted proxy"):
        FlaskRateLimiter(flask.Flask("other"), trusted_proxies=[10])
    assert rt.get_client_ip(_Request("10.1.2.3", "198.51.100.7"), "10.0.0.0/8") == "198.51.100.7"


class _Request:
    def __init__(self, peer: str, forwarded: str) -> None:
        self.remote_addr = peer
        self.headers = {"x-forwarded-for": forwarded}


def test_a_password_in_a_redis_url_never_appears_in_an_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:s3cret@127.0.0.1:{port}/9"
    with pytest.raises(ConfigurationError) as raised:
        create_limiter("redis", url)
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in repr(raised.value.__cause__)


def test_a_server_that_is_not_redis_is_named_as_such():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_like_http() -> None:
        for _ in range(8):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer_like_http, daemon=True).start()
    try:
        with pytest.raises(ConfigurationError) as raised:
            create_limiter("redis", f"redis://127.0.0.1:{port}/0")
        assert "did not answer like Redis" in str(raised.value), str(raised.value)
    finally:
        server.close()


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, 0])
def test_a_bad_connection_timeout_names_the_setting(timeout):
    with pytest.raises(ConfigurationError, match="connection_timeout must be"):
        rt.RedisStorage("redis://127.0.0.1:1/0", connection_timeout=timeout)


def test_windows_of_rate_strings_are_bounded():
    with pytest.raises(ValueError, match="Limit must be positive"):
        parse_rate_limit("-1/minute")
    assert math.isclose(rt.parse_rate("1/ms")[1], 0.001)


def _odd_values(rng):
    pool = [
        0, 1, -1, 2**63, 2**64, 2**70, -(2**70), 0.5, 1e-300, 1e300, float("nan"), float("inf"),
        float("-inf"), True, None, "10", "", [], {}, b"x", "\ud800", "x" * 10_000,
    ]
    value = rng.choice(pool)
    if rng.random() < 0.3:
        value = rng.choice([rng.randint(-(2**80), 2**80), rng.uniform(-1e20, 1e20)])
    return value


def test_fuzz_python_argument_conversions():
    """Random odd arguments to the rule, check, blacklist and rate APIs raise only the
    documented exceptions and never crash the interpreter (`FUZZ_CASES`, default 300)."""
    import os
    import random

    rng = random.Random(int(os.environ.get("FUZZ_SEED", "15")))
    core = RateThrottleCore()
    core.add_rule(RateThrottleRule(name="api", limit=5, window=60))
    documented = (InvalidRuleError, ValueError, TypeError, rt.StrategyNotFoundError)
    for _ in range(int(os.environ.get("FUZZ_CASES", "300"))):
        kwargs = {k: _odd_values(rng) for k in rng.sample(["limit", "window", "burst", "block_duration"], 2)}
        try:
            RateThrottleRule(name="r", **{"limit": 3, "window": 1, **kwargs})
        except documented:
            pass
        try:
            status = core.check_rate_limit(_odd_values(rng), "api", cost=_odd_values(rng))
            assert status.rule_name in ("api", "error", "unknown_rule")
        except documented:
            pass
        try:
            core.add_to_blacklist("fuzz", _odd_values(rng))
            core.remove_from_blacklist("fuzz")
        except documented:
            pass
        try:
            rt.parse_rate(str(_odd_values(rng)) + rng.choice(["/s", "/minute", "", "/fortnight"]))
        except documented:
            pass

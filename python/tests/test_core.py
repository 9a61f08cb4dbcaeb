"""The core API through Python: the Rust conformance scenarios, and the original's quirks."""

from __future__ import annotations

import asyncio
import threading

import pytest

import ratethrottle as rt
from ratethrottle import (
    InvalidRuleError,
    RateThrottleRule,
    RuleNotFoundError,
    StrategyNotFoundError,
)

START = 1_700_000_040  # as conftest.py

STRATEGIES = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_counter", "gcra"]


def admitted(core, identifier, rule, n):
    return sum(core.check_rate_limit(identifier, rule).allowed for _ in range(n))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_admits_exactly_its_limit(core, strategy):
    core.add_rule(RateThrottleRule(name="r", limit=5, window=60, strategy=strategy))
    assert admitted(core, "10.0.0.1", "r", 20) == 5
    assert admitted(core, "10.0.0.2", "r", 20) == 5


def test_token_bucket_refills_at_its_rate(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=10, window=10, strategy="token_bucket", block_duration=0))
    assert admitted(core, "a", "r", 20) == 10
    clock.advance(3)
    assert admitted(core, "a", "r", 20) == 3


def test_fixed_window_resets_at_the_window_boundary(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=3, window=60, strategy="fixed_window", block_duration=0))
    assert admitted(core, "a", "r", 5) == 3
    clock.advance(59)
    assert admitted(core, "a", "r", 5) == 0
    clock.advance(1)
    assert admitted(core, "a", "r", 5) == 3


def test_sliding_window_forgets_each_admission_one_window_later(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=2, window=10, strategy="sliding_window", block_duration=0))
    assert core.check_rate_limit("a", "r").allowed
    clock.advance(5)
    assert core.check_rate_limit("a", "r").allowed
    assert not core.check_rate_limit("a", "r").allowed
    clock.advance(5)
    assert core.check_rate_limit("a", "r").allowed
    assert not core.check_rate_limit("a", "r").allowed


def test_retry_after_is_exact_and_a_violation_blocks(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=1, window=60, strategy="fixed_window", block_duration=120))
    first = core.check_rate_limit("a", "r")
    assert (first.allowed, first.remaining, first.limit, first.strategy) == (True, 0, 1, "fixed_window")
    denied = core.check_rate_limit("a", "r")
    assert not denied.allowed
    assert denied.retry_after == 120
    assert denied.to_headers()["Retry-After"] == "120"
    clock.advance(100)
    assert core.check_rate_limit("a", "r").retry_after == 20
    clock.advance(20)
    assert core.check_rate_limit("a", "r").allowed


def test_a_zero_block_duration_never_blocks(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=1, window=10, strategy="fixed_window", block_duration=0))
    core.check_rate_limit("a", "r")
    assert core.check_rate_limit("a", "r").retry_after == 10


def test_status_fields_dict_and_headers(core):
    core.add_rule(RateThrottleRule(name="api", limit=100, window=60))
    status = core.check_rate_limit("10.0.0.1", "api")
    assert status.to_dict() == {
        "allowed": True, "remaining": 99, "limit": 100, "reset_time": status.reset_time,
        "retry_after": None, "rule_name": "api", "blocked": False, "strategy": "sliding_counter",
        "degraded": False,
    }
    assert status.reset_time > START
    assert list(status.to_headers()) == ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
    assert dict(status.http_headers())["RateLimit-Policy"] == '"api";q=100;w=60'
    assert status.verdict == "allowed"
    built = rt.RateThrottleStatus(True, 1, 2, 3)
    assert (built.retry_after, built.rule_name, built.blocked, built.strategy) == (None, None, False, None)
    built.remaining = 0
    assert built == rt.RateThrottleStatus(True, 0, 2, 3)
    assert "remaining=0" in repr(built)


def test_whitelist_and_blacklist_answer_as_the_original(core):
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    core.add_to_whitelist("friend")
    white = core.check_rate_limit("friend", "api")
    assert (white.allowed, white.remaining, white.limit, white.rule_name) == (True, 999999, 999999, "whitelist")
    assert admitted(core, "friend", "api", 5) == 5
    core.add_to_blacklist("foe")
    black = core.check_rate_limit("foe", "api")
    assert (black.allowed, black.limit, black.retry_after, black.rule_name, black.blocked) == (
        False, 0, 86400, "blacklist", True)
    assert core.is_blacklisted("foe") and core.is_whitelisted("friend")
    assert core.remove_from_blacklist("foe") and not core.remove_from_blacklist("foe")
    assert core.check_rate_limit("foe", "api").allowed


def test_a_timed_blacklist_expires(core, clock):
    core.add_rule(RateThrottleRule(name="api", limit=5, window=60))
    core.add_to_blacklist("foe", duration=30)
    assert core.check_rate_limit("foe", "api").retry_after == 30
    clock.advance(30)
    assert core.check_rate_limit("foe", "api").allowed


def test_unknown_rules_and_empty_identifiers_are_denied_not_raised(core, caplog):
    core.add_rule(RateThrottleRule(name="api", limit=5, window=60))
    unknown = core.check_rate_limit("a", "apii")
    assert 'unknown rule "apii"; known rules: api' in caplog.text
    assert (unknown.allowed, unknown.rule_name, unknown.blocked, unknown.verdict) == (
        False, "unknown_rule", True, "unknown_rule")
    empty = core.check_rate_limit("", "api")
    assert (empty.allowed, empty.rule_name) == (False, "error")
    assert "Empty identifier" in caplog.text
    with pytest.raises(RuleNotFoundError, match='unknown rule "apii"; known rules: api'):
        core.reset("a", "apii")
    with pytest.raises(RuleNotFoundError):
        core.peek("a", "apii")


def test_huge_identifiers_are_limited_like_any_other(core):
    core.add_rule(RateThrottleRule(name="api", limit=2, window=60))
    huge = "x" * 100_000
    assert admitted(core, huge, "api", 5) == 2
    assert admitted(core, huge + "y", "api", 5) == 2


def test_peek_reset_and_remove(core):
    core.add_rule(RateThrottleRule(name="api", limit=2, window=60))
    assert core.peek("a", "api").remaining == 2
    admitted(core, "a", "api", 2)
    core.reset("a", "api")
    assert core.check_rate_limit("a", "api").allowed
    assert core.remove_rule("api") and not core.remove_rule("api")
    assert core.check_rate_limit("a", "api").rule_name == "unknown_rule"
    assert core.list_rules() == [] and core.get_rule("api") is None


def test_cost_counts_several_units(core):
    core.add_rule(RateThrottleRule(name="api", limit=10, window=60))
    assert core.check_rate_limit("a", "api", cost=7).remaining == 3
    assert not core.check_rate_limit("a", "api", cost=4).allowed
    with pytest.raises(ValueError, match="cost 11"):
        core.check_rate_limit("a", "api", cost=11)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(limit=-1), "Limit must be positive, got -1"),
        (dict(window=0), "Window must be positive, got 0"),
        (dict(block_duration=-5), "Block duration cannot be negative, got -5"),
        (dict(burst=5), r"Burst \(5\) cannot be less than limit \(10\)"),
        (dict(scope="planet"), "Invalid scope 'planet'"),
        (dict(name=""), "Rule name must be a non-empty string"),
        (dict(limit="ten"), "Limit must be a whole number"),
    ],
)
def test_invalid_rules_raise_the_originals_errors(kwargs, message):
    args = dict(name="r", limit=10, window=60) | kwargs
    with pytest.raises(InvalidRuleError, match=message):
        RateThrottleRule(**args)


def test_unknown_strategies_and_non_rules_are_refused(core):
    with pytest.raises(StrategyNotFoundError, match="Strategy 'fastest' not found. Available:"):
        core.add_rule(RateThrottleRule(name="r", limit=1, window=1, strategy="fastest"))
    with pytest.raises(InvalidRuleError, match="Expected RateThrottleRule, got dict"):
        core.add_rule({"name": "r"})
    with pytest.raises(InvalidRuleError, match="Window must be at most"):
        RateThrottleRule(name="r", limit=5, window=10**12)
    with pytest.raises(InvalidRuleError, match="exceeds 100 years"):
        core.add_rule(
            RateThrottleRule(name="r", limit=1, window=10**9, burst=10, strategy="token_bucket")
        )


@pytest.mark.parametrize("rate", ["100/fortnight", "ten/minute", "100", "", "0/second"])
def test_bad_rates_raise_value_errors(rate):
    with pytest.raises(ValueError):
        rt.parse_rate(rate)
    with pytest.raises(ValueError):
        rt.parse_rate_limit(rate)


def test_rates_parse():
    assert rt.parse_rate_limit("100/minute") == (100, 60)
    assert rt.parse_rate_limit("5/second") == (5, 1)
    assert rt.parse_rate_limit("1000/hour") == (1000, 3600)
    assert rt.parse_rate("10/30s") == (10, 30.0)
    with pytest.raises(ValueError, match="fortnight"):
        rt.parse_rate("100/fortnight")


def test_violations_reach_callbacks_with_metadata_and_a_failing_callback_is_contained(core, caplog):
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60, block_duration=30))
    seen = []

    def broken(violation):
        raise RuntimeError("callback bug")

    core.register_violation_callback(broken)
    core.register_violation_callback(seen.append)
    core.check_rate_limit("a", "api")
    status = core.check_rate_limit("a", "api", metadata={"path": "/x"})
    assert not status.allowed
    assert len(seen) == 1
    v = seen[0]
    assert (v.identifier, v.rule_name, v.limit, v.scope, v.metadata) == ("a", "api", 1, "ip", {"path": "/x"})
    assert v.blocked_until is not None and v.to_dict()["rule_name"] == "api"
    assert "callback bug" in caplog.text
    with pytest.raises(ValueError):
        core.register_violation_callback(42)


def test_metrics_have_the_originals_keys(core):
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60))
    core.check_rate_limit("a", "api")
    core.check_rate_limit("a", "api")
    core.check_rate_limit("a", "nope")
    core.add_to_whitelist("w")
    metrics = core.get_metrics()
    assert {k: metrics[k] for k in ("total_requests", "allowed_requests", "blocked_requests",
                                     "total_violations", "active_rules", "whitelisted_count",
                                     "blacklisted_count")} == {
        "total_requests": 3, "allowed_requests": 1, "blocked_requests": 2,
        "total_violations": 1, "active_rules": 1, "whitelisted_count": 1, "blacklisted_count": 0}
    assert metrics["block_rate"] == pytest.approx(200 / 3)
    assert isinstance(metrics["recent_violations"][0], rt.RateThrottleViolation)
    core.reset_metrics()
    assert core.get_metrics()["total_requests"] == 0
    assert core.get_status()["rules"] == [{"name": "api", "limit": 1, "window": 60, "strategy": "sliding_counter"}]


def test_threads_admit_exactly_the_limit(core):
    core.add_rule(RateThrottleRule(name="api", limit=500, window=60))
    counts = []

    def hammer():
        counts.append(admitted(core, "shared", "api", 200))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 500


def test_async_checks_resolve_in_the_event_loop(core):
    core.add_rule(RateThrottleRule(name="api", limit=3, window=60))

    async def main():
        statuses = await asyncio.gather(*(core.acheck_rate_limit("a", "api") for _ in range(5)))
        return [s.allowed for s in statuses]

    assert asyncio.run(main()) == [True, True, True, False, False]


def test_create_limiter_and_its_errors():
    limiter = rt.create_limiter()
    limiter.add_rule(RateThrottleRule(name="api", limit=1, window=1))
    assert limiter.check_rate_limit("a", "api").allowed
    with pytest.raises(rt.ConfigurationError, match="redis_url is required"):
        rt.create_limiter("redis")
    with pytest.raises(rt.ConfigurationError, match="Unknown storage type: disk"):
        rt.create_limiter("disk")


def test_the_async_core_keeps_the_originals_coroutines(clock):
    async def main():
        core = rt.AsyncRateThrottleCore(clock=clock)
        core.add_rule(RateThrottleRule(name="api", limit=2, window=60))
        allowed = [(await core.check_rate_limit("a", "api")).allowed for _ in range(3)]
        await core.add_to_whitelist("friend")
        await core.add_to_blacklist("foe", duration=30)
        lists = (await core.is_whitelisted("friend"), await core.is_blacklisted("foe"))
        removed = await core.remove_from_blacklist("foe")
        metrics = await core.get_metrics()
        await core.reset_metrics()
        return allowed, lists, removed, metrics["total_requests"], (await core.get_metrics())["total_requests"]

    assert asyncio.run(main()) == ([True, True, False], (True, True), True, 3, 0)
    assert isinstance(rt.AsyncRateThrottleCore().storage, rt.AsyncInMemoryStorage)
    limiter = asyncio.run(rt.create_async_limiter())
    assert isinstance(limiter, rt.AsyncRateThrottleCore)


def test_leaky_bucket_drains_at_its_rate(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=4, window=4, strategy="leaky_bucket", block_duration=0))
    assert admitted(core, "a", "r", 10) == 4
    clock.advance(2)
    assert admitted(core, "a", "r", 10) == 2


def test_gcra_spaces_requests_by_the_emission_interval(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=10, window=10, strategy="gcra", block_duration=0))
    assert admitted(core, "a", "r", 20) == 10
    denied = core.check_rate_limit("a", "r")
    assert denied.retry_after == 1
    clock.advance(1)
    assert admitted(core, "a", "r", 5) == 1


def test_sliding_counter_weights_the_previous_window(core, clock):
    core.add_rule(RateThrottleRule(name="r", limit=10, window=60, block_duration=0))
    assert admitted(core, "a", "r", 10) == 10
    clock.advance(90)  # half-way through the next window: half of the previous 10 still count
    assert admitted(core, "a", "r", 10) == 5


def test_blocks_are_per_rule_and_identifier_and_peeks_record_nothing(core):
    core.add_rule(RateThrottleRule(name="r", limit=1, window=60))
    core.add_rule(RateThrottleRule(name="s", limit=1, window=60))
    core.check_rate_limit("a", "r")
    core.check_rate_limit("a", "r")
    assert core.check_rate_limit("a", "r").blocked
    assert core.check_rate_limit("a", "s").allowed
    assert core.check_rate_limit("b", "r").allowed
    before = core.get_metrics()["total_violations"]
    assert not core.peek("b", "r").allowed
    assert core.get_metrics()["total_violations"] == before


def test_replacing_a_rule_carries_what_was_used_unless_the_window_changes(core):
    core.add_rule(RateThrottleRule(name="r", limit=2, window=60))
    core.check_rate_limit("a", "r")
    core.add_rule(RateThrottleRule(name="r", limit=2, window=60))
    assert core.check_rate_limit("a", "r").remaining == 0
    # A new limit applies to what was already used (lowering it hands out nothing fresh).
    core.add_rule(RateThrottleRule(name="r", limit=3, window=60))
    assert core.check_rate_limit("a", "r").remaining == 0
    # Another window means another kind of count: it starts fresh.
    core.add_rule(RateThrottleRule(name="r", limit=3, window=30))
    assert core.check_rate_limit("a", "r").remaining == 2


def test_violations_carry_the_engines_own_record(clock):
    core = rt.RateThrottleCore(clock=clock)
    core.add_rule(RateThrottleRule(name="api", limit=1, window=60, block_duration=300))
    seen = []
    core.register_violation_callback(seen.append)
    clock.advance(0.25)
    core.check_rate_limit("a", "api", {"path": "/x"})
    core.check_rate_limit("a", "api", {"path": "/x"})
    (violation,) = seen
    recorded = core.get_metrics()["recent_violations"][-1]
    assert violation.blocked_until == recorded.blocked_until  # the engine's block end, exactly
    assert violation.timestamp == recorded.timestamp
    assert violation.retry_after == recorded.retry_after == 300
    assert violation.metadata == {"path": "/x"} and violation.scope == "ip"


def test_rules_and_lists_are_read_through_from_the_engine():
    storage = rt.InMemoryStorage()
    one, two = rt.RateThrottleCore(storage), rt.RateThrottleCore(storage)
    for name in ("c", "a", "b"):
        one.add_rule(RateThrottleRule(name=name, limit=5, window=60))
    one.remove_rule("a")
    assert one.list_rules() == ["c", "b"] and list(one.rules) == ["c", "b"]
    assert one.get_rule("b") == RateThrottleRule(name="b", limit=5, window=60)
    assert isinstance(one.get_rule("b").window, int)
    # Lists live in the shared storage only: a change through one core shows in the other.
    two.add_to_whitelist("friend")
    two.add_to_blacklist("foe", duration=60)
    assert one.whitelist == {"friend"} and one.blacklist == {"foe"}
    assert one.get_status()["whitelist_size"] == 1
    two.remove_from_blacklist("foe")
    assert one.blacklist == set()

"""`ratethrottle.ddos` and `ratethrottle.analytics`: the original's API on the Rust engine,
blocks on a limiter's blacklist (shared through Redis), escalation, sanitizing and exports;
and, where ratethrottle 1.4.0 can be fetched, the same traffic through both."""

import csv
import json
import os
import subprocess
import sys

import pytest

import ratethrottle as rt
from ratethrottle.ddos import DDoSProtection, TrafficPattern
from ratethrottle.analytics import RateThrottleAnalytics

from conftest import original_module

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BROWSER = "Mozilla/5.0"


def attack(ddos, identifier, requests, start=T0, gap=0.01, agent=None, endpoint="/x"):
    return [
        ddos.analyze_traffic(identifier, endpoint, timestamp=start + i * gap, user_agent=agent)
        for i in range(requests)
    ]


# DDoSProtection


@pytest.mark.parametrize(
    "config, key",
    [
        ({"threshold": -1}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"window": 0}, "window"),
        ({"suspicious_threshold": 1.5}, "suspicious_threshold"),
        ({"suspicious_threshold": "high"}, "suspicious_threshold"),
        ({"block_duration": -5}, "block_duration"),
        ({"max_tracked_identifiers": 999}, "max_tracked_identifiers"),
        ({"block_increment": 0.5}, "block_increment"),
        ({"burst_window": 0}, "burst_window"),
    ],
)
def test_bad_settings_name_the_key_and_range(config, key):
    with pytest.raises(rt.ConfigurationError) as error:
        DDoSProtection(config)
    assert f"ddos_protection.{key} must be" in str(error.value)


def test_an_unknown_setting_is_refused_with_the_known_ones():
    with pytest.raises(rt.ConfigurationError, match='unknown DDoS protection setting "treshold"'):
        DDoSProtection({"treshold": 10})


def test_defaults_and_attributes_are_the_originals():
    ddos = DDoSProtection()
    for key, value in {"enabled": True, "threshold": 10000, "window": 60, "auto_block": True,
                       "block_duration": 3600, "suspicious_threshold": 0.5,
                       "max_unique_endpoints": 50, "burst_threshold": 100, "burst_window": 10,
                       "min_interval_threshold": 0.1, "whitelist_on_good_behavior": True,
                       "good_behavior_threshold": 1000,
                       "max_tracked_identifiers": 100_000}.items():
        assert ddos.config[key] == value, key
    assert (ddos.threshold, ddos.window, ddos.auto_block) == (10000, 60, True)
    pattern = ddos.analyze_traffic("10.0.0.1", "/", user_agent=BROWSER)
    assert isinstance(pattern, TrafficPattern)
    assert set(pattern.to_dict()) == {"identifier", "request_rate", "unique_endpoints",
                                      "suspicious_score", "is_suspicious", "analysis_window",
                                      "timestamp", "metadata"}
    assert pattern.metadata == {}
    assert DDoSProtection({"enabled": False}).analyze_traffic("a", "/").suspicious_score == 0.0


def test_an_attacker_is_blocked_on_the_limiters_blacklist_and_a_browser_is_not():
    limiter = rt.RateThrottleCore()
    limiter.add_rule(rt.RateThrottleRule(name="api", limit=1000, window=60))
    ddos = DDoSProtection({"suspicious_threshold": 0.1, "block_duration": 60}, limiter=limiter)
    patterns = attack(ddos, "203.0.113.9", 3)
    assert [p.is_suspicious for p in patterns] == [True] * 3
    assert patterns[0].metadata == {"no_user_agent": 0.1}
    assert ddos.is_blocked("203.0.113.9")
    # The limiter enforces it: its checks refuse the client.
    assert not limiter.check_rate_limit("203.0.113.9", "api").allowed
    assert ddos.is_blocked("203.0.113.9", now=T0 + 10)
    assert not ddos.is_blocked("203.0.113.9", now=limiter._now() + 61)
    browser = attack(ddos, "198.51.100.1", 5, gap=2.0, agent=BROWSER)
    assert not any(p.is_suspicious for p in browser)
    assert not ddos.is_blocked("198.51.100.1")
    stats = ddos.get_statistics()
    assert (stats["auto_blocked"], stats["blocked_ips"], stats["monitored_identifiers"]) == (1, 1, 2)
    assert stats["suspicious_detected"] == stats["suspicious_count"] == 3
    assert stats["detection_rate"] == pytest.approx(3 / 8 * 100)
    assert stats["recent_suspicious"][-1]["identifier"] == "203.0.113.9"
    assert stats["recent_patterns"] == stats["recent_suspicious"]
    assert ddos.get_pattern_for_identifier("203.0.113.9") is patterns[-1]
    assert ddos.get_pattern_for_identifier("198.51.100.1") is None
    report = ddos.export_report()
    assert report["blocked_ips"] == ["203.0.113.9"] == ddos.get_blocked_ips()
    assert len(report["suspicious_patterns"]) == 3
    json.dumps(report)
    assert ddos.unblock("203.0.113.9") and not ddos.unblock_ip("203.0.113.9")
    assert limiter.check_rate_limit("203.0.113.9", "api").allowed
    ddos.reset_statistics()
    assert ddos.get_statistics()["total_analyzed"] == 0
    ddos.clear_history()
    assert ddos.get_statistics()["monitored_identifiers"] == 0


def test_blocks_escalate_for_repeat_offenders_up_to_the_cap():
    clock = rt.ManualClock(T0)
    ddos = DDoSProtection({"suspicious_threshold": 0.1, "block_duration": 60,
                           "max_block_duration": 200}, clock=clock)
    durations = []
    for _ in range(4):
        attack(ddos, "203.0.113.7", 3, start=clock.time())
        (_, expires_at), = ddos._native.blocks()
        durations.append(round(expires_at - clock.time()))
        clock.advance(expires_at - clock.time() + 1)
        assert not ddos.is_blocked("203.0.113.7")
    assert durations == [60, 120, 200, 200]
    fixed = DDoSProtection({"suspicious_threshold": 0.1, "block_duration": 60,
                            "block_increment": 1}, clock=clock)
    attack(fixed, "x", 3, start=clock.time())
    (_, expires_at), = fixed._native.blocks()
    assert round(expires_at - clock.time()) == 60


def test_whitelisting_exempts_and_a_good_record_is_counted():
    ddos = DDoSProtection({"good_behavior_threshold": 3, "suspicious_threshold": 0.5})
    ddos.block_ip("10.0.0.5", 60)
    ddos.whitelist_ip("10.0.0.5")
    assert not ddos.is_blocked("10.0.0.5")
    assert ddos.analyze_traffic("10.0.0.5", "/").metadata == {"whitelisted": 1.0}
    assert ddos.remove_from_whitelist("10.0.0.5")
    assert not ddos.remove_from_whitelist("10.0.0.5")
    good = attack(ddos, "10.0.0.6", 4, gap=5.0, agent=BROWSER)
    assert good[-1].metadata == {"whitelisted": 1.0}
    stats = ddos.get_statistics()
    assert (stats["false_positives_prevented"], stats["whitelisted_ips"]) == (1, 1)
    ddos.block_ip("10.0.0.7")  # no duration: until unblocked
    assert ddos.is_blocked("10.0.0.7", now=T0 + 10**9)


def test_a_block_made_in_one_process_is_enforced_in_another(redis_url, redis_prefix):
    """Process A (a subprocess) sees an attack and blocks; this process never saw the client
    and refuses it, through the shared Redis."""
    code = f"""
import ratethrottle as rt
core = rt.RateThrottleCore(rt.RedisStorage({redis_url!r}, key_prefix={redis_prefix!r}))
ddos = rt.DDoSProtection({{"suspicious_threshold": 0.1, "block_duration": 600}}, limiter=core)
for i in range(3):
    ddos.analyze_traffic("203.0.113.50", "/login", timestamp=1767225600 + i * 0.01)
print(ddos.is_blocked("203.0.113.50"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "True", out.stderr
    core = rt.RateThrottleCore(rt.RedisStorage(redis_url, key_prefix=redis_prefix))
    core.add_rule(rt.RateThrottleRule(name="api", limit=100, window=60))
    ddos = DDoSProtection(limiter=core)
    assert ddos.is_blocked("203.0.113.50")
    assert not core.check_rate_limit("203.0.113.50", "api").allowed
    assert core.check_rate_limit("203.0.113.51", "api").allowed


def test_the_adapters_consult_a_ddos_protection():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    limiter = rt.RateThrottleCore()
    ddos = DDoSProtection({"suspicious_threshold": 0.1, "block_duration": 60}, limiter=limiter)
    rate_limiter = rt.FlaskRateLimiter(app, limiter=limiter, ddos=ddos)

    @app.route("/data")
    @rate_limiter.limit("100/minute")
    def data():
        return "ok"

    client = app.test_client()
    # (Werkzeug's test client sends a User-Agent unless told not to.)
    attacker = [client.get("/data", headers={"User-Agent": ""},
                           environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code
                for _ in range(4)]
    assert attacker == [200, 200, 403, 403]
    browser = [client.get("/data", headers={"User-Agent": BROWSER},
                          environ_base={"REMOTE_ADDR": "10.1.1.2"}).status_code
               for _ in range(4)]
    assert browser == [200] * 4
    assert ddos.is_blocked("10.1.1.1")


# RateThrottleAnalytics


def test_analytics_settings_and_docs_names():
    with pytest.raises(rt.ConfigurationError, match="max_history must be positive"):
        RateThrottleAnalytics(max_history=0)
    clock = rt.ManualClock(T0)
    analytics = RateThrottleAnalytics(max_history=3, clock=clock)
    for i in range(5):
        analytics.record_request(f"10.0.0.{i}", "api", allowed=i % 2 == 0)
    summary = analytics.get_summary()
    assert summary["total_requests"] == 5
    assert summary["records_stored"] == {"requests": 3, "violations": 0}
    stats = analytics.get_rule_statistics()
    assert list(stats) == ["api"]
    assert stats["api"]["total_requests"] == 3
    # The docs read totals from it; they are not keys.
    assert (stats["total_requests"], stats["violations"]) == (3, 1)
    assert stats["block_rate"] == pytest.approx(100 / 3)
    with pytest.raises(KeyError):
        stats["nothing"]
    v = rt.RateThrottleViolation(identifier="192.168.1.100", rule_name="api_limit",
                                 timestamp="2026-01-01T00:30:00+00:00", requests_made=105,
                                 limit=100, blocked_until=None, retry_after=300, scope="ip",
                                 metadata={"token": "secret", "endpoint": "/x"})
    analytics.record_violation(v)
    analytics.record_violation({"identifier": "user-123456789", "rule_name": "api",
                                "timestamp": "not a time", "tenant": "acme"})
    analytics.record_violation(42)  # logged, not raised
    top = analytics.get_top_violators(limit=10)
    assert top[0] == {"identifier": "192.168.1.100", "violations": 1, "count": 1}
    assert len(top) == 2
    clock.advance(3600)
    assert [t["identifier"] for t in analytics.get_top_violators(time_window=7200)] == ["192.168.1.100"]
    assert analytics.get_violation_timeline(hours=24) == {"2026-01-01 00:00": 1}
    assert analytics.get_violation_timeline(hours=24, granularity="minute") == {"2026-01-01 00:30": 1}
    violations = analytics.violations
    assert violations[0]["identifier"] == "192.168.1.xxx"
    assert violations[0]["metadata"] == {"token": "***REDACTED***", "endpoint": "/x"}
    assert violations[1]["identifier"] == "user...6789"
    assert violations[1]["timestamp"] == "not a time" and violations[1]["tenant"] == "acme"


def test_ten_thousand_violations_export_and_read_back(tmp_path):
    clock = rt.ManualClock(T0)
    analytics = RateThrottleAnalytics(max_history=10_000, clock=clock)
    for i in range(10_000):
        analytics.record_violation({"identifier": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                                    "rule_name": 'api, "v2"', "timestamp": T0 + i,
                                    "requests_made": i, "limit": 100, "scope": "ip",
                                    "note": f"line\n{i}"})
        analytics.record_request("2001:db8::1", "api", allowed=i % 4 != 0,
                                 metadata={"Authorization": "Bearer x"})
    analytics.export_csv(str(tmp_path / "v.csv"), format="csv")
    with open(tmp_path / "v.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10_000
    assert rows[513]["identifier"] == "10.0.2.xxx"
    assert rows[513]["rule_name"] == 'api, "v2"' and rows[513]["note"] == "line\n513"
    assert rows[513]["requests_made"] == "513"
    assert "_original_identifier" not in rows[0]
    analytics.export_csv(str(tmp_path / "r.csv"), data_type="requests")
    with open(tmp_path / "r.csv", newline="") as f:
        requests = list(csv.DictReader(f))
    assert requests[0] == {"allowed": "False", "identifier": "2001:db8::/64", "rule": "api",
                           "timestamp": requests[0]["timestamp"]}
    analytics.export_report(str(tmp_path / "out" / "report.json"), include_raw_data=True,
                            format="json")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["total_violations"] == 10_000
    assert report["rule_statistics"]["api"]["violation_rate"] == 25.0
    assert len(report["raw_data"]["violations"]) == 500
    assert report["raw_data"]["requests"][0]["metadata"] == {"Authorization": "***REDACTED***"}
    with pytest.raises(ValueError):
        analytics.export_csv(str(tmp_path / "x.csv"), data_type="everything")
    with pytest.raises(IOError):
        analytics.export_report(str(tmp_path / "v.csv" / "under-a-file.json"))
    clock.advance(40 * 86400)
    assert analytics.clear_old_data(days=30) == 20_000
    analytics.reset()
    assert analytics.get_summary()["total_requests"] == 0


def test_sanitizing_off_keeps_identifiers():
    analytics = RateThrottleAnalytics(sanitize_data=False, enable_metadata=False)
    analytics.record_request("10.0.0.1", "api", True, {"password": "p"})
    assert analytics.requests[0]["identifier"] == "10.0.0.1"
    assert "metadata" not in analytics.requests[0]


# The same traffic through ratethrottle 1.4.0


@pytest.fixture(scope="module")
def original_ddos():
    return original_module("ddos")


def test_the_same_traffic_scores_as_in_1_4_0(original_ddos):
    """Floods, scans, bursts, bots and browsers, all within one analysis window: the bounded
    summary counts as 1.4.0's log does, so every score and verdict is the same."""
    config = {"threshold": 300, "window": 60, "burst_threshold": 40, "burst_window": 10,
              "max_unique_endpoints": 20, "auto_block": False}
    ours = DDoSProtection(config)
    theirs = original_ddos.DDoSProtection(config)
    traffic = []
    for i in range(400):  # a flood: 400 in 20 s, no user agent
        traffic.append(("198.51.100.1", "/api", T0 + i * 0.05, None))
    for i in range(60):  # a scan: 60 endpoints, a crawler's agent, one a second
        traffic.append(("198.51.100.2", f"/page/{i}", T0 + i, "SomeCrawler/1.0"))
    for i in range(30):  # a browser, every 1.5 s
        traffic.append(("198.51.100.3", f"/page/{i % 4}", T0 + i * 1.5, BROWSER))
    for i in range(50):  # a bot in bursts: 10 at once every 5 s
        traffic.append(("198.51.100.4", "/login", T0 + (i // 10) * 5 + (i % 10) * 0.001, BROWSER))
    traffic.sort(key=lambda r: r[2])
    compared = 0
    for identifier, endpoint, at, agent in traffic:
        a = ours.analyze_traffic(identifier, endpoint, timestamp=at, user_agent=agent)
        b = theirs.analyze_traffic(identifier, endpoint, timestamp=at, user_agent=agent)
        assert a.is_suspicious == b.is_suspicious, (identifier, at, a, b)
        assert a.suspicious_score == pytest.approx(b.suspicious_score, abs=1e-9), (identifier, at)
        assert set(a.metadata) == set(b.metadata), (identifier, at, a.metadata, b.metadata)
        assert a.request_rate == pytest.approx(b.request_rate)
        compared += 1
    assert compared == 540

"""
The adaptive limiter (issue 20): the original's names, defaults and result keys; the same
numbers as ratethrottle 1.4.0 for the same traffic; exact limits under threads and across
processes sharing Redis; callbacks that cannot break a request; model files; the adapters.
"""

import inspect
import json
import threading

import pytest

import ratethrottle as rt
from ratethrottle.adaptive import AdaptiveRateLimiter, UserProfile

from conftest import original_module, run_processes

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a whole minute
RESULT_KEYS = {"allowed", "adjusted_limit", "remaining", "trust_score", "anomaly_score",
               "confidence", "reason", "base_limit", "retry_after"}


def adaptive(**kwargs):
    clock = rt.ManualClock(T0)
    return AdaptiveRateLimiter(clock=clock, **kwargs), clock


@pytest.fixture(scope="module")
def original_adaptive():
    return original_module("adaptive")


def test_names_defaults_and_keys_are_the_originals(original_adaptive):
    ours = inspect.signature(AdaptiveRateLimiter.__init__).parameters
    theirs = inspect.signature(original_adaptive.AdaptiveRateLimiter.__init__).parameters
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
    assert list(ours)[: len(theirs)] == list(theirs), "the same positional order"
    assert rt.AdaptiveRateLimiter is AdaptiveRateLimiter and rt.UserProfile is UserProfile
    limiter, _ = adaptive()
    result = limiter.check_adaptive("user_123")
    assert set(result) == RESULT_KEYS
    assert result["allowed"] and result["reason"] == "allowed" and result["retry_after"] == 0
    assert (result["adjusted_limit"], result["base_limit"]) == (87, 100)
    assert set(limiter.get_user_profile("user_123")) >= {
        "identifier", "first_seen", "last_seen", "age_days", "request_count", "mean_rate",
        "std_rate", "trust_score", "violation_count", "good_behavior_days", "current_limit",
        "metadata"}
    assert limiter.get_user_profile("nobody") is None
    stats = limiter.get_statistics()
    assert {"total_requests", "anomalies_detected", "limits_adjusted", "users_tracked",
            "configuration"} <= set(stats)
    assert stats["configuration"]["base_limit"] == 100
    assert repr(limiter) == "AdaptiveRateLimiter(base_limit=100, users=1, anomalies=0)"
    profile = UserProfile(identifier="u", first_seen=1.0)
    assert (profile.trust_score, profile.std_rate, profile.request_rates.maxlen) == (0.5, 1.0, 100)


def test_the_same_traffic_gives_the_same_numbers_as_1_4_0(original_adaptive, monkeypatch):
    """A client ramping up within one window, and a steady one: every decision, limit, trust,
    anomaly score and confidence as 1.4.0 computes them (its check is exact when one thread
    asks)."""
    now = [float(T0)]

    class FakeTime:
        @staticmethod
        def time():
            return now[0]

    monkeypatch.setattr(original_adaptive, "time", FakeTime)
    theirs = original_adaptive.AdaptiveRateLimiter(base_limit=20)
    ours, clock = adaptive(base_limit=20)
    compared = 0
    # 30 requests of one client a second apart, then 40 of another at once: within one window.
    traffic = [("ramp", T0 + i) for i in range(30)] + [("rush", T0 + 40.5)] * 40
    for identifier, at in traffic:
        now[0] = float(at)
        clock.set(float(at))
        a = ours.check_adaptive(identifier)
        b = theirs.check_adaptive(identifier)
        for key in ("allowed", "adjusted_limit", "remaining", "reason", "base_limit",
                    "retry_after"):
            if key == "retry_after" and not b["allowed"]:
                # 1.4.0 says "until the current window ends", too soon for a sliding counter
                # (the previous window still weighs in then); ours is the exact wait, rounded up.
                assert a[key] >= max(1, b[key]), (identifier, at, a, b)
                continue
            assert a[key] == b[key], (key, identifier, at, a, b)
        for key in ("trust_score", "anomaly_score", "confidence"):
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (key, identifier, at)
        compared += 1
    assert compared == 70
    assert any(not r["allowed"] for r in [ours.check_adaptive("rush")])
    ours_profile = ours.get_user_profile("ramp")
    theirs_profile = theirs.get_user_profile("ramp")
    for key in ("request_count", "violation_count", "current_limit"):
        assert ours_profile[key] == theirs_profile[key], key
    for key in ("mean_rate", "std_rate", "trust_score"):
        assert ours_profile[key] == pytest.approx(theirs_profile[key], rel=1e-9)


def test_each_check_admits_exactly_up_to_its_limit():
    limiter, _ = adaptive(base_limit=40)
    admitted = 0
    for _ in range(120):
        result = limiter.check_adaptive("c")
        assert result["allowed"] == (admitted < result["adjusted_limit"]), (admitted, result)
        admitted += result["allowed"]
        if not result["allowed"]:
            assert result["retry_after"] >= 1 and result["remaining"] == 0
            assert result["reason"] in ("rate_limit_exceeded", "anomaly_detected")
    assert limiter.get_user_profile("c")["violation_count"] == 120 - admitted


def test_eight_threads_admit_exactly_one_limit():
    # Trust off and the multipliers pinned: every check asks for 60.
    limiter, _ = adaptive(base_limit=100, trust_enabled=False, min_multiplier=0.6,
                          max_multiplier=0.6)
    admitted = []

    def worker():
        count = 0
        for _ in range(100):
            result = limiter.check_adaptive("shared")
            assert result["adjusted_limit"] == 60
            count += result["allowed"]
        admitted.append(count)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 60
    assert limiter.get_statistics()["total_requests"] == 800


def test_four_processes_on_redis_admit_exactly_the_same_limit(redis_url, redis_prefix):
    """Profiles are per process; the count is the fleet's: four processes passing the same
    limit (60) admit 60 together."""
    code = f"""
import ratethrottle as rt
limiter = rt.AdaptiveRateLimiter(base_limit=100, trust_enabled=False, min_multiplier=0.6,
                                  max_multiplier=0.6,
                                  storage=rt.RedisStorage({redis_url!r}, key_prefix={redis_prefix!r}))
print(sum(limiter.check_adaptive("fleet-client")["allowed"] for _ in range(50)))
"""
    counts = [int(out) for out in run_processes(code, 4)]
    assert sum(counts) == 60, counts


def test_callbacks_get_the_documented_info_and_cannot_break_a_request(caplog):
    seen, changes = [], []

    def on_anomaly(info):
        seen.append(info)
        raise RuntimeError("a buggy alert")

    def on_trust_change(identifier, trust):
        changes.append((identifier, trust))
        raise RuntimeError("a buggy hook")

    limiter, clock = adaptive(base_limit=1000, on_anomaly=on_anomaly,
                              on_trust_change=on_trust_change)
    for _ in range(100):  # a steady 10 per minute
        limiter.check_adaptive("steady")
        clock.advance(6)
    assert not seen
    results = [limiter.check_adaptive("steady") for _ in range(60)]  # then a burst
    assert seen, "the burst is anomalous"
    assert set(seen[0]) == {"identifier", "anomaly_score", "current_rate", "expected_rate",
                            "timestamp"}
    assert seen[0]["current_rate"] > seen[0]["expected_rate"]
    assert any(r["anomaly_score"] > 3.0 for r in results)
    assert any(r["adjusted_limit"] == 500 for r in results), "× 0.3, at the floor"
    assert "Error in on_anomaly callback: RuntimeError: a buggy alert" in caplog.text
    limiter.update_trust_score("steady", -0.2)
    assert changes[-1][0] == "steady"
    assert "Error in on_trust_change callback" in caplog.text
    # Set after construction, as attributes.
    limiter.on_anomaly = None
    assert limiter.on_anomaly is None
    limiter.check_adaptive("steady")


def test_trust_adjustments_clamp_and_unknown_clients_are_left_alone():
    limiter, _ = adaptive()
    limiter.update_trust_score("nobody", 0.1)  # 1.4.0 raises NameError here
    limiter.check_adaptive("u")
    limiter.update_trust_score("u", 5)
    assert limiter.get_user_profile("u")["trust_score"] == 1.0
    limiter.update_trust_score("u", -0.25)
    assert limiter.get_user_profile("u")["trust_score"] == 0.75
    limiter.reset_user("u")
    assert limiter.get_user_profile("u") is None


def test_metadata_is_kept_bounded():
    limiter, _ = adaptive()
    limiter.check_adaptive("m", {"plan": "pro", "when": object()})
    metadata = limiter.get_user_profile("m")["metadata"]
    assert metadata["plan"] == "pro" and isinstance(metadata["when"], str)
    limiter.check_adaptive("m", {f"k{i}": i for i in range(100)})
    assert len(limiter.get_user_profile("m")["metadata"]) == 32
    limiter.check_adaptive("m", {"huge": "x" * 5000})
    assert "huge" not in limiter.get_user_profile("m")["metadata"]
    limiter.check_adaptive(None)  # the original keys by anything; str(None) here
    assert limiter.get_user_profile("None") is not None


def test_profiles_are_bounded_under_a_flood():
    limiter, clock = adaptive(max_profiles=1000)
    for n in range(20_000):
        limiter.check_adaptive(f"flood-{n}")
        clock.advance(0.001)
    stats = limiter.get_statistics()
    assert stats["profiles"] <= 1000 + 64 and stats["users_tracked"] == 20_000


def test_a_model_round_trips_and_a_corrupt_file_changes_nothing(tmp_path):
    limiter, clock = adaptive()
    for i in range(25):
        limiter.check_adaptive("alice", {"plan": "pro"})
        if i % 5 == 0:
            limiter.check_adaptive("bob")
        clock.advance(1)
    path = tmp_path / "models" / "adaptive_model.json"
    limiter.export_model(str(path))
    model = json.loads(path.read_text())
    assert model["version"] == "2" and set(model["profiles"]) == {"alice", "bob"}
    restored, restored_clock = adaptive()
    restored_clock.set(clock.time())
    restored.load_model(str(path))
    for who in ("alice", "bob"):
        a, b = limiter.get_user_profile(who), restored.get_user_profile(who)
        for key in ("request_count", "trust_score", "mean_rate", "current_limit", "metadata"):
            assert a[key] == b[key], (who, key)
    assert restored.get_statistics()["total_requests"] == 30
    for corrupt in ("{not json", '{"version": "9", "profiles": {}}',
                    '{"version": "2", "profiles": {"x": {"identifier": "x"}}}'):
        path.write_text(corrupt)
        with pytest.raises(ValueError, match="the model is unchanged"):
            restored.load_model(str(path))
        assert restored.get_user_profile("x") is None
        assert restored.get_statistics()["profiles"] == 2
    with pytest.raises(FileNotFoundError):
        restored.load_model(str(tmp_path / "missing.json"))


def test_models_exported_by_1_4_0_load(original_adaptive, tmp_path):
    theirs = original_adaptive.AdaptiveRateLimiter(base_limit=100)
    for _ in range(12):
        theirs.check_adaptive("legacy", {"tier": "gold"})
    path = tmp_path / "legacy.json"
    theirs.export_model(str(path))
    ours = AdaptiveRateLimiter(base_limit=100)
    ours.load_model(str(path))
    profile = ours.get_user_profile("legacy")
    assert profile["request_count"] == 12 and profile["metadata"] == {"tier": "gold"}
    assert profile["trust_score"] == pytest.approx(theirs.user_profiles["legacy"].trust_score)


def test_settings_out_of_range_are_refused():
    with pytest.raises(rt.ConfigurationError, match="adaptive.base_limit"):
        AdaptiveRateLimiter(base_limit=0)
    with pytest.raises(rt.ConfigurationError, match="adaptive.learning_rate"):
        AdaptiveRateLimiter(learning_rate=2)
    with pytest.raises(rt.ConfigurationError, match="adaptive.max_multiplier"):
        AdaptiveRateLimiter(min_multiplier=2, max_multiplier=1)
    with pytest.raises(rt.ConfigurationError, match="adaptive.window"):
        AdaptiveRateLimiter(window=0)


def test_the_adapters_limit_a_route_adaptively():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    limiter = rt.FlaskRateLimiter(app)
    learned = AdaptiveRateLimiter(base_limit=10)

    @app.route("/data")
    @limiter.limit(learned)
    def data():
        return "ok"

    client = app.test_client()
    codes = [client.get("/data").status_code for _ in range(9)]
    assert codes == [200] * 8 + [429], "a new client: 10 × 1.75 × 0.5 = 8"
    assert learned.get_user_profile("127.0.0.1")["request_count"] == 9

    from fastapi import FastAPI, Depends
    from fastapi.testclient import TestClient

    api = FastAPI()
    fast = rt.FastAPIRateLimiter()
    fast.init_app(api)
    other = AdaptiveRateLimiter(base_limit=4)

    @api.get("/items", dependencies=[Depends(fast.limit(other))])
    async def items():
        return {"ok": True}

    test_client = TestClient(api)
    codes = [test_client.get("/items").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429], "4 × 1.75 × 0.5 = 3.5 → 3, above the floor of 2"

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    third = AdaptiveRateLimiter(base_limit=2)
    wrapped = rt.WSGIRateLimitMiddleware(wsgi_app, rules=[third])
    statuses = []
    for _ in range(3):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "10.9.8.7"}
        wrapped(environ, lambda status, headers, exc=None: statuses.append(status))
    assert [s.split()[0] for s in statuses] == ["200", "429", "429"], "2 × 1.75 × 0.5 → 1"


def test_the_configuration_makes_a_persisting_limiter(tmp_path):
    model = tmp_path / "models" / "adaptive_model.json"
    path = tmp_path / "rt.yaml"
    path.write_text(
        "adaptive:\n  enabled: true\n  base_limit: 60\n  window: 30\n  learning_rate: 0.05\n"
        f"  persistence:\n    enabled: true\n    filepath: {model}\n    auto_save_interval: 0\n"
    )
    config = rt.ConfigManager(str(path))
    first = config.create_adaptive_limiter()
    assert (first.base_limit, first.window, first.learning_rate) == (60, 30, 0.05)
    assert first.check_adaptive("u")["adjusted_limit"] == 52  # 60 × 1.75 × 0.5 = 52.5
    first.stop_persisting()
    assert json.loads(model.read_text())["profiles"]["u"]["request_count"] == 1
    second = config.create_adaptive_limiter()
    assert second.get_user_profile("u")["request_count"] == 1, "loaded on start"
    second.stop_persisting()
    model.write_text("{broken")
    with pytest.raises(ValueError, match="adaptive_model.json"):
        config.create_adaptive_limiter()

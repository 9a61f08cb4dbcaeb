"""ConfigManager over the Rust configuration: defaults, files, errors with lines, RT_*."""

from __future__ import annotations

import pytest

import ratethrottle as rt

GOOD = """\
storage:
  type: memory
rules:
  - name: api
    limit: 5
    window: 60
whitelist: [friend]
blacklist:
  - foe
"""


def test_defaults_and_dotted_access():
    config = rt.ConfigManager()
    assert config.get("storage.type") == "memory"
    assert config.get("nope.key", 42) == 42
    assert all(isinstance(r, rt.RateThrottleRule) for r in config.get_rules())


def test_a_file_builds_a_limiter_with_rules_and_lists(tmp_path):
    path = tmp_path / "rt.yaml"
    path.write_text(GOOD)
    config = rt.ConfigManager(path)
    assert [r.name for r in config.get_rules()] == ["api"]
    limiter = config.create_limiter()
    assert sum(limiter.check_rate_limit("a", "api").allowed for _ in range(7)) == 5
    assert limiter.check_rate_limit("friend", "api").rule_name == "whitelist"
    assert limiter.check_rate_limit("foe", "api").rule_name == "blacklist"


def test_mistakes_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - name: api\n    limit: 5\n    window: 100/fortnight\n")
    with pytest.raises(rt.ConfigurationError, match=r"bad\.yaml.*line 4|bad\.yaml:4"):
        rt.ConfigManager(path)
    path.write_text("rules: [\n")
    with pytest.raises(rt.ConfigurationError, match="bad.yaml"):
        rt.ConfigManager(path)


def test_an_invalid_set_raises_and_changes_nothing(tmp_path):
    path = tmp_path / "rt.yaml"
    path.write_text(GOOD)
    config = rt.ConfigManager(path)
    with pytest.raises(rt.ConfigurationError):
        config.set("rules.0.limit", -3)
    assert config.get("rules.0.limit") == 5
    config.set("rules.0.limit", 9)
    assert config.get_rules()[0].limit == 9
    config.add_rule_config({"name": "login", "limit": 3, "window": 300})
    with pytest.raises(rt.ConfigurationError, match="already exists"):
        config.add_rule_config({"name": "login", "limit": 3, "window": 300})
    assert config.remove_rule_config("login") and not config.remove_rule_config("login")
    config.save_config()
    assert rt.ConfigManager(path).get("rules.0.limit") == 9


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("RT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RT_REDIS_KEY_PREFIX", "app1:")
    config = rt.ConfigManager()
    assert config.get("global.log_level") == "DEBUG"
    assert config.get("storage.key_prefix") == "app1:"
    monkeypatch.setenv("RT_ENABLED", "maybe")
    with pytest.raises(rt.ConfigurationError, match="RT_ENABLED"):
        rt.ConfigManager()


def test_a_missing_file_is_created_with_the_defaults(tmp_path):
    path = tmp_path / "new.yaml"
    config = rt.ConfigManager(path)
    assert path.exists() and config.get("storage.type") == "memory"

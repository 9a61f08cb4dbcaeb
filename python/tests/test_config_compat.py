"""The original's configuration API: RuleConfig, the section accessors, load_from_redis, and
files written by 1.4.0's ConfigManager."""

import json
import logging

import pytest

import ratethrottle as rt
from ratethrottle.config import ConfigManager, RuleConfig

# What 1.4.0's ConfigManager.DEFAULT_CONFIG holds (its `save_config` writes this).
ORIGINAL_DEFAULTS = """
storage:
  type: memory
  redis: {host: localhost, port: 6379, db: 0, password: null, key_prefix: 'ratethrottle:',
          max_connections: 50, socket_timeout: 5, socket_connect_timeout: 5,
          retry_on_timeout: true, health_check_interval: 30}
global: {enabled: true, default_strategy: sliding_counter, headers_enabled: true,
         log_violations: true, log_level: INFO}
rules:
- {name: default, limit: 1000, window: 3600, strategy: sliding_counter, scope: ip, block_duration: 300}
ddos_protection: {enabled: true, threshold: 10000, window: 60, auto_block: true, block_duration: 3600,
  suspicious_threshold: 0.5, max_unique_endpoints: 50, burst_threshold: 100, burst_window: 10,
  min_interval_threshold: 0.1, whitelist_on_good_behavior: true, good_behavior_threshold: 1000,
  max_tracked_identifiers: 100000}
adaptive: {enabled: false, base_limit: 100, window: 60, learning_rate: 0.1, anomaly_threshold: 3.0,
  trust_enabled: true, min_multiplier: 0.5, max_multiplier: 3.0,
  persistence: {enabled: false, filepath: models/adaptive_model.json, auto_save_interval: 3600,
                auto_load_on_start: true}}
websocket: {enabled: false, connections_per_minute: 60, messages_per_minute: 1000,
  max_concurrent_connections: 10, max_message_size: 65536, bytes_per_minute: null}
grpc: {enabled: false, requests_per_minute: 1000, concurrent_requests: 50, stream_messages_per_minute: 5000}
graphql: {enabled: false, queries_per_minute: 1000, mutations_per_minute: 100,
  subscriptions_per_minute: 50, max_complexity: 1000, max_depth: 15, field_limits: {}, field_costs: {}}
analytics: {enabled: true, max_history: 10000, enable_metadata: true, sanitize_data: true}
monitoring: {enabled: true, interval: 60, log_metrics: true, export_json: false,
  export_path: metrics/metrics.json}
alerting:
  enabled: false
  cooldown_seconds: 300
  thresholds: {block_rate_warning: 5.0, block_rate_critical: 20.0, violations_per_minute_warning: 50,
    violations_per_minute_critical: 200, ddos_score_warning: 0.5, ddos_score_critical: 0.8}
  slack: {enabled: false, webhook_url: '', channel: '#alerts', username: RateThrottle}
  webhook: {enabled: false, url: '', headers: {}, timeout: 10}
  email: {enabled: false, smtp_host: localhost, smtp_port: 587, use_tls: true, username: '',
    password: '', from_address: '', to_addresses: []}
  pagerduty: {enabled: false, routing_key: ''}
"""


def test_a_file_written_by_the_originals_config_manager_loads(tmp_path, caplog):
    path = tmp_path / "original.yaml"
    path.write_text(ORIGINAL_DEFAULTS)
    with caplog.at_level(logging.INFO, logger="ratethrottle.config"):
        config = ConfigManager(path)
    # Every section 1.4.0 writes is a feature now, or not enabled there.
    assert not [r for r in caplog.records if "not active yet" in r.getMessage()]
    assert any("ddos=config.create_ddos_protection(limiter)" in r.getMessage()
               for r in caplog.records)
    ddos = config.create_ddos_protection()
    assert ddos.config["threshold"] == config.get_ddos_config()["threshold"]
    assert config.create_analytics().max_history == 10000
    assert config.get_websocket_config()["max_message_size"] == 65536
    assert config.get_grpc_config()["stream_messages_per_minute"] == 5000
    assert config.get_graphql_config()["max_depth"] == 15
    assert config.get_analytics_config()["max_history"] == 10000
    assert config.get_ddos_config()["max_tracked_identifiers"] == 100000
    assert config.get_adaptive_config()["persistence"]["filepath"] == "models/adaptive_model.json"
    assert [r.name for r in config.get_rules()] == ["default"]


def test_rule_config_checks_as_the_original_did():
    rule = RuleConfig(name="api", limit=10, window=60, methods=["get"], paths=["/api"])
    assert rule.to_dict()["paths"] == ["/api"]
    limiter = rt.RateThrottleCore()
    limiter.add_rule(rule.to_rule())
    assert limiter.check_rate_limit("a", "api").remaining == 9
    cases = [
        (dict(name="", limit=1, window=1), "Rule name cannot be empty"),
        (dict(name="r", limit=0, window=1), "Rule 'r': limit must be positive, got 0"),
        (dict(name="r", limit=1, window=0), "Rule 'r': window must be positive, got 0"),
        (dict(name="r", limit=1, window=1, block_duration=-1), "Rule 'r': block_duration cannot be negative"),
        (dict(name="r", limit=1, window=1, scope="planet"), "Rule 'r': invalid scope 'planet'"),
        (dict(name="r", limit=1, window=1, strategy="magic"), "Rule 'r': invalid strategy 'magic'"),
        (dict(name="r", limit=5, window=1, burst=2), "Rule 'r': burst (2) cannot be less than limit (5)"),
        (dict(name="r", limit=1, window=1, methods=["FETCH"]), "Rule 'r': invalid HTTP methods: FETCH"),
        (dict(name="r", limit=2**70, window=1), "Rule 'r': Limit must be at most"),
    ]
    for kwargs, message in cases:
        with pytest.raises(rt.ConfigurationError) as raised:
            RuleConfig(**kwargs)
        assert str(raised.value).startswith(message), raised.value


def test_load_from_redis_merges_and_validates(redis_url, redis_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"{redis_prefix}config"
    config = ConfigManager()
    client.set(key, json.dumps({"ddos_protection": {"threshold": 50000}, "global": {"enabled": False}}))
    config.load_from_redis(client, key)
    assert config.get("ddos_protection.threshold") == 50000
    assert config.get("ddos_protection.window") == 60  # merged, not replaced
    assert config.get("global.enabled") is False
    client.set(key, "rules:\n  - {name: x, limit: -1, window: 60}\n")
    with pytest.raises(rt.ConfigurationError):
        config.load_from_redis(client, key)
    assert config.get("global.enabled") is False  # nothing changed
    client.set(key, "[1, 2]")
    with pytest.raises(rt.ConfigurationError, match="must be a mapping"):
        config.load_from_redis(client, key)
    with pytest.raises(rt.ConfigurationError, match="not found in Redis"):
        config.load_from_redis(client, f"{redis_prefix}missing")


def test_log_violations_logs_each_violation_at_info(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("rules:\n  - {name: api, limit: 1, window: 60}\n")
    limiter = ConfigManager(path).create_limiter()
    with caplog.at_level(logging.INFO, logger="ratethrottle.core"):
        limiter.check_rate_limit("10.0.0.1", "api")
        limiter.check_rate_limit("10.0.0.1", "api")
    assert [r.getMessage() for r in caplog.records if "Rate limit exceeded" in r.getMessage()] == [
        "Rate limit exceeded: 10.0.0.1 for rule api"
    ]
    path.write_text("global: {log_violations: false}\nrules:\n  - {name: api, limit: 1, window: 60}\n")
    quiet = ConfigManager(path).create_limiter()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ratethrottle.core"):
        quiet.check_rate_limit("10.0.0.1", "api")
        quiet.check_rate_limit("10.0.0.1", "api")
    assert not [r for r in caplog.records if "Rate limit exceeded" in r.getMessage()]

"""
`ConfigManager`: the YAML + `RT_*` environment configuration, read and validated by the same
Rust code as the `ratethrottle` command line (so a mistake is reported with its file and line).

    >>> from ratethrottle import ConfigManager
    >>> config = ConfigManager()                 # the built-in defaults + RT_* variables
    >>> config.get("storage.type")
    'memory'
    >>> limiter = config.create_limiter()        # rules, lists and storage applied
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Dict, FrozenSet, List, Optional, Union

if TYPE_CHECKING:
    from .adaptive import AdaptiveRateLimiter
    from .alerting import AlertDispatcher
    from .analytics import RateThrottleAnalytics
    from .ddos import DDoSProtection
    from .graphQL import GraphQLRateLimiter
    from .monitoring import RateThrottleMonitor
    from .websocket import WebSocketRateLimiter

from ._native import Configuration
from .core import STRATEGIES, RateThrottleCore, RateThrottleRule
from .exceptions import ConfigurationError
from .storage_backend import InMemoryStorage, RedisStorage, StorageBackend

logger = logging.getLogger(__name__)

__all__ = ["ConfigManager", "RuleConfig"]

_MISSING = object()


@dataclass
class RuleConfig:
    """
    One rule of a configuration, checked when made (the original's `RuleConfig`; the messages
    start as its do).

    Attributes:
        name: Rule identifier
        limit: Maximum requests allowed
        window: Time window in seconds
        scope: ip | user | endpoint | global
        strategy: token_bucket | leaky_bucket | fixed_window | sliding_window |
            sliding_counter | gcra
        block_duration: Seconds to block after the limit is exceeded
        burst: Bucket capacity (at least `limit`)
        paths: URL paths the rule is meant for (kept; the HTTP adapters bind rules to routes
            themselves)
        methods: HTTP methods the rule is meant for (kept, checked)

        >>> RuleConfig(name="api", limit=100, window=60).to_rule().burst
        100
    """

    name: str
    limit: int
    window: int
    scope: str = "ip"
    strategy: str = "sliding_counter"
    block_duration: int = 300
    burst: Optional[int] = None
    paths: Optional[List[str]] = None
    methods: Optional[List[str]] = None

    _VALID_SCOPES: ClassVar[FrozenSet[str]] = frozenset({"ip", "user", "endpoint", "global"})
    _VALID_STRATEGIES: ClassVar[FrozenSet[str]] = frozenset(STRATEGIES)
    _VALID_METHODS: ClassVar[FrozenSet[str]] = frozenset(
        {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("Rule name cannot be empty")
        for what in ("limit", "window", "block_duration", "burst"):
            value = getattr(self, what)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigurationError(f"Rule '{self.name}': {what} must be a number, got {value!r}")
        if self.limit <= 0:
            raise ConfigurationError(f"Rule '{self.name}': limit must be positive, got {self.limit}")
        if self.window <= 0:
            raise ConfigurationError(f"Rule '{self.name}': window must be positive, got {self.window}")
        if self.block_duration < 0:
            raise ConfigurationError(f"Rule '{self.name}': block_duration cannot be negative")
        if self.scope not in self._VALID_SCOPES:
            raise ConfigurationError(
                f"Rule '{self.name}': invalid scope '{self.scope}'. "
                f"Valid: {', '.join(sorted(self._VALID_SCOPES))}"
            )
        if self.strategy not in self._VALID_STRATEGIES:
            raise ConfigurationError(
                f"Rule '{self.name}': invalid strategy '{self.strategy}'. "
                f"Valid: {', '.join(sorted(self._VALID_STRATEGIES))}"
            )
        if self.burst is not None and self.burst < self.limit:
            raise ConfigurationError(
                f"Rule '{self.name}': burst ({self.burst}) cannot be less than limit ({self.limit})"
            )
        if self.methods:
            bad = [m for m in self.methods if str(m).upper() not in self._VALID_METHODS]
            if bad:
                raise ConfigurationError(f"Rule '{self.name}': invalid HTTP methods: {', '.join(bad)}")
        try:
            self.to_rule()
        except Exception as error:  # the engine's own checks (e.g. limits past 2**64)
            raise ConfigurationError(f"Rule '{self.name}': {error}") from None

    def to_dict(self) -> Dict[str, Any]:
        """The rule as a dict (as in a configuration file)."""
        return asdict(self)

    def to_rule(self) -> RateThrottleRule:
        """The rule as a RateThrottleRule, ready for `RateThrottleCore.add_rule`."""
        return RateThrottleRule(
            name=self.name,
            limit=self.limit,
            window=self.window,
            scope=self.scope,
            block_duration=self.block_duration,
            strategy=self.strategy,
            burst=self.burst,
        )


def _log_violation(violation: Any) -> None:
    logging.getLogger("ratethrottle.core").info(
        "Rate limit exceeded: %s for rule %s", violation.identifier, violation.rule_name
    )


def _configured_storage(configuration: Configuration) -> StorageBackend:
    """The storage a configuration's `storage` section names."""
    native = configuration.connect_store()
    if native.kind == "redis":
        return RedisStorage._of_native(native, native.get_info().get("key_prefix", "ratethrottle:"))
    return InMemoryStorage._of_native(native)


class ConfigManager:
    """
    The configuration, with the original's methods (`get`, `set`, `get_rules`,
    `get_storage_config`, `add_rule_config`, `save_config`, ...).

    Load order: the built-in defaults, or the YAML file `config_file`; then the `RT_*`
    environment variables (`RT_STORAGE_TYPE=redis`, `RT_REDIS_URL`, ...). A file that does not
    exist is created with the commented defaults.

    Raises:
        ConfigurationError: If the file cannot be read or the configuration is invalid; the
            message names the file and line
    """

    def __init__(self, config_file: Optional[Union[str, Path]] = None) -> None:
        self.config_file = Path(config_file) if config_file else None
        if self.config_file is not None and not self.config_file.exists():
            self._native = Configuration.load(None)
            self.save_config(self.config_file)
            logger.info("Configuration file not found; wrote defaults to %s", self.config_file)
        else:
            self._native = Configuration.load(self.config_file)
        self._refresh()

    def _refresh(self) -> None:
        self.config: Dict[str, Any] = json.loads(self._native.to_json())
        for warning in self._native.warnings:
            logger.warning("%s", warning)
        if self.config.get("ddos_protection", {}).get("enabled") and "ddos_protection" in self._native.text:
            logger.info(
                "ddos_protection is enabled: the Python adapters analyse traffic when given "
                "ddos=config.create_ddos_protection(limiter)"
            )

    def load_config(self) -> None:
        """Reads the file again (a manual hot reload); on error the current one stays."""
        if not self.config_file:
            raise ConfigurationError("No configuration file specified")
        self._native = Configuration.load(self.config_file)
        self._refresh()
        logger.info("Configuration reloaded")

    def validate(self) -> None:
        """Checks the configuration (it is checked on every change, so this passes)."""
        Configuration.from_text(self._native.text, self._native.origin)

    # Sections

    def _section(self, name: str) -> Dict[str, Any]:
        return dict(self.config.get(name, {}))

    def get_storage_config(self) -> Dict[str, Any]:
        """The `storage` section (secrets masked)."""
        return self._section("storage")

    def get_global_config(self) -> Dict[str, Any]:
        """The `global` section."""
        return self._section("global")

    def get_ddos_config(self) -> Dict[str, Any]:
        """The `ddos_protection` section."""
        return self._section("ddos_protection")

    def get_adaptive_config(self) -> Dict[str, Any]:
        """The `adaptive` section."""
        return self._section("adaptive")

    def get_monitoring_config(self) -> Dict[str, Any]:
        """The `monitoring` section."""
        return self._section("monitoring")

    def get_alerting_config(self) -> Dict[str, Any]:
        """The `alerting` section (secrets masked)."""
        return self._section("alerting")

    def get_websocket_config(self) -> Dict[str, Any]:
        """The `websocket` section (`create_websocket_limiter` applies it)."""
        return self._section("websocket")

    def get_grpc_config(self) -> Dict[str, Any]:
        """The `grpc` section (`create_grpc_interceptor` applies it)."""
        return self._section("grpc")

    def get_graphql_config(self) -> Dict[str, Any]:
        """The `graphql` section (`create_graphql_limiter` applies it)."""
        return self._section("graphql")

    def get_analytics_config(self) -> Dict[str, Any]:
        """The `analytics` section (kept and validated; analytics are not built yet)."""
        return self._section("analytics")

    def load_from_redis(self, redis_client: Any, key: str = "ratethrottle:config") -> None:
        """
        Merges the YAML or JSON document stored at `key` over this configuration (only the
        keys that differ need to be there), re-applies the `RT_*` variables and validates:
        the distributed hot-reload path. On any error nothing changes.

        Args:
            redis_client: A redis-py client (anything with `get(key)`), or a Redis URL
            key: The key holding the document

        Raises:
            ConfigurationError: If the key cannot be read or is missing, the document is not a
                mapping, or the result is invalid
        """
        if isinstance(redis_client, str):
            import redis

            redis_client = redis.Redis.from_url(redis_client)
        try:
            raw = redis_client.get(key)
        except Exception as exc:
            raise ConfigurationError(f"Failed to read config from Redis key '{key}': {exc}") from exc
        if raw is None:
            raise ConfigurationError(f"Config key '{key}' not found in Redis")
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigurationError(f"Failed to parse Redis config document: {exc}") from None
        self._native = self._native.merged(raw, f"redis key '{key}'")
        self._refresh()
        logger.info("Configuration merged from Redis key '%s'", key)

    def get_rules(self) -> List[RateThrottleRule]:
        """The rules as RateThrottleRule instances (with `global.default_strategy`)."""
        return [RateThrottleRule(**kwargs) for kwargs in self._native.rules()]

    # Dotted access

    def get(self, key: str, default: Any = None) -> Any:
        """A value by dotted path: `config.get("storage.type")`, `config.get("rules.0.limit")`."""
        node: Any = self.config
        for part in key.split("."):
            if isinstance(node, dict):
                node = node.get(part, _MISSING)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = _MISSING
            if node is _MISSING:
                return default
        return node

    def set(self, key: str, value: Any) -> None:
        """Sets a value by dotted path. The result is validated first: an invalid value
        raises ConfigurationError and changes nothing."""
        self._native = self._native.with_value(key, json.dumps(value))
        self._refresh()

    def add_rule_config(self, rule_data: Dict[str, Any]) -> None:
        """Adds a rule (validated). Raises ConfigurationError if invalid or the name exists."""
        rules = list(self.config.get("rules", []))
        if any(r.get("name") == rule_data.get("name") for r in rules):
            raise ConfigurationError(f"Rule '{rule_data.get('name')}' already exists")
        self.set("rules", [*rules, rule_data])

    def remove_rule_config(self, rule_name: str) -> bool:
        """Removes a rule by name; False if there was none."""
        rules = list(self.config.get("rules", []))
        kept = [r for r in rules if r.get("name") != rule_name]
        if len(kept) == len(rules):
            return False
        self.set("rules", kept)
        return True

    # Using it

    def create_limiter(self) -> RateThrottleCore:
        """A RateThrottleCore over the configured storage, with its rules and lists."""
        limiter = RateThrottleCore(_configured_storage(self._native))
        self.apply_to(limiter)
        return limiter

    def create_ddos_protection(self, limiter: Optional[RateThrottleCore] = None) -> "DDoSProtection":
        """A DDoSProtection with the `ddos_protection` section's settings, blocking on
        `limiter`'s blacklist (default: `create_limiter()`'s), for the adapters' `ddos=`."""
        from .ddos import DDoSProtection

        return DDoSProtection(self.get_ddos_config(), limiter=limiter or self.create_limiter())

    def create_adaptive_limiter(self) -> "AdaptiveRateLimiter":
        """An AdaptiveRateLimiter with the `adaptive` section's settings over the configured
        storage; with `adaptive.persistence.enabled`, its model is loaded from and saved to
        `filepath` (every `auto_save_interval` seconds and at exit). For the adapters: pass
        it where a rate goes (`@limiter.limit(adaptive)`)."""
        from .adaptive import AdaptiveRateLimiter

        section = self._section("adaptive")
        adaptive = AdaptiveRateLimiter(
            base_limit=section["base_limit"],
            window=section["window"],
            learning_rate=section["learning_rate"],
            anomaly_threshold=section["anomaly_threshold"],
            trust_enabled=section["trust_enabled"],
            min_multiplier=section["min_multiplier"],
            max_multiplier=section["max_multiplier"],
            storage=_configured_storage(self._native),
            max_profiles=section["max_profiles"],
            rule_name=section["rule"],
            strategy=section["strategy"],
        )
        persistence = section.get("persistence") or {}
        if persistence.get("enabled"):
            adaptive.persist(
                persistence["filepath"],
                persistence["auto_save_interval"],
                persistence["auto_load_on_start"],
            )
        return adaptive

    def create_grpc_interceptor(self, asyncio: bool = False) -> Any:
        """A `GRPCRateLimitInterceptor` (an `AsyncGRPCRateLimitInterceptor` with `asyncio`)
        with the `grpc` section's limits, over the configured storage (needs the `grpc`
        extra)."""
        from .gRPC import AsyncGRPCRateLimitInterceptor, GRPCLimits, GRPCRateLimitInterceptor

        section = self._section("grpc")
        limits = GRPCLimits(
            requests_per_minute=section["requests_per_minute"],
            concurrent_requests=section["concurrent_requests"],
            stream_messages_per_minute=section["stream_messages_per_minute"],
        )
        kind = AsyncGRPCRateLimitInterceptor if asyncio else GRPCRateLimitInterceptor
        return kind(limits, storage=_configured_storage(self._native))

    def create_websocket_limiter(self, on_violation: Any = None) -> "WebSocketRateLimiter":
        """A `WebSocketRateLimiter` with the `websocket` section's limits, over the
        configured storage (not in 1.4.0, whose section configured nothing)."""
        from .websocket import WebSocketLimits, WebSocketRateLimiter

        section = self._section("websocket")
        limits = WebSocketLimits(
            connections_per_minute=section["connections_per_minute"],
            messages_per_minute=section["messages_per_minute"],
            bytes_per_minute=section["bytes_per_minute"],
            max_concurrent_connections=section["max_concurrent_connections"],
            max_message_size=section["max_message_size"],
        )
        return WebSocketRateLimiter(
            limits, storage=_configured_storage(self._native), on_violation=on_violation
        )

    def create_graphql_limiter(self, **kwargs: Any) -> "GraphQLRateLimiter":
        """A `GraphQLRateLimiter` with the `graphql` section's limits and `field_costs`, over
        the configured storage (`kwargs` as `GraphQLRateLimiter` takes them; not in 1.4.0,
        whose section configured nothing). The section's `budget` is the Rust extension's."""
        from .graphQL import GraphQLLimits, GraphQLRateLimiter

        section = self._section("graphql")
        limits = GraphQLLimits(
            queries_per_minute=section["queries_per_minute"],
            mutations_per_minute=section["mutations_per_minute"],
            subscriptions_per_minute=section["subscriptions_per_minute"],
            max_complexity=section["max_complexity"],
            max_depth=section["max_depth"],
            field_limits=dict(section.get("field_limits") or {}) or None,
        )
        kwargs.setdefault("custom_field_costs", dict(section.get("field_costs") or {}))
        return GraphQLRateLimiter(limits, storage=_configured_storage(self._native), **kwargs)

    def create_alert_dispatcher(self, storage: Any = None) -> "AlertDispatcher":
        """An AlertDispatcher with the `alerting` section's settings and secrets (from the
        file or the `RT_*` variables), its cooldowns in `storage` (default: the configured
        storage, so a fleet on Redis sends one alert per cooldown)."""
        from .alerting import AlertDispatcher

        section = self._section("alerting")
        secrets = self._native.alerting_secrets()
        section["slack"] = {**section.get("slack", {}), "webhook_url": secrets["slack_webhook_url"]}
        section["webhook"] = {
            **section.get("webhook", {}),
            "url": secrets["webhook_url"],
            "secret": secrets["webhook_secret"],
            "headers": self._native.webhook_headers(),
        }
        section["email"] = {**section.get("email", {}), "password": secrets["email_password"]}
        section["pagerduty"] = {
            **section.get("pagerduty", {}),
            "routing_key": secrets["pagerduty_routing_key"],
        }
        if storage is None:
            storage = _configured_storage(self._native)
        return AlertDispatcher(section, storage)

    def create_monitor(
        self,
        limiter: Optional[RateThrottleCore] = None,
        ddos: Any = None,
        analytics: Any = None,
    ) -> "RateThrottleMonitor":
        """A RateThrottleMonitor with the `monitoring` section's settings over `limiter`
        (default: `create_limiter()`'s), checked by `create_alert_dispatcher()` when
        `alerting.enabled`. Call `start()` on it."""
        from .monitoring import RateThrottleMonitor

        dispatcher = (
            self.create_alert_dispatcher() if self._section("alerting").get("enabled") else None
        )
        return RateThrottleMonitor(
            self.get_monitoring_config(),
            limiter=limiter or self.create_limiter(),
            ddos=ddos,
            analytics=analytics,
            dispatcher=dispatcher,
        )

    def create_analytics(self) -> "RateThrottleAnalytics":
        """A RateThrottleAnalytics with the `analytics` section's settings."""
        from .analytics import RateThrottleAnalytics

        section = self._section("analytics")
        return RateThrottleAnalytics(
            max_history=section["max_history"],
            enable_metadata=section["enable_metadata"],
            sanitize_data=section["sanitize_data"],
        )

    def apply_to(self, limiter: RateThrottleCore) -> None:
        """Gives `limiter` this configuration's rules (replacing rules no longer present)
        and adds its whitelist and blacklist; with `global.log_violations` (the default) each
        violation is logged at INFO ("Rate limit exceeded: <identifier> for rule <rule>")."""
        rules = self.get_rules()
        for name in set(limiter.list_rules()) - {r.name for r in rules}:
            limiter.remove_rule(name)
        for rule in rules:
            limiter.add_rule(rule)
        if self.get("global.log_violations", True) and not getattr(limiter, "_logs_violations", False):
            limiter.register_violation_callback(_log_violation)
            limiter._logs_violations = True  # type: ignore[attr-defined]
        for identifier in self._native.whitelist():
            limiter.add_to_whitelist(identifier)
        for identifier, duration in self._native.blacklist():
            limiter.add_to_blacklist(identifier, duration)

    # Persistence

    def save_config(self, path: Optional[Union[str, Path]] = None) -> None:
        """Writes the configuration as YAML to `path` (default: the file it came from).
        Secrets it holds are written too: restrict the file's permissions."""
        save_path = Path(path) if path else self.config_file
        if not save_path:
            raise ConfigurationError("No save path specified")
        try:
            save_path.parent.mkdir(parents=True, exist_ok=True)
            save_path.write_text(self._native.text, encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"Failed to save configuration: {error}") from error

    def to_dict(self) -> Dict[str, Any]:
        """A copy of the configuration (secrets masked)."""
        return json.loads(self._native.to_json())

    def __repr__(self) -> str:
        return f"ConfigManager(file={self.config_file}, rules={len(self.config.get('rules', []))})"

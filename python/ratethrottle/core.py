"""
The core API of RateThrottle: rules, checks, lists, callbacks and metrics.

`RateThrottleCore` keeps the original library's methods, arguments and return values; the
decisions are made by the Rust engine (`ratethrottle._native`), exactly under concurrency and
across processes sharing Redis.

    >>> from ratethrottle import RateThrottleCore, RateThrottleRule
    >>> limiter = RateThrottleCore()
    >>> limiter.add_rule(RateThrottleRule(name="api", limit=2, window=60))
    >>> [limiter.check_rate_limit("10.0.0.1", "api").allowed for _ in range(3)]
    [True, True, False]
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Set

from ._native import ManualClock, NativeCore, RateThrottleStatus
from .exceptions import ConfigurationError, InvalidRuleError, StrategyNotFoundError
from .storage_backend import InMemoryStorage, StorageBackend

logger = logging.getLogger(__name__)

__all__ = [
    "ManualClock",
    "RateThrottleCore",
    "RateThrottleRule",
    "RateThrottleStatus",
    "RateThrottleViolation",
]

#: The strategies a rule may name (the original's five, plus GCRA).
STRATEGIES = (
    "token_bucket",
    "leaky_bucket",
    "fixed_window",
    "sliding_window",
    "sliding_counter",
    "gcra",
)

_VALID_SCOPES = ("ip", "user", "endpoint", "global")


@dataclass
class RateThrottleRule:
    """
    A rate limiting rule, validated when created.

    Args:
        name: Unique identifier for the rule
        limit: Maximum number of requests allowed per window
        window: Time window in seconds
        scope: What the identifier stands for ('ip', 'user', 'endpoint', 'global')
        block_duration: Seconds a client stays blocked after exceeding the limit (0: none)
        strategy: 'sliding_counter' (default), 'token_bucket', 'leaky_bucket',
            'fixed_window', 'sliding_window' or 'gcra'
        burst: Bucket capacity for the bucket strategies (default: limit)

    Raises:
        InvalidRuleError: If a parameter is invalid

        >>> RateThrottleRule(name="api", limit=100, window=60).burst
        100
    """

    name: str
    limit: int
    window: int
    scope: str = "ip"
    block_duration: int = 300
    strategy: str = "sliding_counter"
    burst: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InvalidRuleError("Rule name must be a non-empty string")
        if any(ch < " " or ch == "\x7f" for ch in self.name):
            raise InvalidRuleError(
                f"Rule name {_shown(self.name)!r} contains a control character; "
                "use printable characters such as 'api' or 'login-v2'"
            )
        self.limit = _count("Limit", self.limit)
        self.burst = self.limit if self.burst is None else _count("Burst", self.burst)
        self.window = _seconds("Window", self.window, minimum=1e-9, maximum=MAX_WINDOW_SECONDS)
        self.block_duration = _seconds("Block duration", self.block_duration, minimum=0)
        if self.burst < self.limit:
            raise InvalidRuleError(f"Burst ({self.burst}) cannot be less than limit ({self.limit})")
        if self.scope not in _VALID_SCOPES:
            raise InvalidRuleError(
                f"Invalid scope '{_shown(str(self.scope))}'. Valid options: {', '.join(_VALID_SCOPES)}"
            )


#: The longest window a rule may have: 100 years.
MAX_WINDOW_SECONDS = 100 * 365 * 24 * 3600
_U64_MAX = 2**64 - 1


def _shown(text: str, limit: int = 64) -> str:
    """`text` cut to `limit` characters for a message, with its length when cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _count(what: str, value: Any) -> int:
    """A whole number from 1 to 2**64 - 1 (an integral float such as 10.0 is accepted).
    The original accepted fractions, infinities and NaN here and then misbehaved."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRuleError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidRuleError(f"{what} must be a whole number, got {value!r}")
        value = int(value)
    if value <= 0:
        raise InvalidRuleError(f"{what} must be positive, got {value}")
    if value > _U64_MAX:
        raise InvalidRuleError(f"{what} must be at most {_U64_MAX}, got {value}")
    return value


def _seconds(what: str, value: Any, minimum: float, maximum: Optional[float] = None) -> Any:
    """A finite number of seconds in `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRuleError(f"{what} must be a number of seconds, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRuleError(f"{what} must be a finite number of seconds, got {value!r}")
    if minimum > 0 and value <= 0:
        raise InvalidRuleError(f"{what} must be positive, got {value}")
    if value < 0:
        raise InvalidRuleError(f"{what} cannot be negative, got {value}")
    if value < minimum:
        raise InvalidRuleError(f"{what} must be at least one nanosecond, got {value!r}")
    limit = maximum if maximum is not None else _U64_MAX / 1e9
    if value > limit:
        years = f" ({round(limit / (365 * 24 * 3600))} years)" if maximum is not None else ""
        raise InvalidRuleError(f"{what} must be at most {int(limit)} seconds{years}, got {value}")
    return value


@dataclass
class RateThrottleViolation:
    """
    A request that exceeded its rule, as handed to violation callbacks.

    Attributes:
        identifier: Client identifier that violated the limit
        rule_name: Name of the violated rule
        timestamp: ISO 8601 time of the violation
        requests_made: Requests counted against the limit (the limit)
        limit: The rate limit that was exceeded
        blocked_until: ISO 8601 time the block ends, if the rule blocks
        retry_after: Seconds until the client can retry
        scope: Scope of the rate limit
        metadata: The metadata passed to check_rate_limit
    """

    identifier: str
    rule_name: str
    timestamp: str
    requests_made: int
    limit: int
    blocked_until: Optional[str]
    retry_after: int
    scope: str
    metadata: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The violation as a dict."""
        return asdict(self)


def _list_duration(duration: Any) -> Optional[float]:
    """A blacklist duration: None or 0 for "until removed" (as the original), else a finite
    number of seconds above 0. The original made negative and NaN durations permanent."""
    if duration is None or (duration == 0 and not isinstance(duration, bool)):
        return None
    if (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not math.isfinite(duration)
        or duration < 0
        or duration > _U64_MAX / 1e9
    ):
        raise ValueError(
            "duration must be a finite number of seconds above 0 (None or 0: until removed), "
            f"got {duration!r}"
        )
    return float(duration)


def _iso(unix_seconds: Optional[float]) -> Optional[str]:
    return None if unix_seconds is None else datetime.fromtimestamp(unix_seconds).isoformat()


class RateThrottleCore(NativeCore):
    """
    The rate limiting engine: rules, whitelist/blacklist, violation callbacks and metrics.

    Args:
        storage: `InMemoryStorage()` (default) or `RedisStorage(...)` shared by processes
        use_distributed_lists: Kept for compatibility; lists always live in the storage
        clock: A `ManualClock` for tests (default: the system clock)

        >>> limiter = RateThrottleCore()
        >>> limiter.add_rule(RateThrottleRule(name="api", limit=100, window=60))
        >>> limiter.check_rate_limit("192.168.1.1", "api").remaining
        99
    """

    STRATEGIES = STRATEGIES

    storage: StorageBackend
    use_distributed_lists: bool
    violation_callbacks: List[Callable[[RateThrottleViolation], None]]

    # The rules and lists are the engine's, read through (no copies kept here).

    @property
    def rules(self) -> Dict[str, RateThrottleRule]:
        """The rules by name, in the order they were added (a snapshot of the engine's)."""
        return {kwargs["name"]: RateThrottleRule(**kwargs) for kwargs in self._rules()}

    @property
    def whitelist(self) -> Set[str]:
        """The whitelisted identifiers (read from the storage: on Redis, the fleet's)."""
        return set(self._list_entries(True))

    @property
    def blacklist(self) -> Set[str]:
        """The blacklisted identifiers, unexpired (read from the storage)."""
        return set(self._list_entries(False))

    def __new__(
        cls,
        storage: Optional[StorageBackend] = None,
        use_distributed_lists: bool = True,
        *,
        clock: Optional[ManualClock] = None,
    ) -> "RateThrottleCore":
        storage = storage or InMemoryStorage()
        getter = getattr(storage, "get", None)
        engine_storage = hasattr(storage, "_native")
        if not engine_storage and getter is not None and inspect.iscoroutinefunction(getter):
            raise ConfigurationError(
                f"custom storage {type(storage).__name__} has coroutine methods; a limiter can "
                "keep its state only in a storage with plain methods (or in an engine storage: "
                "AsyncInMemoryStorage, AsyncRedisStorage)"
            )
        self = super().__new__(cls, storage, use_distributed_lists, clock=clock)
        self.storage = storage
        self.use_distributed_lists = use_distributed_lists and self._store_kind != "memory"
        self.violation_callbacks = []
        return self

    def __init__(
        self,
        storage: Optional[StorageBackend] = None,
        use_distributed_lists: bool = True,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        # Everything is set up in __new__, so subclasses may call this or not.
        pass

    # Rules

    def add_rule(self, rule: RateThrottleRule) -> None:
        """
        Adds (or replaces) a rule.

        Raises:
            InvalidRuleError: If `rule` is not a valid RateThrottleRule
            StrategyNotFoundError: If its strategy does not exist
        """
        if not isinstance(rule, RateThrottleRule):
            raise InvalidRuleError(f"Expected RateThrottleRule, got {type(rule).__name__}")
        if rule.strategy not in STRATEGIES:
            raise StrategyNotFoundError(
                f"Strategy '{rule.strategy}' not found. Available: {', '.join(STRATEGIES)}"
            )
        self._add_rule(
            rule.name,
            int(rule.limit),
            float(rule.window),
            rule.scope,
            float(rule.block_duration),
            rule.strategy,
            int(rule.burst) if rule.burst is not None else None,
        )
        logger.info(
            "Added rule '%s': %s requests per %ss using %s strategy",
            rule.name,
            rule.limit,
            rule.window,
            rule.strategy,
        )

    def remove_rule(self, rule_name: str) -> bool:
        """Removes a rule; False if there was none of that name."""
        removed = self._remove_rule(rule_name)
        if not removed:
            logger.warning("Attempted to remove non-existent rule: %s", rule_name)
        return removed

    def get_rule(self, rule_name: str) -> Optional[RateThrottleRule]:
        """The rule of that name, or None."""
        kwargs = self._rule(rule_name)
        return None if kwargs is None else RateThrottleRule(**kwargs)

    def list_rules(self) -> List[str]:
        """The rule names, in the order they were added."""
        return [kwargs["name"] for kwargs in self._rules()]

    # Lists (kept in the storage: shared by every process on the same Redis)

    def add_to_whitelist(self, identifier: str, persistent: bool = True) -> None:
        """Whitelists `identifier`: it bypasses every limit, uncounted."""
        if not identifier:
            logger.warning("Attempted to whitelist empty identifier")
            return
        self._whitelist_add(identifier)

    def remove_from_whitelist(self, identifier: str) -> bool:
        """Removes `identifier` from the whitelist; False if it was not on it."""
        return self._whitelist_remove(identifier)

    def is_whitelisted(self, identifier: str) -> bool:
        """Whether `identifier` is whitelisted."""
        return bool(identifier) and self._is_whitelisted(identifier)

    def add_to_blacklist(
        self, identifier: str, duration: Optional[int] = None, persistent: bool = True
    ) -> None:
        """Blacklists `identifier` (for `duration` seconds, or until removed): every check
        is denied (HTTP 403 in the middleware)."""
        duration = _list_duration(duration)
        if not identifier:
            logger.warning("Attempted to blacklist empty identifier")
            return
        self._blacklist_add(identifier, duration)

    def remove_from_blacklist(self, identifier: str) -> bool:
        """Removes `identifier` from the blacklist; False if it was not on it."""
        return self._blacklist_remove(identifier)

    def is_blacklisted(self, identifier: str) -> bool:
        """Whether `identifier` is blacklisted (and the entry has not expired)."""
        return bool(identifier) and self._is_blacklisted(identifier)

    # Violations

    def register_violation_callback(
        self, callback: Callable[[RateThrottleViolation], None]
    ) -> None:
        """Calls `callback(violation)` whenever a check exceeds its rule. An exception in a
        callback is logged; it affects neither the check nor the other callbacks."""
        if not callable(callback):
            raise ValueError("Callback must be callable")
        self.violation_callbacks.append(callback)

    def _report_violation(
        self,
        identifier: str,
        status: RateThrottleStatus,
        metadata: Optional[Dict[str, Any]],
        recorded: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Called by the engine for each violation while callbacks are registered, with the
        engine's record of it (`recorded`: its time, block end and retry)."""
        if recorded is not None:
            at, blocked_until = recorded["timestamp"], recorded["blocked_until"]
            retry_after, scope = recorded["retry_after"], recorded["scope"]
        else:  # a violation the engine did not hand over (none expected)
            at, blocked_until = self._now(), None
            retry_after = status.retry_after or 0
            scope = self._rule_scope(status.rule_name or "") or "ip"
        violation = RateThrottleViolation(
            identifier=identifier,
            rule_name=status.rule_name or "",
            timestamp=_iso(at) or "",
            requests_made=status.limit,
            limit=status.limit,
            blocked_until=_iso(blocked_until),
            retry_after=retry_after,
            scope=scope,
            metadata=dict(metadata or {}),
        )
        for callback in list(self.violation_callbacks):
            try:
                callback(violation)
            except Exception as error:  # a callback must not break a check
                name = getattr(callback, "__name__", repr(callback))
                logger.error("Violation callback error (%s): %s", name, error)

    # Metrics

    def get_metrics(self) -> Dict[str, Any]:
        """
        The counters, with the original's keys: total_requests, allowed_requests,
        blocked_requests, block_rate (percent), total_violations, recent_violations (the last
        10, as RateThrottleViolation), active_rules, whitelisted_count, blacklisted_count; plus
        `rules` (counts per rule), `callback_panics`, `degraded_requests` (checks the store
        could not decide, answered by its fault policy or failed: included in the counts
        above), and the store's `store_errors`, `store_circuit_opens` and `store_circuit_open`.
        """
        metrics = self._metrics()
        metrics["recent_violations"] = [
            RateThrottleViolation(
                identifier=v["identifier"],
                rule_name=v["rule_name"],
                timestamp=_iso(v["timestamp"]) or "",
                requests_made=v["limit"],
                limit=v["limit"],
                blocked_until=_iso(v["blocked_until"]),
                retry_after=v["retry_after"],
                scope=v["scope"],
            )
            for v in metrics["recent_violations"]
        ]
        return metrics

    def reset_metrics(self) -> None:
        """Sets every counter to zero and forgets the violations."""
        self._reset_metrics()

    def get_status(self) -> Dict[str, Any]:
        """The rules, list sizes, callbacks and storage of this limiter."""
        return {
            "rules": [
                {
                    "name": rule.name,
                    "limit": rule.limit,
                    "window": rule.window,
                    "strategy": rule.strategy,
                }
                for rule in self.rules.values()
            ],
            "whitelist_size": len(self.whitelist),
            "blacklist_size": len(self.blacklist),
            "callbacks_registered": len(self.violation_callbacks),
            "storage_type": type(self.storage).__name__,
            "strategies_available": list(STRATEGIES),
        }

    def __repr__(self) -> str:
        return (
            f"RateThrottleCore(rules={len(self.rules)}, "
            f"whitelist={len(self.whitelist)}, "
            f"blacklist={len(self.blacklist)})"
        )

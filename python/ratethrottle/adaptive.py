"""
RateThrottle - ML Adaptive Rate Limiting: limits that learn each client's behaviour.

The original's API (`AdaptiveRateLimiter`, `UserProfile`) on the Rust engine (crate
`ratethrottle-protect`). Each client has a profile: an exponential moving average of its
request rate, the spread of its last 100 rates, and a trust score (0 to 1). A rate more than
`anomaly_threshold` standard deviations from the learned one is an anomaly. The limit is the
original's formula, `base_limit × (min + trust·(max − min))`, × 0.3 for an anomaly, × an age
factor growing from 0.5 to 1 over 30 days, within `[base·min_multiplier, base·max_multiplier]`.

Different from 1.4.0, on purpose:

- The limit is enforced by the limiter's own strategy code at the adjusted limit, atomically
  (1.4.0 reads the counters and then increments them: concurrent requests over-admit, and on
  Redis the fleet does). A limit of N admits at most N per window, across threads and, on
  Redis, processes.
- Profiles are bounded (`max_profiles`, least recently seen forgotten first) and cost O(1)
  per request (1.4.0 keeps them all and rescans up to 1,100 numbers per request).
- Trust grows with good behaviour (whole days without a violation or anomaly earn the bonus
  that 1.4.0 never grants) and shrinks with anomalies as with violations.
- Callbacks are isolated: an exception inside is logged, never raised into the request.
- Model files are written atomically and checked whole before loading; a corrupt file raises
  `ValueError` naming it and changes nothing. 1.4.0's files load.

Profiles are per process: each process learns from the traffic it sees. Share them on
purpose with `export_model` and `load_model`.

    >>> limiter = AdaptiveRateLimiter(base_limit=100)
    >>> result = limiter.check_adaptive('user_123')
    >>> result['allowed'], result['adjusted_limit'], result['reason']
    (True, 87, 'allowed')
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Deque, Dict, List, Optional

from ._native import ManualClock, NativeAdaptive
from .core import RateThrottleCore

logger = logging.getLogger(__name__)


@dataclass
class UserProfile:
    """
    A client's behaviour profile (the original's dataclass; `get_user_profile` returns a dict
    of the engine's profile, this class is kept for code that builds profiles itself).

    Attributes:
        identifier: User identifier
        first_seen: When user first appeared
        last_seen: When user last made request
        request_count: Total requests made
        mean_rate: Average request rate (EMA)
        std_rate: Standard deviation of rate
        request_rates: Recent rate measurements
        trust_score: Trust score (0.0 to 1.0)
        violation_count: Number of violations
        good_behavior_days: Days of good behavior
        metadata: Additional user metadata
    """

    identifier: str
    first_seen: float
    last_seen: float = field(default_factory=time.time)
    request_count: int = 0
    mean_rate: float = 0.0
    std_rate: float = 1.0
    request_rates: Deque[float] = field(default_factory=lambda: deque(maxlen=100))
    trust_score: float = 0.5
    violation_count: int = 0
    good_behavior_days: int = 0
    metadata: Dict[str, Any] = field(default_factory=dict)


class AdaptiveRateLimiter:
    """
    Adaptive rate limiter: pattern learning, z-score anomaly detection, trust scoring,
    automatic limit adjustment and model persistence.

    Args:
        base_limit: Base rate limit (starting point)
        window: Time window in seconds
        learning_rate: How fast to adapt (0.0-1.0)
        anomaly_threshold: Z-score threshold for anomalies
        trust_enabled: Enable trust scoring
        min_multiplier: Minimum limit multiplier (e.g., 0.5 = 50%)
        max_multiplier: Maximum limit multiplier (e.g., 3.0 = 300%)
        storage: Storage backend for the counts (InMemoryStorage by default; RedisStorage to
            enforce a fleet's limits together)
        on_anomaly: Callback when anomaly detected, with an info dict
        on_trust_change: Callback `(identifier, trust_score)` when trust changes by more than
            0.05 (or is adjusted by hand)
        max_profiles: The most clients with a profile (not in the original)
        rule_name: The limiter rule enforcing the limits (not in the original)
        strategy: The strategy enforcing them (the original's: sliding_counter)
        clock: A `ManualClock` for tests (not in the original)

    Raises:
        ConfigurationError: a setting out of range, named with the allowed range
    """

    def __init__(
        self,
        base_limit: int = 100,
        window: int = 60,
        learning_rate: float = 0.1,
        anomaly_threshold: float = 3.0,
        trust_enabled: bool = True,
        min_multiplier: float = 0.5,
        max_multiplier: float = 3.0,
        storage: Any = None,
        on_anomaly: Optional[Callable] = None,
        on_trust_change: Optional[Callable] = None,
        *,
        max_profiles: int = 100_000,
        rule_name: str = "adaptive",
        strategy: str = "sliding_counter",
        clock: Optional[ManualClock] = None,
    ) -> None:
        self.base_limit = base_limit
        self.window = window
        self.learning_rate = learning_rate
        self.anomaly_threshold = anomaly_threshold
        self.trust_enabled = trust_enabled
        self.min_multiplier = min_multiplier
        self.max_multiplier = max_multiplier
        #: The limiter enforcing the adjusted limits, under its rule "adaptive".
        self.limiter = RateThrottleCore(storage=storage, clock=clock)
        self.storage = self.limiter.storage
        self._native = NativeAdaptive(
            self.limiter,
            base_limit,
            float(window),
            learning_rate,
            anomaly_threshold,
            bool(trust_enabled),
            min_multiplier,
            max_multiplier,
            max_profiles,
            rule_name,
            strategy,
        )
        self._check = self._native.check
        self.on_anomaly = on_anomaly
        self.on_trust_change = on_trust_change
        logger.info(
            f"Adaptive rate limiter initialized: "
            f"base_limit={base_limit}, learning_rate={learning_rate}"
        )

    @property
    def on_anomaly(self) -> Optional[Callable]:
        """Called with `{identifier, anomaly_score, current_rate, expected_rate, timestamp}`
        for each anomalous request; what it raises is logged."""
        return self._on_anomaly

    @on_anomaly.setter
    def on_anomaly(self, callback: Optional[Callable]) -> None:
        self._on_anomaly = callback
        self._native.set_on_anomaly(callback)

    @property
    def on_trust_change(self) -> Optional[Callable]:
        """Called with `(identifier, trust_score)`; what it raises is logged."""
        return self._on_trust_change

    @on_trust_change.setter
    def on_trust_change(self, callback: Optional[Callable]) -> None:
        self._on_trust_change = callback
        self._native.set_on_trust_change(callback)

    @property
    def rule_name(self) -> str:
        """The limiter rule the adjusted limits are enforced under ("adaptive")."""
        return self._native.rule

    def check_adaptive(
        self, identifier: str, request_metadata: Optional[Dict] = None
    ) -> Dict[str, Any]:
        """
        Checks one request of `identifier`, learning from it.

        Returns:
            Dict with `allowed`, `adjusted_limit` (this client's limit), `remaining`,
            `trust_score`, `anomaly_score` (z-score), `confidence`, `reason` ('allowed',
            'rate_limit_exceeded' or 'anomaly_detected'), `base_limit` and `retry_after`
            (whole seconds, 0 when allowed).
        """
        if type(identifier) is not str:
            identifier = str(identifier)
        if request_metadata:
            return self._check(identifier, json.dumps(dict(request_metadata), default=str))
        return self._check(identifier)

    def update_trust_score(self, identifier: str, adjustment: float) -> None:
        """
        Adjusts a known client's trust by `adjustment` (-1.0 to +1.0), kept within 0 to 1;
        calls `on_trust_change`. Unknown clients are left alone (1.4.0 raises NameError).
        """
        new = self._native.update_trust_score(str(identifier), float(adjustment))
        if new is None:
            logger.info(f"No profile for {identifier}: trust not adjusted")
        else:
            logger.info(f"Trust score adjusted for {identifier}: {new:.2f}")

    def get_user_profile(self, identifier: str) -> Optional[Dict[str, Any]]:
        """
        The client's profile: `identifier`, `first_seen` and `last_seen` (ISO times),
        `age_days`, `request_count`, `mean_rate` (requests per minute), `std_rate`,
        `trust_score`, `violation_count`, `good_behavior_days`, `current_limit`, `metadata`
        (and `anomaly_count`); `None` for an unknown client.
        """
        profile = self._native.user_profile(str(identifier))
        if profile is None:
            return None
        profile["first_seen"] = datetime.fromtimestamp(profile["first_seen"]).isoformat()
        profile["last_seen"] = datetime.fromtimestamp(profile["last_seen"]).isoformat()
        profile["metadata"] = json.loads(profile["metadata"])
        return profile

    def get_statistics(self) -> Dict[str, Any]:
        """Counts (`total_requests`, `anomalies_detected`, `limits_adjusted`,
        `users_tracked`), the profiles kept, and the `configuration`."""
        stats = self._native.statistics()
        stats["configuration"] = {
            "base_limit": self.base_limit,
            "window": self.window,
            "learning_rate": self.learning_rate,
            "anomaly_threshold": self.anomaly_threshold,
            "trust_enabled": self.trust_enabled,
        }
        return stats

    def least_trusted(self, count: int = 10) -> List[Dict[str, Any]]:
        """The `count` profiles with the lowest trust, lowest first (not in the original)."""
        return [
            {**profile, "metadata": json.loads(profile["metadata"])}
            for profile in self._native.least_trusted(count)
        ]

    def export_model(self, filepath: str) -> None:
        """Saves the learned model as JSON (version "2"; written atomically, its folder
        made). Raises OSError if it cannot be written."""
        self._native.export_model(str(filepath))
        logger.info(f"Model exported to {filepath}")

    def load_model(self, filepath: str) -> None:
        """
        Loads a model saved by `export_model` (or by ratethrottle 1.4.0): its profiles
        replace those of the same clients, its counts replace the counts.

        Raises:
            FileNotFoundError: no such file
            ValueError: the file is not a model (nothing is changed)
        """
        with open(filepath, "r", encoding="utf-8") as f:
            text = f.read()
        try:
            loaded = self._native.load_model_json(text)
        except ValueError as error:
            raise ValueError(f"cannot load the adaptive model from {filepath}: {error}; "
                             f"the model is unchanged") from None
        logger.info(f"Model loaded from {filepath} ({loaded} profiles)")

    def persist(self, filepath: str, auto_save_interval: float = 0,
                auto_load_on_start: bool = True) -> None:
        """
        Keeps the model in `filepath` (the `adaptive.persistence` section; not in the
        original's class): loads it now if asked and it exists, saves it every
        `auto_save_interval` seconds on a thread of its own (0: never) and at interpreter
        exit (or `stop_persisting()`).

        Raises:
            ValueError: the existing file is not a model (nothing is loaded)
        """
        import atexit

        self._native.persist(str(filepath), float(auto_save_interval), bool(auto_load_on_start))
        atexit.register(self._native.stop_saving)

    def stop_persisting(self) -> None:
        """Saves the model one last time and stops saving it."""
        self._native.stop_saving()

    def reset_user(self, identifier: str) -> None:
        """Forgets a client's profile."""
        if self._native.reset_user(str(identifier)):
            logger.info(f"User profile reset: {identifier}")

    def __repr__(self) -> str:
        stats = self._native.statistics()
        return (
            f"AdaptiveRateLimiter("
            f"base_limit={self.base_limit}, "
            f"users={stats['profiles']}, "
            f"anomalies={stats['anomalies_detected']})"
        )

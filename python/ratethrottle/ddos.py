"""
RateThrottle - DDoS protection: traffic analysis that spots floods, scans, bursts and bots.

The original's API (`DDoSProtection`, `TrafficPattern`) on the Rust engine (crate
`ratethrottle-protect`): each client's traffic is a bounded summary updated in O(1) per
request (1.4.0 scans up to 10,000 timestamps per call), and at most `max_tracked_identifiers`
clients are followed (the least recently seen are forgotten first).

Blocks go on a limiter's blacklist (`limiter=`, default a new in-memory `RateThrottleCore`),
so they are enforced by its checks and, on Redis, by every process of a fleet. A repeat
offender's block grows by `block_increment` up to `max_block_duration` (new here; set
`block_increment` to 1 for the original's fixed blocks), its offences being counted in the
limiter's storage. Traffic analysis itself is per process.

    >>> ddos = DDoSProtection({'enabled': True, 'threshold': 10000, 'window': 60})
    >>> pattern = ddos.analyze_traffic('192.168.1.100', '/api/data', user_agent='Mozilla/5.0')
    >>> pattern.is_suspicious
    False
"""

from __future__ import annotations

import logging
import time
from collections import deque
from datetime import datetime
from typing import Any, Deque, Dict, List, Optional, Set

from ._native import ManualClock, NativeDdos
from ._native import TrafficPattern as _TrafficPattern
from .core import RateThrottleCore
from .exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: How many suspicious patterns are kept for `get_statistics` and `export_report` (those of
#: the last hour, as in the original, but at most this many).
MAX_PATTERNS = 10_000


#: The analysis of one request (the original's dataclass, built natively): `identifier`,
#: `request_rate` (requests per second over the window), `unique_endpoints` (counted up to
#: twice `max_unique_endpoints`, where that factor is at its maximum), `suspicious_score`
#: (0 to 1), `is_suspicious`, `analysis_window` (seconds), `timestamp` (Unix seconds) and
#: `metadata` (each factor's part of the score, by the original's names); `to_dict()`.
TrafficPattern = _TrafficPattern


class DDoSProtection:
    """
    DDoS detection and mitigation.

    Args:
        config: Settings (the original's keys; missing ones take `DEFAULT_CONFIG`'s values)
        limiter: The limiter whose blacklist holds the blocks (default: a new in-memory
            `RateThrottleCore`); give the one your requests are checked with, on Redis to
            share blocks with a fleet
        clock: A `ManualClock` for tests (used only when no `limiter` is given)

    Raises:
        ConfigurationError: a setting out of range, named with the allowed range

        >>> ddos = DDoSProtection({'enabled': True, 'auto_block': True})
        >>> ddos.block_ip('203.0.113.9', 60)
        >>> ddos.is_blocked('203.0.113.9')
        True
    """

    DEFAULT_CONFIG: Dict[str, Any] = {
        "enabled": True,
        "threshold": 10000,
        "window": 60,
        "auto_block": True,
        "block_duration": 3600,
        "suspicious_threshold": 0.5,
        "max_unique_endpoints": 50,
        "burst_threshold": 100,
        "burst_window": 10,
        "min_interval_threshold": 0.1,
        "whitelist_on_good_behavior": True,
        "good_behavior_threshold": 1000,
        "max_tracked_identifiers": 100_000,
        # Ban escalation (not in the original): ×2 per repeat offence, at most a week,
        # offences forgotten a week after the last.
        "block_increment": 2.0,
        "max_block_duration": 7 * 24 * 3600,
        "offence_memory": 7 * 24 * 3600,
    }

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        *,
        limiter: Optional[RateThrottleCore] = None,
        clock: Optional[ManualClock] = None,
    ) -> None:
        if config is not None and not isinstance(config, dict):
            raise ConfigurationError(
                f"DDoS protection config must be a dict, got {type(config).__name__}"
            )
        self.config: Dict[str, Any] = dict(self.DEFAULT_CONFIG)
        if config:
            self.config.update(config)
        if config and "block_duration" in config and "max_block_duration" not in config:
            # A longer first block than the default cap raises the cap with it.
            self.config["max_block_duration"] = max(
                self.DEFAULT_CONFIG["max_block_duration"], config["block_duration"] or 0
            )
        self.limiter = limiter if limiter is not None else RateThrottleCore(clock=clock)
        self._native = NativeDdos(self.limiter, self.config)
        self._analyze = self._native.analyze
        self.enabled = bool(self.config["enabled"])
        self.threshold = self.config["threshold"]
        self.window = self.config["window"]
        self.auto_block = bool(self.config["auto_block"])
        self.block_duration = self.config["block_duration"]
        self.suspicious_threshold = self.config["suspicious_threshold"]
        self.max_unique_endpoints = self.config["max_unique_endpoints"]
        #: Clients exempt from analysis (`whitelist_ip`).
        self.whitelisted_ips: Set[str] = set()
        #: Suspicious patterns of the last hour (at most MAX_PATTERNS).
        self.suspicious_patterns: Deque[TrafficPattern] = deque(maxlen=MAX_PATTERNS)
        logger.info(
            f"DDoS Protection initialized: enabled={self.enabled}, "
            f"threshold={self.threshold}/{self.window}s"
        )

    def analyze_traffic(
        self,
        identifier: str,
        endpoint: str,
        timestamp: Optional[float] = None,
        user_agent: Optional[str] = None,
        method: Optional[str] = None,
    ) -> TrafficPattern:
        """
        Analyses one request and returns its TrafficPattern. With `auto_block`, a client
        found suspicious three times in five minutes, or scoring 0.8 or more, is blocked.

        Args:
            identifier: Client identifier (IP, user, etc.)
            endpoint: Requested endpoint
            timestamp: Request time in Unix seconds (default: now)
            user_agent: The request's User-Agent (none scores as suspicious)
            method: The HTTP method (accepted for compatibility; not scored, as in the
                original)
        """
        if not self.enabled:
            return TrafficPattern(identifier, 0.0, 0, 0.0, False, int(self.window), time.time())
        if identifier in self.whitelisted_ips:
            now = timestamp or time.time()
            return TrafficPattern(
                identifier, 0.0, 0, 0.0, False, int(self.window), now, {"whitelisted": 1.0}
            )
        pattern = self._analyze(identifier, endpoint, timestamp, user_agent)
        if pattern.is_suspicious:
            self._remember(pattern)
        return pattern

    def _remember(self, pattern: TrafficPattern) -> None:
        patterns = self.suspicious_patterns
        cutoff = pattern.timestamp - 3600
        while patterns and patterns[0].timestamp <= cutoff:
            patterns.popleft()
        patterns.append(pattern)
        logger.warning(
            f"Suspicious activity: {pattern.identifier} "
            f"(score: {pattern.suspicious_score:.2f}, "
            f"rate: {pattern.request_rate:.2f} req/s, "
            f"endpoints: {pattern.unique_endpoints})"
        )

    # Blocks: the limiter's blacklist

    def block_ip(self, identifier: str, duration: Optional[float] = None) -> None:
        """Blocks `identifier` for `duration` seconds (None or 0: until unblocked)."""
        self.limiter.add_to_blacklist(identifier, duration or None)
        self._native.distrust(identifier)
        if duration:
            logger.warning(f"Blocked {identifier} for {duration}s")
        else:
            logger.warning(f"Permanently blocked {identifier}")

    def unblock_ip(self, identifier: str) -> bool:
        """Lifts a block; True if `identifier` was blocked."""
        was_blocked = bool(self.limiter.remove_from_blacklist(identifier))
        if was_blocked:
            logger.info(f"Unblocked {identifier}")
        return was_blocked

    def unblock(self, identifier: str) -> bool:
        """`unblock_ip`, as the docs spell it."""
        return self.unblock_ip(identifier)

    def is_blocked(self, identifier: str, now: Optional[float] = None) -> bool:
        """Whether `identifier` is blocked (at `now`, Unix seconds, when given)."""
        if now is None:
            return bool(self.limiter.is_blacklisted(identifier))
        for blocked, expires_at in self._native.blocks():
            if blocked == identifier:
                return expires_at is None or expires_at > now
        return False

    def get_blocked_ips(self) -> List[str]:
        """The blocked identifiers (the quickstart's name; the limiter's blacklist)."""
        return [identifier for identifier, _ in self._native.blocks()]

    def whitelist_ip(self, identifier: str) -> None:
        """Exempts `identifier` from analysis, and lifts its block."""
        self.whitelisted_ips.add(identifier)
        if self.limiter.is_blacklisted(identifier):
            self.unblock_ip(identifier)
        logger.info(f"Whitelisted {identifier}")

    def remove_from_whitelist(self, identifier: str) -> bool:
        """Analyses `identifier` again; True if it was whitelisted (by `whitelist_ip` or by
        a long good record)."""
        listed = identifier in self.whitelisted_ips
        self.whitelisted_ips.discard(identifier)
        trusted = self._native.distrust(identifier)
        was_whitelisted = listed or trusted
        if was_whitelisted:
            logger.info(f"Removed from whitelist: {identifier}")
        return was_whitelisted

    # Reports

    def _recent_suspicious(self) -> List[Dict[str, Any]]:
        return [
            {
                "identifier": p.identifier,
                "rate": f"{p.request_rate:.2f} req/s",
                "score": f"{p.suspicious_score:.2f}",
                "endpoints": p.unique_endpoints,
                "time": datetime.fromtimestamp(p.timestamp).strftime("%H:%M:%S"),
            }
            for p in list(self.suspicious_patterns)[-10:]
        ]

    def get_statistics(self) -> Dict[str, Any]:
        """
        The original's statistics: `enabled`, `blocked_ips` (a count), `whitelisted_ips`,
        `suspicious_patterns_detected`, `monitored_identifiers`, `total_analyzed`,
        `suspicious_detected`, `auto_blocked`, `detection_rate` (%),
        `false_positives_prevented` and `recent_suspicious`; also the docs' names
        `suspicious_count` and `recent_patterns`.
        """
        return self._statistics(self.get_blocked_ips())

    def _statistics(self, blocked: List[str]) -> Dict[str, Any]:
        counts = self._native.statistics()
        analyzed = counts["total_analyzed"]
        detected = counts["suspicious_detected"]
        recent = self._recent_suspicious()
        return {
            "enabled": self.enabled,
            "blocked_ips": len(blocked),
            "whitelisted_ips": len(self.whitelisted_ips) + counts["trusted_identifiers"],
            "suspicious_patterns_detected": len(self.suspicious_patterns),
            "monitored_identifiers": counts["tracked_identifiers"],
            "total_analyzed": analyzed,
            "suspicious_detected": detected,
            "suspicious_count": detected,
            "auto_blocked": counts["auto_blocked"],
            "detection_rate": detected / analyzed * 100 if analyzed else 0.0,
            "false_positives_prevented": counts["false_positives_prevented"],
            "recent_suspicious": recent,
            "recent_patterns": recent,
        }

    def reset_statistics(self) -> None:
        """Sets the counts to zero (blocks and whitelist stay)."""
        self._native.reset_statistics()
        logger.info("DDoS statistics reset")

    def clear_history(self, identifier: Optional[str] = None) -> None:
        """Forgets the traffic of `identifier`, or of every client."""
        self._native.forget(identifier)
        logger.info(f"Cleared history for {identifier}" if identifier else "Cleared all history")

    def get_pattern_for_identifier(self, identifier: str) -> Optional[TrafficPattern]:
        """The most recent suspicious pattern of `identifier`, or None."""
        for pattern in reversed(self.suspicious_patterns):
            if pattern.identifier == identifier:
                return pattern
        return None

    def export_report(self) -> Dict[str, Any]:
        """The original's report: `generated_at`, `configuration`, `statistics`,
        `blocked_ips`, `whitelisted_ips` and the last 50 `suspicious_patterns`."""
        blocked = self.get_blocked_ips()  # one read of the blacklist for both
        return {
            "generated_at": datetime.now().isoformat(),
            "configuration": dict(self.config),
            "statistics": self._statistics(blocked),
            "blocked_ips": blocked,
            "whitelisted_ips": sorted(self.whitelisted_ips),
            "suspicious_patterns": [p.to_dict() for p in list(self.suspicious_patterns)[-50:]],
        }

    def __repr__(self) -> str:
        counts = self._native.statistics()
        return (
            f"DDoSProtection(enabled={self.enabled}, "
            f"blocked={len(self.get_blocked_ips())}, "
            f"monitored={counts['tracked_identifiers']})"
        )

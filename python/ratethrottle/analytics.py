"""
RateThrottle - Analytics and reporting: a bounded record of rate-limit decisions and
violations, with top violators, a violation timeline, per-rule statistics, a summary, and
JSON and CSV exports.

The original's API (`RateThrottleAnalytics`) on the Rust engine (crate
`ratethrottle-protect`). Identifiers are kept as given and masked on the way out when
`sanitize_data` is on (IPv4 as `a.b.c.xxx`, IPv6 as its /64, others as `abcd...wxyz` or
`****`); secrets in metadata (`password`, `token`, `api_key`, `secret`, `authorization`,
`cookie`, `session`) are redacted as they are recorded. Times are written in UTC.

    >>> analytics = RateThrottleAnalytics(max_history=10000)
    >>> analytics.record_request('192.168.1.100', 'api_limit', allowed=False)
    >>> analytics.get_summary()['total_requests']
    1
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from ._native import ManualClock, NativeAnalytics

logger = logging.getLogger(__name__)

#: The violation fields recorded by name; any others of a dict are kept as given.
_VIOLATION_FIELDS = (
    "identifier",
    "rule_name",
    "timestamp",
    "requests_made",
    "limit",
    "blocked_until",
    "retry_after",
    "scope",
    "metadata",
)


class RuleStatistics(Dict[str, Dict[str, Any]]):
    """`get_rule_statistics()`: statistics by rule name (as in 1.4.0). The docs also read
    overall `total_requests`, `violations` and `block_rate` from it: those names answer the
    totals over every rule without being keys (so iterating gives only rules), unless a rule
    has that name."""

    def __missing__(self, key: str) -> Any:
        total = sum(stats["total_requests"] for stats in self.values())
        blocked = sum(stats["blocked"] for stats in self.values())
        if key == "total_requests":
            return total
        if key == "violations":
            return blocked
        if key == "block_rate":
            return blocked / total * 100 if total else 0.0
        raise KeyError(key)


def _unix(value: Any) -> Optional[float]:
    """A violation's time as Unix seconds: ISO 8601 text (naive: local time), a datetime or
    a number; None when it cannot be read."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _whole(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class RateThrottleAnalytics:
    """
    Analytics and reporting for rate limiting behavior.

    Args:
        max_history: The most requests, and the most violations, kept (oldest dropped first)
        enable_metadata: Keep each request's metadata
        sanitize_data: Mask identifiers in what goes out and redact secrets in metadata
        clock: A `ManualClock` for tests (default: the system clock)

    Raises:
        ConfigurationError: `max_history` is not positive
    """

    def __init__(
        self,
        max_history: int = 10000,
        enable_metadata: bool = True,
        sanitize_data: bool = True,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        self._native = NativeAnalytics(int(max_history), bool(enable_metadata), bool(sanitize_data))
        self.max_history = int(max_history)
        self.enable_metadata = bool(enable_metadata)
        self.sanitize_data = bool(sanitize_data)
        self._clock = clock
        logger.info(f"Analytics initialized: max_history={max_history}, sanitize={sanitize_data}")

    def _now(self) -> float:
        return self._clock.time() if self._clock is not None else time.time()

    # Recording

    def record_request(
        self, identifier: str, rule_name: str, allowed: bool, metadata: Optional[Dict] = None
    ) -> None:
        """Records a rate-limit decision (errors are logged, never raised, as in the
        original)."""
        try:
            meta = None
            if metadata and self.enable_metadata:
                if not isinstance(metadata, dict):
                    raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
                meta = json.dumps(metadata, default=str)
            self._native.record_request(str(identifier), str(rule_name), bool(allowed),
                                        self._now(), meta)
        except Exception as e:
            logger.error(f"Error recording request: {e}")

    def record_violation(self, violation: Any) -> None:
        """Records a violation: a `RateThrottleViolation` (or anything with `to_dict`) or a
        dict with its fields (errors are logged, never raised)."""
        try:
            if hasattr(violation, "to_dict"):
                fields = dict(violation.to_dict())
            elif isinstance(violation, dict):
                fields = dict(violation)
            else:
                logger.error(f"Invalid violation type: {type(violation)}")
                return
            extra = {k: v for k, v in fields.items() if k not in _VIOLATION_FIELDS}
            stamp = fields.get("timestamp")
            at = _unix(stamp) if stamp is not None else None
            if at is None and stamp is not None:
                extra["timestamp"] = stamp  # kept as given, left out of time-bound queries
            metadata = fields.get("metadata") or {}
            if not isinstance(metadata, dict):
                metadata = {"value": metadata}
            blocked_until = fields.get("blocked_until")
            self._native.record_violation(
                str(fields.get("identifier", "unknown")),
                str(fields.get("rule_name", "unknown")),
                at,
                _whole(fields.get("requests_made")),
                _whole(fields.get("limit")),
                None if blocked_until is None else str(blocked_until),
                _whole(fields.get("retry_after")),
                str(fields.get("scope", "")),
                json.dumps(metadata, default=str),
                json.dumps(extra, default=str),
            )
        except Exception as e:
            logger.error(f"Error recording violation: {e}")

    # Queries

    def get_top_violators(self, limit: int = 10, time_window: Optional[int] = None) -> List[Dict]:
        """The identifiers with the most violations (within the last `time_window` seconds
        when given), most first: `{"identifier", "violations", "count"}` (identifiers as
        recorded, as in the original)."""
        return [
            {"identifier": identifier, "violations": count, "count": count}
            for identifier, count in self._native.top_violators(
                max(0, int(limit)), time_window, self._now()
            )
        ]

    def get_violation_timeline(self, hours: int = 24, granularity: str = "hour") -> Dict[str, int]:
        """Violations per period (`"minute"`, `"hour"` or `"day"`; UTC labels such as
        `2026-01-15 10:00`) within the last `hours`."""
        if granularity not in ("minute", "hour", "day"):
            logger.warning(f"Invalid granularity: {granularity}, using 'hour'")
        pairs: List[Tuple[str, int]] = self._native.violation_timeline(
            max(0, int(hours)), granularity, self._now()
        )
        return dict(pairs)

    def get_rule_statistics(self) -> Dict[str, Dict]:
        """Per rule over the requests held: `total_requests`, `allowed`, `blocked`,
        `violation_rate` (%) and `unique_identifiers`."""
        return RuleStatistics(self._native.rule_statistics())

    def get_summary(self) -> Dict[str, Any]:
        """`total_requests`, `total_violations`, `unique_identifiers` and
        `blocked_identifiers` (among the requests held), `violation_rate` (%),
        `most_triggered_rule` and `records_stored`."""
        return dict(self._native.summary())

    @property
    def requests(self) -> List[Dict[str, Any]]:
        """The requests held, oldest first, as exported."""
        return list(self._native.records("requests"))

    @property
    def violations(self) -> List[Dict[str, Any]]:
        """The violations held, oldest first, as exported."""
        return list(self._native.records("violations"))

    # Exports

    def export_report(
        self,
        filename: str = "ratethrottle_report.json",
        include_raw_data: bool = False,
        format: Optional[str] = None,
    ) -> None:
        """Writes the report as JSON (`format`, as the docs pass it, must be `"json"`).

        Raises:
            IOError: the file cannot be written
        """
        if format is not None and format != "json":
            raise ValueError(f"export_report writes JSON; format must be 'json', got {format!r}")
        self._native.export_report(str(filename), bool(include_raw_data), self._now())
        logger.info(f"Report exported to {filename}")

    def export_csv(
        self,
        filename: str = "ratethrottle_violations.csv",
        data_type: str = "violations",
        format: Optional[str] = None,
    ) -> None:
        """Writes the violations or the requests held as CSV (no file when there are none,
        as in the original; `format`, as the docs pass it, must be `"csv"`).

        Raises:
            ValueError: an unknown `data_type`
            IOError: the file cannot be written
        """
        if format is not None and format != "csv":
            raise ValueError(f"export_csv writes CSV; format must be 'csv', got {format!r}")
        rows = self._native.export_csv(str(filename), data_type)
        if rows == 0:
            logger.warning(f"No {data_type} data to export")
        else:
            logger.info(f"CSV exported to {filename} ({rows} records)")

    def get_report(self, include_raw_data: bool = False) -> Dict[str, Any]:
        """The report `export_report` writes, as a dict."""
        report: Dict[str, Any] = self._native.report(bool(include_raw_data), self._now())
        return report

    # Housekeeping

    def clear_old_data(self, days: int = 30) -> int:
        """Drops the records older than `days` days; how many."""
        cleared: int = self._native.clear_old_data(float(days), self._now())
        logger.info(f"Cleared {cleared} records older than {days} days")
        return cleared

    def reset(self) -> None:
        """Forgets everything."""
        self._native.reset()
        logger.info("Analytics data reset")

    def __repr__(self) -> str:
        stored = self._native.summary()["records_stored"]
        return (
            f"RateThrottleAnalytics(requests={stored['requests']}, "
            f"violations={stored['violations']})"
        )

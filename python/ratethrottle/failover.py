"""
What checks answer while the storage fails: the original's `FailureMode` and
`FailoverHandler`, used by `AsyncRateThrottleCore(failure_mode=...)`.

Underneath, the storage's own fault policy answers each check Redis cannot decide (see
`RedisStorage(fault_policy=...)`); the handler then counts those failures and, once
`max_failures` happened within `failure_window` seconds, `FailureMode.STRICT` denies until a
check succeeds again, while `OPEN` and `BYPASS` let requests through.

    >>> handler = FailoverHandler(FailureMode.STRICT, max_failures=2)
    >>> handler.record_failure(); handler.should_allow()
    True
    >>> handler.record_failure(); handler.should_allow()
    False
    >>> handler.record_success(); handler.should_allow()
    True
"""

from __future__ import annotations

import logging
import threading
import time
from enum import Enum
from typing import Any, Callable, Dict, List, Optional

__all__ = ["FailoverHandler", "FailureMode"]

logger = logging.getLogger(__name__)


class FailureMode(Enum):
    """
    How rate limiting behaves when storage fails.

    STRICT: deny once failures pile up (fail closed): no unchecked access
    OPEN: allow (fail open): the service stays available
    BYPASS: skip rate limiting (for tests or an emergency): allow
    """

    STRICT = "strict"
    OPEN = "open"
    BYPASS = "bypass"


class FailoverHandler:
    """
    Counts storage failures in a sliding window and says whether requests may pass.

    Args:
        failure_mode: How to handle failures
        custom_handler: Called with the mode when failover starts (its errors are logged)
        max_failures: Failures within `failure_window` that start failover
        failure_window: Seconds failures are counted over
    """

    def __init__(
        self,
        failure_mode: FailureMode = FailureMode.STRICT,
        custom_handler: Optional[Callable[[FailureMode], Any]] = None,
        max_failures: int = 5,
        failure_window: int = 60,
    ) -> None:
        if not isinstance(failure_mode, FailureMode):
            failure_mode = FailureMode(failure_mode)
        self.failure_mode = failure_mode
        self.custom_handler = custom_handler
        self.max_failures = max_failures
        self.failure_window = failure_window
        self._failure_count = 0
        self._failure_timestamps: List[float] = []
        self._in_failover = False
        self._lock = threading.Lock()

    def record_failure(self) -> None:
        """Records a storage failure; starts failover at `max_failures` in the window."""
        now = time.time()
        with self._lock:
            self._failure_timestamps = [
                t for t in self._failure_timestamps if now - t < self.failure_window
            ]
            self._failure_timestamps.append(now)
            self._failure_count = len(self._failure_timestamps)
            starts = self._failure_count >= self.max_failures and not self._in_failover
            if self._failure_count >= self.max_failures:
                self._in_failover = True
        if starts:
            logger.error(
                f"Failover triggered: {self._failure_count} failures "
                f"in {self.failure_window}s, mode={self.failure_mode.value}"
            )
            if self.custom_handler:
                try:
                    self.custom_handler(self.failure_mode)
                except Exception as e:
                    logger.error(f"Custom failover handler error: {e}")

    def record_success(self) -> None:
        """Records a storage success: ends failover."""
        if not self._in_failover:
            return
        with self._lock:
            self._in_failover = False
            self._failure_count = 0
            self._failure_timestamps = []
        logger.info("Failover resolved - storage healthy again")

    def should_allow(self) -> bool:
        """Whether a request the storage could not decide may pass."""
        if self.failure_mode == FailureMode.STRICT:
            return not self._in_failover
        return True

    def get_status(self) -> Dict[str, Any]:
        """`in_failover`, `failure_count`, `failure_mode` and `failures_in_window`."""
        return {
            "in_failover": self._in_failover,
            "failure_count": self._failure_count,
            "failure_mode": self.failure_mode.value,
            "failures_in_window": len(self._failure_timestamps),
        }

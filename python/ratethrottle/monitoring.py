"""
RateThrottle - Monitoring: a background thread that takes a snapshot of the limiter, DDoS
protection and analytics at a fixed rate, logs it, writes it as JSON, and (ours) hands it to
an `AlertDispatcher`.

The original's API (`RateThrottleMonitor`) and snapshot keys: `timestamp`, `limiter` (its
`get_metrics()`), `ddos` (its `get_statistics()`) and `analytics` (its `get_summary()`), each
present only when its source was given. The figures come from the Rust engine the sources
run on; a source that fails is reported as `{"error": ...}` in the snapshot, never raised.

    >>> from ratethrottle import RateThrottleCore
    >>> monitor = RateThrottleMonitor({'interval': 60}, limiter=RateThrottleCore())
    >>> sorted(monitor.snapshot_now())
    ['limiter', 'timestamp']
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)


class RateThrottleMonitor:
    """
    Snapshots metrics at a fixed rate on a background thread.

    Args:
        config: `enabled` (True), `interval` (60 s), `log_metrics` (True), `export_json`
            (False), `export_path` (`metrics/metrics.json`)
        limiter: A `RateThrottleCore` (anything with `get_metrics()`)
        ddos: A `DDoSProtection` (anything with `get_statistics()`)
        analytics: A `RateThrottleAnalytics` (anything with `get_summary()`)
        dispatcher: An `AlertDispatcher` each snapshot is checked by (not in the original)

    Raises:
        ValueError: `monitoring.interval must be positive`
    """

    def __init__(
        self,
        config: Dict[str, Any],
        limiter: Any = None,
        ddos: Any = None,
        analytics: Any = None,
        *,
        dispatcher: Any = None,
    ) -> None:
        config = dict(config or {})
        self.enabled = bool(config.get("enabled", True))
        self.interval = int(config.get("interval", 60))
        self.log_metrics = bool(config.get("log_metrics", True))
        self.export_json = bool(config.get("export_json", False))
        self.export_path = Path(config.get("export_path", "metrics/metrics.json"))
        self.limiter = limiter
        self.ddos = ddos
        self.analytics = analytics
        self.dispatcher = dispatcher
        if self.interval <= 0:
            raise ValueError(f"monitoring.interval must be positive, got {self.interval}")
        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._latest: Dict[str, Any] = {}
        logger.info(
            "RateThrottleMonitor initialised: interval=%ss, log=%s, export_json=%s",
            self.interval,
            self.log_metrics,
            self.export_json,
        )

    def start(self) -> None:
        """Starts the background thread (idempotent; nothing when disabled)."""
        if not self.enabled:
            logger.info("Monitoring disabled — not starting")
            return
        if self._thread and self._thread.is_alive():
            logger.warning("Monitor already running")
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._loop, name="ratethrottle-monitor", daemon=True)
        self._thread.start()
        logger.info("RateThrottleMonitor started")

    def stop(self) -> None:
        """Stops the background thread and waits for it."""
        self._stop_event.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        logger.info("RateThrottleMonitor stopped")

    def latest_snapshot(self) -> Dict[str, Any]:
        """The most recent periodic snapshot (empty before the first)."""
        with self._lock:
            return dict(self._latest)

    def snapshot_now(self) -> Dict[str, Any]:
        """A snapshot now (always safe to call)."""
        snapshot: Dict[str, Any] = {"timestamp": datetime.now().isoformat()}
        for key, source, method in (
            ("limiter", self.limiter, "get_metrics"),
            ("ddos", self.ddos, "get_statistics"),
            ("analytics", self.analytics, "get_summary"),
        ):
            if source is None:
                continue
            try:
                snapshot[key] = getattr(source, method)()
            except Exception as exc:  # a failing source is reported, never raised
                logger.error("Monitor: %s.%s() failed: %s", key, method, exc)
                snapshot[key] = {"error": str(exc)}
        return snapshot

    def tick(self) -> Dict[str, Any]:
        """One round: a snapshot kept as the latest, logged, written and checked for alerts as
        configured (what the thread does each interval)."""
        snapshot = self.snapshot_now()
        with self._lock:
            self._latest = snapshot
        if self.log_metrics:
            self._log_snapshot(snapshot)
        if self.export_json:
            self._write_json(snapshot)
        if self.dispatcher is not None:
            try:
                self.dispatcher.check_and_alert(snapshot)
            except Exception as exc:
                logger.error("Monitor: alerting failed: %s", exc)
        return snapshot

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.interval
        while not self._stop_event.wait(timeout=max(0.0, next_tick - time.monotonic())):
            try:
                self.tick()
            except Exception as exc:
                logger.error("Monitor tick error: %s", exc)
            next_tick += self.interval
            now = time.monotonic()
            if next_tick <= now:
                skipped = int((now - next_tick) / self.interval) + 1
                logger.warning("Monitor tick was slow; skipping %d interval(s)", skipped)
                next_tick += skipped * self.interval

    def _log_snapshot(self, snapshot: Dict[str, Any]) -> None:
        parts = [f"ts={snapshot['timestamp']}"]
        lm = snapshot.get("limiter", {})
        if lm and "error" not in lm:
            parts.append(
                f"requests={lm.get('total_requests', 0)} "
                f"blocked={lm.get('blocked_requests', 0)} "
                f"block_rate={lm.get('block_rate', 0.0):.2f}%"
            )
        dd = snapshot.get("ddos", {})
        if dd and "error" not in dd:
            parts.append(
                f"ddos_blocked_ips={dd.get('blocked_ips', 0)} "
                f"detection_rate={dd.get('detection_rate', 0.0):.2f}%"
            )
        an = snapshot.get("analytics", {})
        if an and "error" not in an:
            parts.append(
                f"unique_clients={an.get('unique_identifiers', 0)} "
                f"violation_rate={an.get('violation_rate', 0.0):.2f}%"
            )
        logger.info("RateThrottle metrics | " + " | ".join(parts))

    def _write_json(self, snapshot: Dict[str, Any]) -> None:
        try:
            self.export_path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(
                dir=self.export_path.parent, prefix=self.export_path.name, suffix=".tmp"
            )
            with os.fdopen(fd, "w") as fh:
                json.dump(snapshot, fh, indent=2, default=str)
            os.replace(temporary, self.export_path)
        except Exception as exc:
            logger.error("Monitor: failed to write %s: %s", self.export_path, exc)

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"RateThrottleMonitor(interval={self.interval}s, running={running})"

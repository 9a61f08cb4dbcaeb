"""
RateThrottle - Alerting: thresholds on the monitor's snapshots, sent to Slack, a webhook,
email and PagerDuty, at most once per cooldown for each event and severity.

The original's API (`AlertDispatcher`) on the Rust dispatcher (crate `ratethrottle-alert`):

- the cooldown is claimed in the storage with one atomic set-if-absent, so processes sharing
  a `RedisStorage` send one alert together (1.4.0 reads, then writes: each may send);
- deliveries run in the background, each channel with a time limit and 3 attempts, so
  `send` and `check_and_alert` return at once and a hanging channel holds nothing up
  (`flush()` waits for them);
- every endpoint is configurable (`pagerduty.url`; 1.4.0 hard-codes PagerDuty's), and a
  webhook `secret` signs each body (`X-RateThrottle-Signature: sha256=<hex>` of
  `<X-RateThrottle-Timestamp>.<body>`, HMAC-SHA256);
- violations per minute are read from the analytics summary, as 1.4.0 does, or from the
  limiter's `total_violations` when there is no analytics; store errors per minute and the
  store's circuit openings raise alerts too.

    >>> dispatcher = AlertDispatcher({'enabled': True})
    >>> dispatcher.send('warning', 'block_rate_exceeded', value=12.5, threshold=10.0)
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ._native import ManualClock, NativeAlerts
from .core import RateThrottleCore

logger = logging.getLogger(__name__)

#: PagerDuty's Events API v2 endpoint (the default of `pagerduty.url`).
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

_THRESHOLDS = {
    "block_rate_warning": 5.0,
    "block_rate_critical": 20.0,
    "violations_per_minute_warning": 50.0,
    "violations_per_minute_critical": 200.0,
    "ddos_score_warning": 0.5,
    "ddos_score_critical": 0.8,
    "store_errors_per_minute_warning": 1.0,
    "store_errors_per_minute_critical": 60.0,
}


class AlertDispatcher:
    """
    Evaluate live metrics against thresholds and dispatch alerts.

    Args:
        config: The original's dict (`enabled`, `cooldown_seconds`, `thresholds`, `slack`,
            `webhook`, `email`, `pagerduty`), e.g. from `ConfigManager.get_alerting_config()`.
            Secrets may come from `RT_SLACK_WEBHOOK_URL`, `RT_WEBHOOK_URL`,
            `RT_WEBHOOK_SECRET`, `RT_EMAIL_PASSWORD` and `RT_PAGERDUTY_KEY`.
        storage: A shared `InMemoryStorage`/`RedisStorage` for the cooldowns (the one your
            `RateThrottleCore` uses: on Redis a fleet shares them); default: this process.
        clock: A `ManualClock` for tests (with no `storage`).
    """

    def __init__(
        self,
        config: Dict[str, Any],
        storage: Any = None,
        *,
        clock: Optional[ManualClock] = None,
    ) -> None:
        config = dict(config or {})
        self.enabled = bool(config.get("enabled", False))
        self.cooldown_seconds = int(config.get("cooldown_seconds", 300))
        given = config.get("thresholds", {}) or {}
        self.thresholds: Dict[str, float] = {
            name: float(given.get(name, default)) for name, default in _THRESHOLDS.items()
        }
        self._slack_cfg = dict(config.get("slack", {}) or {})
        self._webhook_cfg = dict(config.get("webhook", {}) or {})
        self._email_cfg = dict(config.get("email", {}) or {})
        self._pagerduty_cfg = dict(config.get("pagerduty", {}) or {})
        self._storage = storage
        # Channels enabled but not usable: their error is logged at each send, as 1.4.0's.
        self._misconfigured: List[Tuple[str, str]] = []
        # The cooldowns live in the storage's store, on its clock.
        self._native = NativeAlerts(
            RateThrottleCore(storage, clock=clock),
            self.enabled,
            float(self.cooldown_seconds),
            self.thresholds,
            float(self._webhook_cfg.get("timeout", 10)),
            slack=self._slack(),
            webhook=self._webhook(),
            email=self._email(),
            pagerduty=self._pagerduty(),
        )
        logger.info(
            "AlertDispatcher initialised: enabled=%s, cooldown=%ss, distributed=%s",
            self.enabled,
            self.cooldown_seconds,
            f"yes (storage={type(storage).__name__})" if storage is not None else "no (local)",
        )

    def _unusable(self, name: str, message: str) -> None:
        self._misconfigured.append((name, message))

    def _slack(self) -> Optional[Tuple[str, str, str]]:
        cfg = self._slack_cfg
        if not cfg.get("enabled"):
            return None
        url = os.environ.get("RT_SLACK_WEBHOOK_URL") or cfg.get("webhook_url", "")
        if not url:
            self._unusable("slack", "Slack webhook_url not configured")
            return None
        return (url, str(cfg.get("channel", "#alerts")), str(cfg.get("username", "RateThrottle")))

    def _webhook(self) -> Optional[Tuple[str, List[Tuple[str, str]], Optional[str]]]:
        cfg = self._webhook_cfg
        if not cfg.get("enabled"):
            return None
        url = cfg.get("url", "") or os.environ.get("RT_WEBHOOK_URL", "")
        if not url:
            self._unusable("webhook", "Webhook url not configured")
            return None
        headers = [(str(k), str(v)) for k, v in (cfg.get("headers", {}) or {}).items()]
        secret = os.environ.get("RT_WEBHOOK_SECRET") or cfg.get("secret") or None
        return (url, headers, secret)

    def _email(self) -> Optional[Tuple[str, int, bool, Optional[str], Optional[str], str, List[str]]]:
        cfg = self._email_cfg
        if not cfg.get("enabled"):
            return None
        to = [str(a) for a in cfg.get("to_addresses", []) or []]
        if not to:
            self._unusable("email", "Email to_addresses is empty")
            return None
        password = os.environ.get("RT_EMAIL_PASSWORD") or cfg.get("password", "") or None
        return (
            str(cfg.get("smtp_host", "localhost")),
            int(cfg.get("smtp_port", 587)),
            bool(cfg.get("use_tls", True)),
            cfg.get("username") or None,
            password,
            str(cfg.get("from_address", "")),
            to,
        )

    def _pagerduty(self) -> Optional[Tuple[str, str]]:
        cfg = self._pagerduty_cfg
        if not cfg.get("enabled"):
            return None
        key = os.environ.get("RT_PAGERDUTY_KEY") or cfg.get("routing_key", "")
        if not key:
            self._unusable("pagerduty", "PagerDuty routing_key not configured")
            return None
        return (key, str(cfg.get("url", PAGERDUTY_EVENTS_URL)))

    def check_and_alert(self, snapshot: Dict[str, Any]) -> None:
        """Checks a `RateThrottleMonitor` snapshot against the thresholds and sends what it
        calls for (`block_rate_exceeded`, `violations_per_minute_exceeded`,
        `ddos_score_exceeded`, and ours: `store_errors_exceeded`, `store_circuit_opened`)."""
        if not self.enabled:
            return
        self._log_misconfigured()
        limiter = snapshot.get("limiter", {}) or {}
        analytics = snapshot.get("analytics", {}) or {}
        ddos = snapshot.get("ddos", {}) or {}
        if "error" in limiter:
            limiter = {}
        violations = analytics.get("total_violations")
        if violations is None or "error" in analytics:
            violations = limiter.get("total_violations", 0)
        rate = None
        if ddos and "error" not in ddos:
            rate = float(ddos.get("detection_rate", 0.0))
        self._native.check(
            float(limiter.get("block_rate", 0.0)),
            int(violations or 0),
            int(limiter.get("store_errors", 0) or 0),
            int(limiter.get("store_circuit_opens", 0) or 0),
            rate,
            int(ddos.get("blocked_ips", 0) or 0) if rate is not None else 0,
        )

    def send(
        self,
        severity: str,
        event: str,
        rule: str = "",
        value: float = 0.0,
        threshold: float = 0.0,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Sends an alert to the enabled channels, unless the same event at the same severity
        went out within the cooldown. Returns at once; deliveries run in the background."""
        if not self.enabled:
            return
        self._log_misconfigured()
        outcome = self._native.send(
            str(severity),
            str(event),
            str(rule or ""),
            float(value),
            float(threshold),
            json.dumps(details or {}, default=str),
        )
        if outcome == "suppressed":
            logger.debug("Alert suppressed (cooldown): %s/%s", event, severity)

    def _log_misconfigured(self) -> None:
        for name, message in self._misconfigured:
            logger.error("%s alert failed: %s", name, message)

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits up to `timeout` seconds for the alerts being delivered: whether all ended
        (not in the original)."""
        return bool(self._native.flush(float(timeout)))

    def get_statistics(self) -> Dict[str, int]:
        """`sent`, `failed`, `suppressed`, `dropped` and `channel_failures` (not in the
        original)."""
        return dict(self._native.statistics())

    def __repr__(self) -> str:
        channels = [
            name
            for name, cfg in [
                ("slack", self._slack_cfg),
                ("webhook", self._webhook_cfg),
                ("email", self._email_cfg),
                ("pagerduty", self._pagerduty_cfg),
            ]
            if cfg.get("enabled")
        ]
        return (
            f"AlertDispatcher(enabled={self.enabled}, "
            f"channels=[{', '.join(channels) or 'none'}], "
            f"cooldown={self.cooldown_seconds}s, "
            f"distributed={self._storage is not None})"
        )

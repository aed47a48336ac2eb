"""Alerts: raised by monitors, de-duplicated over a window, delivered to log and webhook channels.

An alert has a stable ``key`` (what is wrong, e.g. ``queue.backlog:dataset``) and a severity. The
same key and severity fire once per window: the first process to ``SET NX EX`` the key in Redis
sends it, every other process (or a later run of the same monitor) within the window stays quiet.
A higher severity for the same key is a new alert, so an escalation is never swallowed.

A condition that ends is announced too: an alert with ``resolved=True`` (same key and severity,
``[resolved]`` in its text). ``relay.monitoring.watch`` decides when a condition starts and ends.

Channels: ``LogChannel`` (always), ``WebhookChannel`` (the alert as JSON) and ``SlackChannel``
(a Slack incoming-webhook payload: ``text`` plus ``blocks``).

Channels never raise: a webhook that is down is logged, and the next alert tries again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import redis

if TYPE_CHECKING:
    from relay.config import Settings

log = logging.getLogger(__name__)

DEDUP_PREFIX = "relay:alert:"


class Severity(StrEnum):
    """How bad it is; channels may ignore alerts below their threshold."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @property
    def log_level(self) -> int:
        return _LOG_LEVELS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}
_LOG_LEVELS = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


@dataclass(frozen=True)
class Alert:
    """Something an operator should know about."""

    key: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    # True for the message that a condition alerted earlier has ended.
    resolved: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "severity": str(self.severity),
            "message": self.message,
            "details": self.details,
            "at": self.at,
            "resolved": self.resolved,
        }

    @property
    def dedup_key(self) -> str:
        """What de-duplication remembers: key and severity (and whether it is a recovery)."""
        return f"{self.key}:{'resolved' if self.resolved else self.severity}"


# --- de-duplication ------------------------------------------------------------------------------


class Deduplicator(Protocol):
    """Decides whether an alert key fires now or was fired within the window."""

    def first(self, key: str, window: int) -> bool:
        """True (and remember ``key`` for ``window`` seconds) unless it was seen in the window."""
        ...

    def forget(self, keys: Sequence[str]) -> None:
        """Let ``keys`` fire again at once (their condition changed)."""
        ...


class RedisDeduplicator:
    """``SET key 1 NX EX window``: one winner across every process sharing the Redis."""

    def __init__(self, client: redis.Redis, prefix: str = DEDUP_PREFIX) -> None:
        self.redis = client
        self.prefix = prefix

    def first(self, key: str, window: int) -> bool:
        if window <= 0:
            return True
        try:
            return bool(self.redis.set(self.prefix + key, "1", nx=True, ex=window))
        except redis.RedisError:
            # Redis being away is exactly when alerts matter: send a duplicate rather than none.
            log.warning(
                "alert de-duplication unavailable; sending",
                extra={"action": "alert.dedup_failed", "alert_key": key},
            )
            return True

    def forget(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            self.redis.delete(*(self.prefix + key for key in keys))
        except redis.RedisError:
            log.warning("alert de-duplication unavailable", extra={"action": "alert.dedup_failed"})


class MemoryDeduplicator:
    """In-process de-duplication (one process, tests)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, key: str, window: int) -> bool:
        if window <= 0:
            return True
        now = self._clock()
        with self._lock:
            if self._until.get(key, 0.0) > now:
                return False
            self._until[key] = now + window
            return True

    def forget(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._until.pop(key, None)


# --- channels -------------------------------------------------------------------------------------


class AlertChannel(Protocol):
    """Where alerts go."""

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert``; must not raise."""
        ...


class LogChannel:
    """One JSON log line per alert with ``action: "alert"``, at the alert's severity."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("relay.alerts")

    def send(self, alert: Alert) -> None:
        self.logger.log(
            logging.INFO if alert.resolved else alert.severity.log_level,
            alert.message,
            extra={
                "action": "alert.resolved" if alert.resolved else "alert",
                "alert_key": alert.key,
                "severity": str(alert.severity),
                "details": alert.details,
            },
        )


class WebhookChannel:
    """POSTs the alert as JSON; a failure (network, non-2xx) is logged, never raised."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        min_severity: Severity = Severity.WARNING,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.min_severity = min_severity

    def send(self, alert: Alert) -> None:
        if alert.severity.rank < self.min_severity.rank:
            return
        _post(self.url, self.payload(alert), self.timeout, alert, self.name)

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {"source": "relay", **alert.as_dict()}


_SLACK_ICONS = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.ERROR: ":x:",
    Severity.CRITICAL: ":rotating_light:",
}


class SlackChannel(WebhookChannel):
    """POSTs to a Slack incoming webhook: a ``text`` fallback and ``blocks`` (header line, the
    message, the details as fields)."""

    name = "slack"

    def payload(self, alert: Alert) -> dict[str, Any]:
        icon = ":white_check_mark:" if alert.resolved else _SLACK_ICONS[alert.severity]
        state = "resolved" if alert.resolved else str(alert.severity)
        headline = f"{icon} relay {state}: {alert.key}"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:2900]}},
        ]
        fields = [
            {"type": "mrkdwn", "text": f"*{name}*\n{_short(value)}"}
            for name, value in list(alert.details.items())[:10]  # Slack takes 10 fields
        ]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alert.at)),
                    }
                ],
            }
        )
        return {"text": f"{headline}: {alert.message}", "blocks": blocks}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 500 else text[:497] + "..."


def _post(url: str, body: dict[str, Any], timeout: float, alert: Alert, channel: str) -> None:
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.post(url, json=body)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning(
            f"alert {channel} failed: {type(exc).__name__}: {exc}",
            extra={"action": f"alert.{channel}_failed", "alert_key": alert.key},
        )


# --- manager --------------------------------------------------------------------------------------


class AlertManager:
    """Raise alerts: de-duplicate, then hand each to every channel."""

    def __init__(
        self,
        channels: Sequence[AlertChannel],
        dedup: Deduplicator,
        *,
        window: int = 300,
    ) -> None:
        self.channels = list(channels)
        self.dedup = dedup
        self.window = window

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> AlertManager:
        """Log channel always, webhook when ``RELAY_MONITORING_ALERT_WEBHOOK`` is set, Slack when
        ``RELAY_MONITORING_ALERT_SLACK_WEBHOOK`` is set."""
        monitoring = settings.monitoring
        channels: list[AlertChannel] = [LogChannel()]
        minimum = Severity(monitoring.alert_webhook_min_severity)
        timeout = monitoring.alert_webhook_timeout
        if monitoring.alert_webhook:
            channels.append(
                WebhookChannel(monitoring.alert_webhook, timeout=timeout, min_severity=minimum)
            )
        if monitoring.alert_slack_webhook:
            channels.append(
                SlackChannel(monitoring.alert_slack_webhook, timeout=timeout, min_severity=minimum)
            )
        return cls(channels, RedisDeduplicator(client), window=monitoring.alert_dedup_seconds)

    def raise_alert(self, alert: Alert) -> bool:
        """Send ``alert`` unless the same key and severity fired within the window.

        Returns True when it was sent, False when it was suppressed as a duplicate.
        """
        if not self.dedup.first(alert.dedup_key, self.window):
            return False
        for channel in self.channels:
            try:
                channel.send(alert)
            except Exception:
                # A channel is not supposed to raise; one that does must not silence the others.
                log.exception(
                    "alert channel failed",
                    extra={"action": "alert.channel_failed", "channel": channel.name},
                )
        return True

    def forget(self, key: str) -> None:
        """Forget that ``key`` fired (at any severity, or as resolved): its next change is sent."""
        self.dedup.forget([f"{key}:{s}" for s in (*Severity, "resolved")])

    def raise_all(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Raise each alert; returns those that were sent."""
        return [alert for alert in alerts if self.raise_alert(alert)]

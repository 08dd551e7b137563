"""Alerts about gate failures and promotions: always a log line, a webhook when configured."""

import json
import logging
import urllib.request
from typing import Any, ClassVar

from dagster import ConfigurableResource, get_dagster_logger


class Notifier(ConfigurableResource):
    """Logs every alert; posts it as JSON to `webhook_url` when one is configured."""

    webhook_url: str | None = None
    timeout_seconds: float = 5.0

    def notify(self, event: str, payload: dict[str, Any]) -> bool:
        """Send one alert; returns whether the webhook (if any) accepted it."""
        log = get_dagster_logger()
        log.log(
            logging.WARNING if event == "gate_failed" else logging.INFO,
            f"[eval-assets] {event}: {payload.get('summary', '')}",
        )
        if not self.webhook_url:
            return True
        body = json.dumps({"event": event, **payload}, default=str).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= response.status < 300
        except OSError as exc:
            # An unreachable webhook must not fail the evaluation: the log line above stands.
            log.error(f"[eval-assets] webhook {self.webhook_url} failed: {exc}")
            return False


class RecordingNotifier(Notifier):
    """A notifier for tests that keeps what it was asked to send."""

    sent: ClassVar[list[dict[str, Any]]] = []

    def notify(self, event: str, payload: dict[str, Any]) -> bool:
        RecordingNotifier.sent.append({"event": event, **payload})
        return super().notify(event, payload)

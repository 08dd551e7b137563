"""Alerts about gate failures and promotions: always a log line, a webhook when configured."""

import json
import logging
import urllib.request
from typing import Any

from dagster import ConfigurableResource, get_dagster_logger

from eval_assets.core.redact import redact_url, scrub, url_secrets


class Notifier(ConfigurableResource):
    """Logs every alert; posts it as JSON to `webhook_url` when one is configured.

    The URL is a secret (webhook services put the token in its path or query): it is shown only
    as scheme, host and port, and never in what a failure to deliver leaves in the logs.
    """

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
        try:
            request = urllib.request.Request(
                self.webhook_url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= response.status < 300
        except Exception as exc:
            # Not only OSError: a malformed URL raises ValueError (http.client.InvalidURL), and an
            # alert that cannot be sent must never fail the evaluation: the log line above stands.
            # urllib's messages may quote the URL or parts of it, hence the scrub.
            reason = scrub(
                f"{type(exc).__name__}: {exc}", url_secrets(self.webhook_url, path_is_secret=True)
            )
            shown = redact_url(self.webhook_url, keep_path=False)
            log.error(f"[eval-assets] {event} alert not delivered to webhook {shown}: {reason}")
            return False

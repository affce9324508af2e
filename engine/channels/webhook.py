"""Signed JSON webhooks: POST the message, signed like PagerDuty webhooks v3.

`X-Watchkeeper-Timestamp: <unix seconds>` and `X-Watchkeeper-Signature: v1=<hex>` where hex is
HMAC-SHA256(key, f"{timestamp}.{body}"). Several keys during a rotation give several comma-separated v1=
values. A receiver recomputes the HMAC and refuses old timestamps (replays).

The key: the target's own secret `webhook_signing_key:<target>` when the policy target the message was written
for has a name and that secret is set (so each receiver holds only its own key), else the general
`webhook_signing_key`. A per-target key is read when it is needed, so a rotated key applies to the next webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from engine.channels.base import (
    Capabilities,
    OutgoingMessage,
    SendError,
    SendResult,
    StatusResult,
    classify_http_status,
    parse_retry_after,
    scrub,
)
from engine.clock import Clock
from engine.errors import WatchkeeperError
from engine.secrets import target_secret_name

SIGNATURE_HEADER = "X-Watchkeeper-Signature"
TIMESTAMP_HEADER = "X-Watchkeeper-Timestamp"


def sign(keys: list[str], timestamp: str, body: bytes) -> str:
    signed = timestamp.encode() + b"." + body
    return ",".join("v1=" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in keys if key)


def verify(key: str, timestamp: str, body: bytes, header: str) -> bool:
    expected = sign([key], timestamp, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


def payload(message: OutgoingMessage, sent_at: str) -> dict[str, Any]:
    return {
        "event": {
            "id": message.idempotency_key or str(message.id),
            "kind": message.kind,
            "sent_at": sent_at,
            "data": {
                "message_id": message.id,
                "incident_id": message.incident_id,
                "escalation_id": message.escalation_id,
                "critical": message.critical,
                "subject": message.subject,
                "body": message.body,
                "reply_code": message.reply_code,
            },
        }
    }


class WebhookSender:
    name = "webhook"
    simulated = False
    capabilities = Capabilities()

    def __init__(
        self,
        *,
        signing_key: str | None,
        timeout: float,
        clock: Clock,
        secret: Callable[[str], str | None] | None = None,
    ) -> None:
        self._key = signing_key
        self._secret = secret  # reads a per-target key by name (engine.secrets.SecretStore.get)
        self.timeout = timeout
        self.clock = clock

    def key_for(self, target: str | None) -> str | None:
        """The key that signs webhooks to `target` (a policy target's name): its own, else the general one."""
        name = target_secret_name(target)
        if name is None or self._secret is None:
            return self._key
        try:
            own = self._secret(name)
        except WatchkeeperError as exc:
            # Signing with another key would only have the receiver refuse it: wait for the keyring instead.
            raise SendError(f"the key {name} cannot be read: {exc}", retryable=True, code="secret") from None
        return own or self._key

    def send(self, message: OutgoingMessage) -> SendResult:
        now = self.clock.now()
        body = json.dumps(payload(message, now.isoformat()), separators=(",", ":")).encode()
        timestamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Watchkeeper-Webhook/1",
            TIMESTAMP_HEADER: timestamp,
        }
        key = self.key_for(message.target)
        if key:
            headers[SIGNATURE_HEADER] = sign([key], timestamp, body)
        request = urllib.request.Request(message.address, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
                request_id = response.headers.get("X-Request-Id") or ""
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response; close it so no socket is left behind
            retryable, retry_after = classify_http_status(
                exc.code, parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            )
            raise SendError(
                f"webhook answered HTTP {exc.code}",
                retryable=retryable,
                code=str(exc.code),
                retry_after=retry_after,
            ) from None
        except TimeoutError:
            raise SendError("webhook did not answer in time", retryable=True, code="timeout") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            text = scrub(f"cannot reach webhook: {reason}", [key, self._key])
            retryable = not isinstance(reason, ValueError)
            raise SendError(text, retryable=retryable, code="connection") from None
        except ValueError as exc:  # a malformed URL will never work
            raise SendError(f"bad webhook URL: {exc}", retryable=False, code="url") from None
        return SendResult(
            provider_id=request_id or f"webhook-{message.id}-{timestamp}",
            status="delivered",
            detail=f"HTTP {status}",
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id=provider_id, status="delivered")

"""Simulated mode: what a channel does when it has no credentials.

Nothing is sent anywhere. The message is marked delivered with `simulated=True` on the outbox row and in the
timeline, so a new site can rehearse policies, chains and reply codes offline, and nobody mistakes a rehearsal
for a real page.
"""

from __future__ import annotations

from engine.channels.base import Capabilities, OutgoingMessage, SendResult, StatusResult
from engine.templates import sms_info


class SimulatedSender:
    simulated = True
    capabilities = Capabilities(supports_status_poll=True)

    def __init__(self, name: str, reason: str = "no credentials") -> None:
        self.name = name
        self.reason = reason

    def send(self, message: OutgoingMessage) -> SendResult:
        encoding: str | None = None
        segments: int | None = None
        if self.name in {"sms", "whatsapp"}:
            encoding, segments, _ = sms_info(message.body)
        return SendResult(
            provider_id=f"SIM-{self.name}-{message.id}",
            status="delivered",
            segments=segments,
            encoding=encoding,
            simulated=True,
            detail=f"simulated ({self.reason}): nothing was sent",
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id=provider_id, status="delivered")

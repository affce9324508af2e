"""The console channel: nothing leaves the building. The message is marked delivered and the dispatcher
records a `console_popup` event, which every console following the event feed shows as a pop-up."""

from __future__ import annotations

from engine.channels.base import Capabilities, OutgoingMessage, SendResult, StatusResult

CONSOLE_POPUP_EVENT = "console_popup"


class ConsoleSender:
    name = "console"
    simulated = False
    capabilities = Capabilities(supports_html=False)

    def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult(
            provider_id=f"console-{message.id}",
            status="delivered",
            detail="shown on consoles",
            event_kind=CONSOLE_POPUP_EVENT,
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id=provider_id, status="delivered")

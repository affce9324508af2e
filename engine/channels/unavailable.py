"""A channel this site has not set up (no credentials, no sender number, no SMTP host) and does not simulate.

It never pretends to send: the dispatcher sees `available = False` and skips the message at once, with an event
saying why, so the person's chain moves straight on to a channel that can reach them. Simulation is a mode a
site chooses (the `simulated_channels` setting, the demo), never what a half-configured site silently gets.
"""

from __future__ import annotations

from engine.channels.base import Capabilities, OutgoingMessage, SendError, SendResult, StatusResult

NO_PROVIDER = "no_provider"


class UnavailableSender:
    simulated = False
    available = False
    capabilities = Capabilities()

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def send(self, message: OutgoingMessage) -> SendResult:
        raise SendError(f"{self.name} is not set up here: {self.reason}", retryable=False, code=NO_PROVIDER)

    def fetch_status(self, provider_id: str) -> StatusResult:
        raise SendError(f"{self.name} is not set up here: {self.reason}", retryable=False, code=NO_PROVIDER)

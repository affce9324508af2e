"""WhatsApp through the Twilio Messages API: `whatsapp:` addresses, and approved content templates
(content_sid + content_variables) for messages outside the 24-hour session window.

WhatsApp only lets a business send free text within 24 hours of the person's last message to it; after that
only a pre-approved template goes through. The dispatcher works out whether the window is open from the
person's last InboundMessage on WhatsApp and passes it in `OutgoingMessage.whatsapp_session_open`.
"""

from __future__ import annotations

import json
from typing import Any

from engine.channels.base import Capabilities, OutgoingMessage
from engine.channels.twilio_sms import TwilioMessagesSender

WHATSAPP_PREFIX = "whatsapp:"
SESSION_WINDOW_HOURS = 24


def whatsapp_address(number: str) -> str:
    number = number.strip()
    return number if number.startswith(WHATSAPP_PREFIX) else WHATSAPP_PREFIX + number


def plain_number(address: str) -> str:
    return address.removeprefix(WHATSAPP_PREFIX).strip()


class TwilioWhatsAppSender(TwilioMessagesSender):
    name = "whatsapp"
    capabilities = Capabilities(supports_status_poll=True, supports_inbound=True, max_body_chars=4096)

    def _address(self, number: str) -> str:
        return whatsapp_address(number)

    def _create_args(self, message: OutgoingMessage) -> dict[str, Any]:
        args = super()._create_args(message)
        if not message.whatsapp_session_open and message.content_sid:
            del args["body"]
            args["content_sid"] = message.content_sid
            args["content_variables"] = json.dumps(message.content_variables or {"1": message.body})
        return args

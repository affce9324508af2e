"""Voice calls through the Twilio Calls API with inline TwiML: the message is spoken, then one keypress
acknowledges (1) or resolves (2). The keypress arrives at the service's gather URL (engine.replies)."""

from __future__ import annotations

from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

from engine.channels.base import Capabilities, OutgoingMessage, SendResult, StatusResult
from engine.channels.twilio_common import (
    CALL_STATUS_MAP,
    make_client,
    price_of,
    send_error_from,
)

PROMPT = "Press 1 to acknowledge, or 2 to resolve."


def gather_url(public_base_url: str, message_id: int) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/voice/gather?{urlencode({'message_id': message_id})}"


def call_twiml(text: str, *, message_id: int | None, public_base_url: str = "", repeat: int = 2) -> str:
    """The TwiML for a page call: say the message, ask for one key, say it again once if nothing is pressed."""
    response = VoiceResponse()
    action = gather_url(public_base_url, message_id) if public_base_url and message_id is not None else None
    kwargs: dict[str, object] = {"num_digits": 1, "timeout": 8}
    if action:
        kwargs["action"] = action
        kwargs["method"] = "POST"
    for _ in range(max(1, repeat)):
        gather = response.gather(**kwargs)
        gather.say(text)
        gather.say(PROMPT)
    response.say("No key pressed. Goodbye.")
    return str(response)


class TwilioVoiceSender:
    name = "voice"
    simulated = False
    capabilities = Capabilities(supports_status_poll=True, supports_keypress=True)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str,
        timeout: float,
        public_base_url: str = "",
        pool_size: int = 8,
    ) -> None:
        self._token = auth_token
        self.from_number = from_number
        self.public_base_url = public_base_url
        self.client, self.http = make_client(account_sid, auth_token, base_url, timeout, pool_size)

    def send(self, message: OutgoingMessage) -> SendResult:
        twiml = call_twiml(message.body, message_id=message.id, public_base_url=self.public_base_url)
        args: dict[str, object] = {"to": message.address, "from_": self.from_number, "twiml": twiml}
        if self.public_base_url:
            args["status_callback"] = f"{self.public_base_url.rstrip('/')}/twilio/status"
        try:
            call = self.client.calls.create(**args)
        except Exception as exc:
            raise send_error_from(exc, self.http, [self._token]) from None
        return SendResult(
            provider_id=call.sid,
            status="sent",
            price=price_of(call.price),
            currency=call.price_unit or None,
            detail=f"{call.sid} {call.status}",
        )

    def fetch_status(self, provider_id: str) -> StatusResult:
        try:
            call = self.client.calls(provider_id).fetch()
        except Exception as exc:
            raise send_error_from(exc, self.http, [self._token]) from None
        return StatusResult(
            provider_id=provider_id,
            status=CALL_STATUS_MAP.get(str(call.status), "sent"),
            price=price_of(call.price),
            currency=call.price_unit or None,
        )

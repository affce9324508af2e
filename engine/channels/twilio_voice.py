"""Voice calls through the Twilio Calls API with inline TwiML, spoken in the person's language.

Where Twilio can call the service back (`public_base_url` set), the message is spoken and one keypress
acknowledges (1) or resolves (2); the keypress arrives at the service's gather URL (engine.replies). Where it
cannot (a workstation behind a firewall), a keypress would reach nobody, so the call does not ask for one: it
says the message and how to acknowledge by text message instead (the page's reply code), twice.

Calls are spoken with the `<Say>` language code and voice of the person's language file (resources/templates,
section `voice`): English (en-ZA) and Afrikaans (af-ZA). Twilio has no isiZulu voice; calls to isiZulu speakers
are spoken in English (engine.templates.spoken_language), and their text is the English voice template.
"""

from __future__ import annotations

from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from engine.channels.base import Capabilities, OutgoingMessage, SendResult, StatusResult
from engine.channels.twilio_common import (
    CALL_STATUS_MAP,
    make_client,
    price_of,
    send_error_from,
)
from engine.templates import voice_prompt, voice_words


def gather_url(public_base_url: str, message_id: int) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/voice/gather?{urlencode({'message_id': message_id})}"


def spelt_out(text: str) -> str:
    """A code or a phone number as a voice should read it: one character at a time ("4 8 2 9 1 3")."""
    return " ".join(ch for ch in text if not ch.isspace())


class Speaker:
    """`<Say>` in one language: its voice and language code, and its prompts."""

    def __init__(self, language: str) -> None:
        words = voice_words(language)
        self.language = language
        self.attributes = {
            k: v for k, v in (("voice", words.get("say_voice")), ("language", words.get("say_language"))) if v
        }

    def prompt(self, name: str, **context: str) -> str:
        return voice_prompt(self.language, name, **context)

    def say(self, verb: VoiceResponse | Gather, text: str) -> None:
        verb.say(text, **self.attributes)


def call_twiml(
    text: str,
    *,
    message_id: int | None,
    public_base_url: str = "",
    language: str = "en",
    reply_code: str | None = None,
    reply_by_text: bool = True,
    sms_number: str = "",
    repeat: int = 2,
) -> str:
    """The TwiML for a page call. With a public URL: say the message, ask for one key, say it again once if
    nothing is pressed. Without: say the message and how to acknowledge by text message (when a text can
    reach Watchkeeper: `reply_by_text`), twice."""
    response = VoiceResponse()
    speaker = Speaker(language)
    action = gather_url(public_base_url, message_id) if public_base_url and message_id is not None else None
    if action:
        for _ in range(max(1, repeat)):
            gather = response.gather(num_digits=1, timeout=8, action=action, method="POST")
            speaker.say(gather, text)
            speaker.say(gather, speaker.prompt("press_a_key"))
        speaker.say(response, speaker.prompt("no_key"))
        return str(response)
    how = (
        speaker.prompt("reply_by_text", reply_code=spelt_out(reply_code), sms_number=spelt_out(sms_number))
        if reply_code and reply_by_text
        else ""
    )
    for n in range(max(1, repeat)):
        if n:
            response.pause(length=1)
        speaker.say(response, text)
        if how:
            speaker.say(response, how)
    speaker.say(response, speaker.prompt("goodbye"))
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
        reply_by_text: bool = True,
        sms_number: str = "",
        pool_size: int = 8,
    ) -> None:
        self._token = auth_token
        self.from_number = from_number
        self.public_base_url = public_base_url
        # Without a keypress a person acknowledges by text (SMS or WhatsApp), to this number when known.
        self.reply_by_text = reply_by_text
        self.sms_number = sms_number
        if not public_base_url:  # Twilio cannot bring a keypress back: the call asks for a text instead
            self.capabilities = Capabilities(supports_status_poll=True, supports_keypress=False)
        self.client, self.http = make_client(account_sid, auth_token, base_url, timeout, pool_size)

    def send(self, message: OutgoingMessage) -> SendResult:
        twiml = call_twiml(
            message.body,
            message_id=message.id,
            public_base_url=self.public_base_url,
            language=message.language,
            reply_code=message.reply_code,
            reply_by_text=self.reply_by_text,
            sms_number=self.sms_number,
        )
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

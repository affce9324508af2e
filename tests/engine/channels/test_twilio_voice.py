"""Voice pages as the fake Twilio server receives them: spoken in the person's language where Twilio has a
voice, with a keypress only where Twilio can bring it back (public_base_url), else the reply code by text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from conftest import SMS_FROM, configure, message, start_page
from twilio.request_validator import RequestValidator

from engine import dispatch
from engine.channels import build_senders, install_senders
from engine.config_io import ConfigValidationError, import_text
from engine.context import AppContext
from engine.db import read_session
from engine.models import Incident, Page
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from tests.fakes.twilio_server import FakeTwilio
from tests.service.conftest import WsgiClient

PUBLIC = "https://wk.example.org"
ENGLISH = {"voice": "Polly.Ayanda-Neural", "language": "en-ZA"}
AFRIKAANS = {"voice": "Google.af-ZA-Standard-A", "language": "af-ZA"}


def _call(
    ctx: AppContext, fake: FakeTwilio, language: str, handle: str = "thandi"
) -> tuple[ET.Element, str, int]:
    """Page a person whose first channel is voice; the TwiML Twilio received, the page's reply code, the
    incident id."""
    incident_id, page_id, message_id = start_page(
        ctx,
        handle,
        summary=f"Pump station 7 offline ({handle})",  # one open incident per key: one per person here
        preferred_channel="voice",
        fallback_channels=["sms"],
        language=language,
    )
    assert dispatch.dispatch_pass(ctx)["sent"] == 1
    sid = message(ctx, message_id).provider_id or ""
    with read_session(ctx.sessions) as session:
        page = session.get(Page, page_id)
        assert page is not None and page.reply_code
        code = page.reply_code
    return ET.fromstring(fake.calls[sid]["twiml"]), code, incident_id


def _said(twiml: ET.Element) -> list[str]:
    return [say.text or "" for say in twiml.iter("Say")]


def _voices(twiml: ET.Element) -> set[tuple[str | None, str | None]]:
    return {(say.get("voice"), say.get("language")) for say in twiml.iter("Say")}


def _assert_spoken(twiml: ET.Element, *, opening: str, how: str, voice: dict[str, str]) -> None:
    said = _said(twiml)
    assert said[0].startswith(opening)
    assert how in said
    assert _voices(twiml) == {(voice["voice"], voice["language"])}


def _spelt(text: str) -> str:
    return " ".join(text)


@pytest.fixture
def public(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> AppContext:
    """A service Twilio can call back."""
    channels_ctx.settings.public_base_url = PUBLIC
    configure(channels_ctx, twilio=fake_twilio)
    return channels_ctx


def test_without_a_public_url_a_call_asks_for_the_reply_code_by_text_not_a_keypress(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    twiml, code, _incident = _call(channels_ctx, fake_twilio, "en")

    said = _said(twiml)
    assert twiml.find("Gather") is None  # nobody could hear a keypress
    assert not any("press" in text.lower() for text in said)
    how = f"To acknowledge, send a text message saying {_spelt(code)} ack to {_spelt(SMS_FROM)}."
    assert said.count(how) == 2  # after the message, and again after it is repeated
    assert said[0].startswith("This is Watchkeeper with a high incident") and said.count(said[0]) == 2
    assert said[-1] == "Goodbye."
    assert _voices(twiml) == {(ENGLISH["voice"], ENGLISH["language"])}


def test_with_a_public_url_one_key_acknowledges(public: AppContext, fake_twilio: FakeTwilio) -> None:
    twiml, _code, _incident = _call(public, fake_twilio, "en")

    gathers = twiml.findall("Gather")
    assert len(gathers) == 2
    assert gathers[0].get("action", "").startswith(f"{PUBLIC}/twilio/voice/gather?message_id=")
    assert gathers[0].get("numDigits") == "1"
    assert [say.text for say in gathers[0].iter("Say")][1] == "Press 1 to acknowledge, or 2 to resolve."
    assert not any("text message" in text for text in _said(twiml))
    assert _voices(twiml) == {(ENGLISH["voice"], ENGLISH["language"])}


def test_an_afrikaans_speaker_hears_afrikaans_either_way(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    twiml, code, _incident = _call(channels_ctx, fake_twilio, "af")
    _assert_spoken(
        twiml,
        opening="Hier is Watchkeeper met 'n voorval",
        how=f"Om te erken, stuur 'n SMS met {_spelt(code)} ack na {_spelt(SMS_FROM)}.",
        voice=AFRIKAANS,
    )
    assert _said(twiml)[-1] == "Totsiens."

    channels_ctx.settings.public_base_url = PUBLIC
    configure(channels_ctx, twilio=fake_twilio)
    twiml, _code, _incident = _call(channels_ctx, fake_twilio, "af", handle="johan")
    gather = twiml.find("Gather")
    assert gather is not None
    assert [say.text for say in gather.iter("Say")][1] == "Druk 1 om te erken, of 2 om op te los."
    assert _voices(twiml) == {(AFRIKAANS["voice"], AFRIKAANS["language"])}


def test_an_isizulu_speaker_is_called_in_english_as_twilio_has_no_isizulu_voice(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    twiml, code, _incident = _call(channels_ctx, fake_twilio, "zu")
    # The English voice template and prompts, in an English voice: not isiZulu words an English voice mangles.
    _assert_spoken(
        twiml,
        opening="This is Watchkeeper with a high incident",
        how=f"To acknowledge, send a text message saying {_spelt(code)} ack to {_spelt(SMS_FROM)}.",
        voice=ENGLISH,
    )


def test_without_an_sms_number_the_call_says_to_reply_to_the_text_message(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    # SMS goes out through a messaging service: there is no one number to text.
    channels_ctx.settings.twilio_sms_from = ""
    channels_ctx.settings.twilio_messaging_service_sid = "MG" + "0" * 32
    install_senders(channels_ctx, build_senders(channels_ctx.settings, clock=channels_ctx.clock))

    twiml, code, _incident = _call(channels_ctx, fake_twilio, "en")

    assert f"To acknowledge, reply to the Watchkeeper text message with {_spelt(code)} ack." in _said(twiml)


def test_a_site_that_cannot_receive_texts_promises_no_way_to_acknowledge_by_call(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    channels_ctx.settings.twilio_sms_from = ""  # voice only: no SMS or WhatsApp sender
    channels_ctx.settings.twilio_whatsapp_from = ""
    install_senders(channels_ctx, build_senders(channels_ctx.settings, clock=channels_ctx.clock))

    twiml, _code, _incident = _call(channels_ctx, fake_twilio, "en")

    said = _said(twiml)
    assert twiml.find("Gather") is None
    assert not any("acknowledge" in text.lower() or "press" in text.lower() for text in said)
    assert said[-1] == "Goodbye." and len(said) == 3  # the message twice, then goodbye


def test_the_keypress_answer_is_spoken_in_the_callers_language(
    public: AppContext, fake_twilio: FakeTwilio
) -> None:
    client = WsgiClient(ServiceApp(public, ServiceState(started_at=public.clock.now())))
    twiml, _code, incident_id = _call(public, fake_twilio, "af")
    action = twiml.find("Gather")
    assert action is not None
    message_id = action.get("action", "").rsplit("=", 1)[1]
    # Twilio posts the digits to the action URL, query string included in what it signs.
    params = {"Digits": "1", "CallSid": "CA" + "1" * 32, "To": "+27821234567"}  # the URL names the message
    url = f"{PUBLIC}/twilio/voice/gather?message_id={message_id}"
    signature = RequestValidator(fake_twilio.auth_token).compute_signature(url, params)
    reply = client.post(
        f"/twilio/voice/gather?message_id={message_id}",
        body=urlencode(params).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert reply.status == 200, reply.text
    answer = ET.fromstring(reply.text)
    assert _said(answer) == ["Dankie. Die voorval is erken."]
    assert _voices(answer) == {(AFRIKAANS["voice"], AFRIKAANS["language"])}
    with read_session(public.sessions) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None and incident.status == "acknowledged"


def test_a_voice_template_in_a_language_no_voice_speaks_is_refused_at_import(ctx: AppContext) -> None:
    text = """\
templates:
  - kind: page
    channel: voice
    language: zu
    body: "NguWatchkeeper lona: {{ summary }}."
"""
    with pytest.raises(ConfigValidationError) as info:
        import_text(ctx, text, "templates.yaml", actor="tester")
    message = str(info.value)
    assert "language" in message and "'zu' is never spoken" in message
    ok = text.replace("language: zu", "language: af").replace("NguWatchkeeper lona", "Hier is Watchkeeper")
    assert import_text(ctx, ok, "templates.yaml", actor="tester")["templates"] == 1

"""Replies: reply codes acknowledge the right escalation, STOP/START, unknown messages kept, Twilio webhooks."""

from __future__ import annotations

import logging

import pytest
from conftest import SMS_FROM, events, message, page_of, start_page
from twilio.request_validator import RequestValidator

from engine import dispatch, replies
from engine.context import AppContext
from engine.models import InboundMessage, Incident, Person
from tests.fakes.twilio_server import FakeTwilio

PHONE = "+27821234567"


def incident(ctx: AppContext, incident_id: int) -> Incident:
    with ctx.sessions() as session:
        row = session.get(Incident, incident_id)
        assert row is not None
        return row


def two_pages(ctx: AppContext) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The same person paged for two incidents, the second one later."""
    first = start_page(ctx, summary="Pump station 7 offline")
    dispatch.dispatch_pass(ctx)
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    second = start_page(ctx, summary="Reservoir level low")
    dispatch.dispatch_pass(ctx)
    return first, second


@pytest.mark.parametrize("reply", ["1", "ack", "OK", " Ack. "])
def test_reply_one_acknowledges_the_page_the_person_received_last(
    channels_ctx: AppContext, reply: str
) -> None:
    (first_incident, _p1, _m1), (second_incident, second_page, _m2) = two_pages(channels_ctx)

    result = replies.handle_inbound(channels_ctx, "sms", PHONE, reply, provider_id="SMreply1")

    assert result["done"] is True and result["incident_id"] == second_incident
    assert incident(channels_ctx, second_incident).status == "acknowledged"
    assert incident(channels_ctx, second_incident).acknowledged_by == "Thandi"
    assert incident(channels_ctx, first_incident).status == "open"
    assert page_of(channels_ctx, second_page).status in ("confirmed", "cancelled")


def test_reply_code_acknowledges_that_specific_escalation(channels_ctx: AppContext) -> None:
    (first_incident, first_page, _m1), (second_incident, _p2, _m2) = two_pages(channels_ctx)
    code = page_of(channels_ctx, first_page).reply_code

    result = replies.handle_inbound(channels_ctx, "sms", PHONE, f"{code} ack")

    assert result["action"] == "ack" and result["code"] == code
    assert incident(channels_ctx, first_incident).status == "acknowledged"
    assert incident(channels_ctx, second_incident).status == "open"


def test_reply_code_resolve_resolves(channels_ctx: AppContext) -> None:
    incident_id, page_id, _ = start_page(channels_ctx)
    dispatch.dispatch_pass(channels_ctx)
    code = page_of(channels_ctx, page_id).reply_code

    replies.handle_inbound(channels_ctx, "sms", PHONE, f"resolve {code}")

    assert incident(channels_ctx, incident_id).status == "resolved"
    assert incident(channels_ctx, incident_id).resolved_by == "Thandi"


def test_stop_opts_out_of_the_channel_and_start_opts_back_in(channels_ctx: AppContext) -> None:
    start_page(channels_ctx)

    assert replies.handle_inbound(channels_ctx, "sms", PHONE, "STOP")["action"] == "stop"
    with channels_ctx.sessions() as session:
        assert session.query(Person).one().opted_out_channels == ["sms"]
    replies.handle_inbound(channels_ctx, "sms", PHONE, "start")
    with channels_ctx.sessions() as session:
        assert session.query(Person).one().opted_out_channels == []
    assert [e.kind for e in events(channels_ctx) if e.kind.startswith("person_opted")] == [
        "person_opted_out",
        "person_opted_in",
    ]


def test_unknown_text_is_kept_shown_to_operators_and_counts_as_a_response(channels_ctx: AppContext) -> None:
    incident_id, page_id, _ = start_page(channels_ctx)
    dispatch.dispatch_pass(channels_ctx)

    result = replies.handle_inbound(channels_ctx, "sms", PHONE, "On my way, 10 minutes")

    assert result["action"] == "unknown"
    with channels_ctx.sessions() as session:
        stored = session.query(InboundMessage).one()
    assert (
        stored.body == "On my way, 10 minutes"
        and stored.incident_id == incident_id
        and stored.action == "unknown"
    )
    [ev] = events(channels_ctx, "inbound_unmatched")
    assert "On my way" in ev.message
    assert page_of(channels_ctx, page_id).status == "confirmed"
    assert incident(channels_ctx, incident_id).status == "open"  # a response is not an acknowledgement


def test_message_from_a_stranger_is_stored_never_lost(channels_ctx: AppContext) -> None:
    result = replies.handle_inbound(channels_ctx, "sms", "+27830000000", "1")
    assert result["person"] is None and result.get("done") is False
    with channels_ctx.sessions() as session:
        assert session.query(InboundMessage).one().from_address == "+27830000000"
    assert events(channels_ctx, "reply_unmatched")


def test_the_same_provider_message_is_stored_once(channels_ctx: AppContext) -> None:
    first = replies.handle_inbound(channels_ctx, "sms", PHONE, "hello", provider_id="SM123")
    second = replies.handle_inbound(channels_ctx, "sms", PHONE, "hello", provider_id="SM123")
    assert first["duplicate"] is False and second["duplicate"] is True
    with channels_ctx.sessions() as session:
        assert session.query(InboundMessage).count() == 1


def test_twilio_signature_is_accepted_and_a_forged_one_refused(caplog: pytest.LogCaptureFixture) -> None:
    token = "12345678-twilio-token"
    url = "https://wk.example.org/twilio/inbound"
    params = {"From": PHONE, "To": SMS_FROM, "Body": "1", "MessageSid": "SM1"}
    signature = RequestValidator(token).compute_signature(url, params)

    assert replies.validate_twilio_signature(url, params, signature, token) is True
    with caplog.at_level(logging.WARNING):
        assert replies.validate_twilio_signature(url, params | {"Body": "2"}, signature, token) is False
        assert replies.validate_twilio_signature(url, params, "forged", token) is False
    assert "bad signature" in caplog.text and token not in caplog.text


def test_inbound_webhook_acknowledges_and_answers_with_twiml(channels_ctx: AppContext) -> None:
    incident_id, _page_id, _ = start_page(channels_ctx, whatsapp="+27825550000", preferred_channel="whatsapp")
    dispatch.dispatch_pass(channels_ctx)

    answer = replies.handle_inbound_webhook(
        channels_ctx,
        {"From": "whatsapp:+27825550000", "To": "whatsapp:+27870000002", "Body": "1", "MessageSid": "SMw1"},
    )

    assert answer["done"] is True and "<Message>" in answer["twiml"]
    assert incident(channels_ctx, incident_id).status == "acknowledged"
    with channels_ctx.sessions() as session:
        assert session.query(InboundMessage).one().channel == "whatsapp"


def test_status_callback_moves_forward_only(channels_ctx: AppContext) -> None:
    _incident, _page, msg_id = start_page(channels_ctx)
    dispatch.dispatch_pass(channels_ctx)
    sid = message(channels_ctx, msg_id).provider_id

    assert replies.handle_status_callback(channels_ctx, {"MessageSid": sid, "MessageStatus": "delivered"})[
        "updated"
    ]
    assert not replies.handle_status_callback(channels_ctx, {"MessageSid": sid, "MessageStatus": "sent"})[
        "updated"
    ]
    assert message(channels_ctx, msg_id).status == "delivered"
    assert (
        replies.handle_status_callback(channels_ctx, {"MessageSid": "SMnope", "MessageStatus": "sent"})[
            "updated"
        ]
        is False
    )


def test_voice_keypress_one_acknowledges(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    incident_id, _page_id, msg_id = start_page(channels_ctx, preferred_channel="voice")
    dispatch.dispatch_pass(channels_ctx)
    row = message(channels_ctx, msg_id)
    assert row.channel == "voice"

    # Twilio fetches a call's TwiML from the service, so it can reach the gather URL too.
    channels_ctx.settings.public_base_url = "https://wk.example.org"
    twiml = replies.voice_twiml(channels_ctx, msg_id)
    assert "<Gather" in twiml and 'numDigits="1"' in twiml

    answer = replies.handle_voice_gather(
        channels_ctx, {"Digits": "1", "CallSid": row.provider_id, "To": PHONE}
    )

    assert "acknowledged" in answer
    assert incident(channels_ctx, incident_id).status == "acknowledged"
    assert incident(channels_ctx, incident_id).acknowledged_by == "Thandi"


def test_voice_other_key_does_nothing(channels_ctx: AppContext) -> None:
    incident_id, _page_id, msg_id = start_page(channels_ctx, preferred_channel="voice")
    dispatch.dispatch_pass(channels_ctx)
    answer = replies.handle_voice_gather(channels_ctx, {"Digits": "7", "message_id": str(msg_id)})
    assert "did nothing" in answer
    assert incident(channels_ctx, incident_id).status == "open"


def test_polled_reply_acknowledges_end_to_end(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    incident_id, _page_id, _ = start_page(channels_ctx)
    dispatch.dispatch_pass(channels_ctx)
    fake_twilio.add_inbound(PHONE, SMS_FROM, "1")

    assert dispatch.poll_pass(channels_ctx)["inbound"] == 1

    assert incident(channels_ctx, incident_id).status == "acknowledged"

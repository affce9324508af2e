"""Twilio SMS, WhatsApp and voice through the real `twilio` client against the fake Twilio server."""

from __future__ import annotations

import json
from datetime import timedelta

from conftest import SMS_FROM, add_message, configure, events, message, messages_for_page, page_of, start_page

from engine import dispatch
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.models import InboundMessage, Person, Template
from tests.fakes.twilio_server import FakeTwilio


def test_sms_is_sent_through_twilio_and_records_the_provider_id(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    msg_id = add_message(
        channels_ctx, "sms", "+27821110000", "Pump station 7 offline. Reply 1 to acknowledge."
    )

    result = dispatch.dispatch_pass(channels_ctx)

    assert result["sent"] == 1
    row = message(channels_ctx, msg_id)
    assert row.status == "sent"
    assert row.provider_id is not None and row.provider_id.startswith("SM")
    assert row.segments == 1 and row.encoding == "GSM-7"
    assert row.price is None  # Twilio prices a message after its final status (test_twilio_price.py)
    assert row.simulated is False
    sent = fake_twilio.messages[row.provider_id]
    assert sent["to"] == "+27821110000" and sent["from"] == SMS_FROM


def test_whatsapp_uses_the_whatsapp_prefix_inside_the_session_window(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    now = channels_ctx.clock.now()
    with write_session(channels_ctx.sessions) as session:
        person = Person(handle="sipho", name="Sipho", whatsapp="+27825550000", preferred_channel="whatsapp")
        session.add(person)
        session.flush()
        session.add(
            InboundMessage(
                channel="whatsapp",
                from_address="+27825550000",
                body="hi",
                person_id=person.id,
                received_at=now - timedelta(hours=2),
            )
        )
        person_id = person.id
    msg_id = add_message(
        channels_ctx, "whatsapp", "+27825550000", "Free text inside the window", person_id=person_id
    )

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    sent = fake_twilio.messages[row.provider_id or ""]
    assert sent["to"] == "whatsapp:+27825550000"
    assert sent["from"] == "whatsapp:+27870000002"
    assert sent["body"] == "Free text inside the window"
    assert sent["content_sid"] is None


def test_whatsapp_outside_the_session_window_sends_the_approved_content_template(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    now = channels_ctx.clock.now()
    with write_session(channels_ctx.sessions) as session:
        person = Person(handle="sipho", name="Sipho", whatsapp="+27825550000", preferred_channel="whatsapp")
        session.add(person)
        session.flush()
        # Last message from the person two days ago: the 24-hour window is closed.
        session.add(
            InboundMessage(
                channel="whatsapp",
                from_address="+27825550000",
                body="hi",
                person_id=person.id,
                received_at=now - timedelta(days=2),
            )
        )
        session.add(
            Template(
                kind="page",
                channel="whatsapp",
                language="en",
                body="{{ summary }}",
                whatsapp_content_sid="HX" + "1" * 32,
                created_at=now,
            )
        )
        person_id = person.id
    msg_id = add_message(
        channels_ctx, "whatsapp", "+27825550000", "Pump station 7 offline", kind="page", person_id=person_id
    )

    dispatch.dispatch_pass(channels_ctx)

    sent = fake_twilio.messages[message(channels_ctx, msg_id).provider_id or ""]
    assert sent["content_sid"] == "HX" + "1" * 32
    assert json.loads(sent["content_variables"]) == {"1": "Pump station 7 offline"}


def test_voice_call_speaks_the_message_and_gathers_one_key(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    channels_ctx.settings.public_base_url = "https://wk.example.org"
    configure(channels_ctx, twilio=fake_twilio)
    msg_id = add_message(channels_ctx, "voice", "+27821110000", "Pump station 7 is offline.")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "sent" and (row.provider_id or "").startswith("CA")
    twiml = fake_twilio.calls[row.provider_id or ""]["twiml"]
    assert '<Gather action="https://wk.example.org/twilio/voice/gather?message_id=' in twiml
    assert 'numDigits="1"' in twiml
    assert "Pump station 7 is offline." in twiml and "Press 1 to acknowledge" in twiml


def test_server_error_is_retried_with_backoff_then_sent(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(status=500, code=20500, count=1)
    msg_id = add_message(channels_ctx, "sms", "+27821110000")

    first = dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert first["retried"] == 1
    assert row.status == "pending" and row.attempts == 1 and row.error_code == "20500"
    delay = (row.next_attempt_at - channels_ctx.clock.now()).total_seconds()  # type: ignore[operator]
    assert 4.0 <= delay <= 6.0  # 5 s base, ±20 % jitter
    assert dispatch.dispatch_pass(channels_ctx)["claimed"] == 0  # not due yet

    channels_ctx.clock.advance(delay + 0.1)  # type: ignore[attr-defined]
    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "sent" and row.attempts == 2 and row.error_code is None


def test_too_many_requests_waits_for_retry_after(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=429, code=20429, retry_after=120)
    msg_id = add_message(channels_ctx, "sms", "+27821110000")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "pending"
    assert (row.next_attempt_at - channels_ctx.clock.now()).total_seconds() >= 120  # type: ignore[operator]


def test_timeout_is_retryable(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    configure(channels_ctx, twilio=fake_twilio, twilio_timeout=0.3)
    fake_twilio.delay["sms"] = 0.8
    msg_id = add_message(channels_ctx, "sms", "+27821110000")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "pending" and row.error_code == "timeout"


def test_repeated_server_errors_use_up_the_attempts_then_fall_back_to_the_next_channel(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    _incident_id, page_id, first_id = start_page(
        channels_ctx, preferred_channel="sms", fallback_channels=["email"]
    )
    fake_twilio.fail_next(status=503, code=20503, count=3)

    for _ in range(3):
        dispatch.dispatch_pass(channels_ctx)
        channels_ctx.clock.advance(timedelta(minutes=15))  # type: ignore[attr-defined]

    first = message(channels_ctx, first_id)
    assert first.status == "failed" and first.attempts == 3
    assert "gave up after 3 attempts" in (first.error_text or "")
    chain = messages_for_page(channels_ctx, page_id)
    assert [m.channel for m in chain] == ["sms", "email"]
    assert page_of(channels_ctx, page_id).step == 1


def test_invalid_number_fails_at_once_and_falls_back_to_whatsapp(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.invalid_numbers.add("+27821234567")
    _incident_id, page_id, first_id = start_page(
        channels_ctx, preferred_channel="sms", fallback_channels=["whatsapp"], whatsapp="+27829990000"
    )

    dispatch.dispatch_pass(channels_ctx)

    first = message(channels_ctx, first_id)
    assert first.status == "failed" and first.attempts == 1 and first.error_code == "21211"
    chain = messages_for_page(channels_ctx, page_id)
    assert [m.channel for m in chain] == ["sms", "whatsapp"]
    assert chain[1].status == "pending"
    assert any(e.kind == "page_fallback" for e in events(channels_ctx))

    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, chain[1].id).status == "sent"


def test_unsubscribed_recipient_is_permanent(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    fake_twilio.unsubscribed.add("+27821110000")
    msg_id = add_message(channels_ctx, "sms", "+27821110000")

    assert dispatch.dispatch_pass(channels_ctx)["failed"] == 1
    assert message(channels_ctx, msg_id).error_code == "21610"


def test_wrong_auth_token_fails_permanently_without_showing_the_token(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.auth_token = "the-real-token-is-different"
    msg_id = add_message(channels_ctx, "sms", "+27821110000")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "failed" and row.error_code == "20003"
    assert "fake-token" not in (row.error_text or "")


def test_poll_fetches_delivery_status_and_never_goes_backwards(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    msg_id = add_message(channels_ctx, "sms", "+27821110000")
    dispatch.dispatch_pass(channels_ctx)
    sid = message(channels_ctx, msg_id).provider_id or ""

    fake_twilio.set_status(sid, "delivered")
    assert dispatch.poll_pass(channels_ctx)["updated"] == 1
    assert message(channels_ctx, msg_id).status == "delivered"

    fake_twilio.set_status(sid, "sent")  # a stale answer
    channels_ctx.clock.advance(60)  # type: ignore[attr-defined]
    dispatch.poll_pass(channels_ctx)
    assert message(channels_ctx, msg_id).status == "delivered"


def test_poll_reports_undelivered_and_the_page_falls_back(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    _incident, page_id, first_id = start_page(
        channels_ctx, preferred_channel="sms", fallback_channels=["email"]
    )
    dispatch.dispatch_pass(channels_ctx)
    fake_twilio.set_status(message(channels_ctx, first_id).provider_id or "", "undelivered", error_code=30003)

    dispatch.poll_pass(channels_ctx)

    assert message(channels_ctx, first_id).status == "undelivered"
    assert [m.channel for m in messages_for_page(channels_ctx, page_id)] == ["sms", "email"]


def test_poll_picks_up_replies_sent_to_our_number(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    fake_twilio.add_inbound("+27821110000", SMS_FROM, "Hello, is anyone there?")

    assert dispatch.poll_pass(channels_ctx)["inbound"] == 1
    assert dispatch.poll_pass(channels_ctx)["inbound"] == 0  # stored once
    with channels_ctx.sessions() as session:
        stored = session.query(InboundMessage).one()
    assert stored.body == "Hello, is anyone there?" and stored.channel == "sms"
    assert stored.provider_id is not None


def _bodies(fake: FakeTwilio) -> list[str]:
    return [m["body"] for m in fake.sent()]


def test_a_message_twilio_took_before_its_answer_was_lost_is_not_sent_twice(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    first = add_message(channels_ctx, "sms", "+27821110000", "Incident 41: pump 7 offline. Reply 1.")
    dispatch.dispatch_pass(channels_ctx)  # the connection is now kept alive for the next message
    fake_twilio.lose_next_answer("after")  # Twilio creates the message, then the connection drops
    second = add_message(channels_ctx, "sms", "+27821110000", "Incident 42: reservoir low. Reply 1.")

    result = dispatch.dispatch_pass(channels_ctx)

    assert result["sent"] == 1
    row = message(channels_ctx, second)
    assert row.status == "sent" and row.provider_id in fake_twilio.messages
    assert fake_twilio.messages[row.provider_id or ""]["body"] == "Incident 42: reservoir low. Reply 1."
    assert _bodies(fake_twilio) == [
        "Incident 41: pump 7 offline. Reply 1.",
        "Incident 42: reservoir low. Reply 1.",
    ], "the page whose answer was lost reached Twilio once"
    assert message(channels_ctx, first).provider_id != row.provider_id


def test_a_message_lost_before_twilio_took_it_is_sent_again_at_once(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.lose_next_answer("before")  # the connection drops before Twilio creates anything
    msg_id = add_message(channels_ctx, "sms", "+27821110000", "Incident 43: gate 2 open. Reply 1.")

    result = dispatch.dispatch_pass(channels_ctx)

    assert result["sent"] == 1
    row = message(channels_ctx, msg_id)
    assert row.status == "sent" and row.attempts == 1
    assert _bodies(fake_twilio) == ["Incident 43: gate 2 open. Reply 1."]


def test_an_earlier_identical_message_is_not_taken_for_the_lost_one(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    body = "Incident 44: pump 7 offline. Reply 1."
    earlier = add_message(channels_ctx, "sms", "+27821110000", body)
    dispatch.dispatch_pass(channels_ctx)
    earlier_sid = message(channels_ctx, earlier).provider_id or ""
    a_minute_ago = format_datetime(datetime.now(UTC) - timedelta(minutes=1))
    fake_twilio.messages[earlier_sid]["date_created"] = a_minute_ago  # a repeat of the same page, a minute on
    fake_twilio.lose_next_answer("before")
    clock.advance(60)
    repeat = add_message(channels_ctx, "sms", "+27821110000", body)

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, repeat)
    assert row.status == "sent" and row.provider_id not in (None, earlier_sid)
    assert _bodies(fake_twilio) == [body, body], "the repeat was sent, not mistaken for the earlier page"


def test_a_lost_answer_is_found_far_down_a_busy_persons_list(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    """A person paged for many incidents at once has pages of messages from us at Twilio: the lost one is
    looked for through all of them, not only the newest page of the list."""
    for n in range(120):
        add_message(channels_ctx, "sms", "+27821110000", f"Incident {n}: tree down. Reply 1.")
    dispatch.dispatch_pass(channels_ctx)
    fake_twilio.lose_next_answer("after")
    lost = add_message(channels_ctx, "sms", "+27821110000", "Incident 200: tree down. Reply 1.")
    for n in range(121, 180):  # the next sends go out beside it and land above it in the list
        add_message(channels_ctx, "sms", "+27821110000", f"Incident {n}: tree down. Reply 1.")
    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, lost).status == "sent"
    assert _bodies(fake_twilio).count("Incident 200: tree down. Reply 1.") == 1


def test_a_message_an_engine_was_sending_when_it_stopped_is_recovered_not_sent_again(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    """An engine stopped while Twilio was creating the message: the message stays `sending`. Past its
    deadline another engine asks Twilio, finds it (even under 60 newer messages), and records it as sent."""
    msg_id = add_message(channels_ctx, "sms", "+27821110000", "Incident 300: gas leak. Reply 1.")
    with write_session(channels_ctx.sessions) as s:  # what the stopped engine left behind
        from engine.models import OutboxMessage

        row = s.get(OutboxMessage, msg_id)
        assert row is not None
        row.status, row.claimed_by, row.attempts = "sending", "a-stopped-engine", 1
        row.sending_deadline = clock.now() + timedelta(seconds=channels_ctx.settings.send_deadline_seconds)
    from engine.channels import senders_for

    senders_for(channels_ctx).get("sms").send(  # it did reach Twilio before the engine stopped
        dispatch.OutgoingMessage(
            id=msg_id, channel="sms", address="+27821110000", body="Incident 300: gas leak. Reply 1."
        )
    )
    for n in range(60):
        add_message(channels_ctx, "sms", "+27821110000", f"Incident {n}: noise. Reply 1.")
    dispatch.dispatch_pass(channels_ctx)
    clock.advance(channels_ctx.settings.send_deadline_seconds + 1)
    dispatch.dispatch_pass(channels_ctx)
    row = message(channels_ctx, msg_id)
    assert row.status == "sent" and row.provider_id in fake_twilio.messages
    assert _bodies(fake_twilio).count("Incident 300: gas leak. Reply 1.") == 1
    assert events(channels_ctx, "message_found_sent")


def test_a_message_twilio_never_got_from_a_stopped_engine_is_sent_again(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    msg_id = add_message(channels_ctx, "sms", "+27821110000", "Incident 301: gate open. Reply 1.")
    with write_session(channels_ctx.sessions) as s:
        from engine.models import OutboxMessage

        row = s.get(OutboxMessage, msg_id)
        assert row is not None
        row.status, row.claimed_by, row.attempts = "sending", "a-stopped-engine", 1
        row.sending_deadline = clock.now() + timedelta(seconds=5)
    clock.advance(6)
    dispatch.dispatch_pass(channels_ctx)  # Twilio says it has no such message: it is sent, once
    assert message(channels_ctx, msg_id).status == "sent"
    assert _bodies(fake_twilio) == ["Incident 301: gate open. Reply 1."]
    assert any(
        "the provider does not have it" in e.message for e in events(channels_ctx, "message_deadline_passed")
    )

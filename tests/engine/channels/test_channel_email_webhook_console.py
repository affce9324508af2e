"""E-mail to a real SMTP server, signed webhooks to a receiver that checks the signature, console pop-ups,
and simulated mode when a channel has no credentials."""

from __future__ import annotations

from conftest import WEBHOOK_KEY, add_message, events, message, start_page

from engine import channels, dispatch
from engine.context import AppContext
from engine.db import write_session
from engine.models import Event, OutboxMessage
from tests.fakes.smtp_server import FakeSmtp
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.webhook_receiver import WebhookReceiver


def test_email_goes_out_as_plain_text_and_html_with_an_acknowledge_link(
    channels_ctx: AppContext, smtp_server: FakeSmtp
) -> None:
    channels_ctx.settings.public_base_url = "https://wk.example.org"
    _incident, _page_id, msg_id = start_page(channels_ctx, preferred_channel="email", fallback_channels=[])

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "sent" and (row.provider_id or "").startswith("<")
    [mail] = smtp_server.mails
    assert mail.recipients == ["thandi@example.org"]
    assert mail.login == "watchkeeper"  # the password came from the keyring
    assert "Pump station 7 offline" in mail.message["Subject"]
    plain = mail.message.get_body(("plain",))
    html = mail.message.get_body(("html",))
    assert plain is not None and html is not None
    assert "https://wk.example.org/ack?incident=" in plain.get_content()
    assert '<a href="https://wk.example.org/ack?incident=' in html.get_content()


def test_refused_mailbox_is_a_permanent_failure(channels_ctx: AppContext, smtp_server: FakeSmtp) -> None:
    smtp_server.refuse.add("nobody@example.org")
    msg_id = add_message(channels_ctx, "email", "nobody@example.org", subject="Test")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "failed" and row.error_code == "550"


def test_unreachable_mail_server_is_retried(channels_ctx: AppContext, smtp_server: FakeSmtp) -> None:
    smtp_server.stop()
    msg_id = add_message(channels_ctx, "email", "thandi@example.org")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "pending" and row.error_code == "connection"
    assert "smtp-pw" not in (row.error_text or "")


def test_webhook_is_signed_and_the_receiver_accepts_the_signature(
    channels_ctx: AppContext, webhook_receiver: WebhookReceiver
) -> None:
    msg_id = add_message(
        channels_ctx,
        "webhook",
        webhook_receiver.url,
        "Pump station 7 offline",
        subject="Incident",
        key="target:1:1:0:0",
    )

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "delivered" and row.provider_id == "req-1"
    [hook] = webhook_receiver.received
    assert hook["json"]["event"]["id"] == "target:1:1:0:0"
    assert hook["json"]["event"]["data"]["body"] == "Pump station 7 offline"
    assert hook["timestamp"] == str(int(channels_ctx.clock.now().timestamp()))
    assert webhook_receiver.refused == 0


def test_webhook_with_a_wrong_key_is_refused_by_the_receiver_and_not_retried(
    channels_ctx: AppContext, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.key = "another-key"
    msg_id = add_message(channels_ctx, "webhook", webhook_receiver.url)

    dispatch.dispatch_pass(channels_ctx)

    assert webhook_receiver.refused == 1
    row = message(channels_ctx, msg_id)
    assert row.status == "failed" and row.error_code == "401"
    assert WEBHOOK_KEY not in (row.error_text or "")


def test_webhook_server_error_and_throttling_are_retried(
    channels_ctx: AppContext, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.script = [(503, {}), (429, {"Retry-After": "30"})]
    msg_id = add_message(channels_ctx, "webhook", webhook_receiver.url)

    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, msg_id).error_code == "503"
    channels_ctx.clock.advance(60)  # type: ignore[attr-defined]
    dispatch.dispatch_pass(channels_ctx)
    row = message(channels_ctx, msg_id)
    assert row.error_code == "429" and row.status == "pending"
    assert (row.next_attempt_at - channels_ctx.clock.now()).total_seconds() >= 30  # type: ignore[operator]
    channels_ctx.clock.advance(60)  # type: ignore[attr-defined]
    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, msg_id).status == "delivered"


def test_console_message_is_delivered_and_shown_as_a_popup_event(channels_ctx: AppContext) -> None:
    msg_id = add_message(channels_ctx, "console", "thandi", "Pump station 7 offline", subject="Incident #1")

    dispatch.dispatch_pass(channels_ctx)

    assert message(channels_ctx, msg_id).status == "delivered"
    [popup] = events(channels_ctx, "console_popup")
    assert popup.data["message_id"] == msg_id and popup.data["address"] == "thandi"


def test_without_credentials_every_channel_is_simulated_end_to_end(offline_ctx: AppContext) -> None:
    senders = channels.senders_for(offline_ctx).senders
    assert all(senders[c].simulated for c in ("sms", "whatsapp", "voice", "email"))
    _incident, _page_id, msg_id = start_page(offline_ctx)

    result = dispatch.dispatch_pass(offline_ctx)

    assert result["simulated"] == 1
    row = message(offline_ctx, msg_id)
    assert row.simulated is True and row.status == "delivered"
    assert (row.provider_id or "").startswith("SIM-sms-")
    assert row.segments == 1 and row.encoding == "GSM-7"
    [sent] = events(offline_ctx, "message_sent")
    assert sent.data["simulated"] is True and sent.message.startswith("simulated ")
    # Polling a simulated channel asks nobody.
    assert dispatch.poll_pass(offline_ctx)["polled"] == 0


def test_test_send_prints_the_providers_answer(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    answer = channels.test_send(channels_ctx, "sms", "+27821110000", "Hello from Watchkeeper")
    assert answer["ok"] is True and answer["provider_id"].startswith("SM") and answer["simulated"] is False
    assert answer["segments"] == 1

    fake_twilio.invalid_numbers.add("+27820000000")
    refused = channels.test_send(channels_ctx, "sms", "+27820000000", "Hello")
    assert refused["ok"] is False and refused["error_code"] == "21211" and refused["retryable"] is False
    with channels_ctx.sessions() as session:
        assert session.query(OutboxMessage).count() == 0  # test-send writes no outbox row


def test_test_send_on_a_simulated_channel_says_so(offline_ctx: AppContext) -> None:
    answer = channels.test_send(offline_ctx, "whatsapp", "+27821110000", "Hello")
    assert answer["ok"] is True and answer["simulated"] is True
    assert "simulated" in answer["detail"]


def test_secret_from_the_environment_wins(
    ctx: AppContext, fake_twilio: FakeTwilio, monkeypatch: object, memory_keyring: object
) -> None:
    import pytest

    mp = monkeypatch
    assert isinstance(mp, pytest.MonkeyPatch)
    mp.setenv("WATCHKEEPER_SECRET_TWILIO_AUTH_TOKEN", fake_twilio.auth_token)
    from conftest import configure

    configure(ctx, twilio=fake_twilio)
    try:
        assert channels.senders_for(ctx).get("sms").simulated is False
        msg_id = add_message(ctx, "sms", "+27821110000")
        dispatch.dispatch_pass(ctx)
        assert message(ctx, msg_id).status == "sent"
    finally:
        dispatch.shutdown(ctx)
    with write_session(ctx.sessions) as session:
        assert session.query(Event).filter_by(kind="message_sent").count() == 1

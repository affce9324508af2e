"""Cost as Twilio reports it: no price when a message is created, the price fetched after its final status.

Everything goes through the real `twilio` client and the fake Twilio server, which prices a message or call only
when it reaches a final status (and, with `price_later`, some time after that), as Twilio does. The final status
reaches Watchkeeper by a signed status callback to the service or by the poll pass; the price pass then asks
Twilio for the price, and statistics show it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import configure, events, message, start_page
from twilio.request_validator import RequestValidator

from engine import api, dispatch
from engine.clock import FakeClock
from engine.context import AppContext
from engine.prices import price_pass
from engine.runner import run_once
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from tests.fakes.twilio_server import FakeTwilio
from tests.service.conftest import WsgiClient

PUBLIC = "https://wk.example.org"


@pytest.fixture
def service(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> WsgiClient:
    """The service's HTTP app at a public URL Twilio can call back; senders ask Twilio for status callbacks."""
    channels_ctx.settings.public_base_url = PUBLIC
    configure(channels_ctx, twilio=fake_twilio)
    return WsgiClient(ServiceApp(channels_ctx, ServiceState(started_at=channels_ctx.clock.now())))


def _callback(client: WsgiClient, fake: FakeTwilio, params: dict[str, str]) -> None:
    """Twilio's status callback: form fields, signed with the auth token over the public URL."""
    url = f"{PUBLIC}/twilio/status"
    signature = RequestValidator(fake.auth_token).compute_signature(url, params)
    reply = client.post(
        "/twilio/status",
        body=urlencode(params).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert reply.status in (200, 204), reply.text


def _channel_stats(ctx: AppContext, channel: str) -> dict[str, Any]:
    stats = api.stats(ctx, since=None, until=None)
    return next(c for c in stats["channels"] if c["channel"] == channel)


def _sent_page(ctx: AppContext, fake: FakeTwilio, channel: str = "sms") -> tuple[int, int, str]:
    incident_id, _page, message_id = start_page(ctx, preferred_channel=channel, fallback_channels=[])
    assert dispatch.dispatch_pass(ctx)["sent"] == 1
    sid = message(ctx, message_id).provider_id or ""
    store = fake.calls if channel == "voice" else fake.messages
    assert store[sid]["price"] is None  # Twilio's answer to the create: no price yet
    assert message(ctx, message_id).price is None
    return incident_id, message_id, sid


def test_price_is_fetched_after_a_delivered_callback_and_shown_in_statistics(
    service: WsgiClient, channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    _incident, message_id, sid = _sent_page(channels_ctx, fake_twilio)
    assert fake_twilio.messages[sid]["status_callback"] == f"{PUBLIC}/twilio/status"

    fake_twilio.set_status(sid, "delivered")  # Twilio prices the message as it is delivered…
    _callback(service, fake_twilio, {"MessageSid": sid, "MessageStatus": "delivered", "To": "+27821234567"})
    row = message(channels_ctx, message_id)
    assert row.status == "delivered" and row.price is None  # …but the callback does not carry the price
    assert _channel_stats(channels_ctx, "sms")["unpriced"] == 1

    assert price_pass(channels_ctx) == {"looked_up": 1, "priced": 1, "waiting": 0, "missing": 0}

    assert fake_twilio.lookups(sid) == 1
    row = message(channels_ctx, message_id)
    assert row.currency == "USD" and row.price is not None and abs(row.price) == Decimal("0.0075")
    sms = _channel_stats(channels_ctx, "sms")
    assert sms["cost"] == {"USD": "0.00750"} and sms["unpriced"] == 0
    assert price_pass(channels_ctx)["looked_up"] == 0  # priced once, never asked again
    assert fake_twilio.lookups(sid) == 1


def test_a_completed_call_is_priced_after_its_callback(
    service: WsgiClient, channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    _incident, message_id, sid = _sent_page(channels_ctx, fake_twilio, channel="voice")

    fake_twilio.set_status(sid, "completed", duration=75)  # two started minutes
    _callback(service, fake_twilio, {"CallSid": sid, "CallStatus": "completed", "CallDuration": "75"})
    price_pass(channels_ctx)

    assert fake_twilio.lookups(sid) == 1
    assert message(channels_ctx, message_id).price == Decimal("0.028")
    assert _channel_stats(channels_ctx, "voice")["cost"] == {"USD": "0.02800"}


def test_price_not_yet_reported_is_asked_again_later_then_shown(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    fake_twilio.price_later = True  # Twilio prices some minutes after the final status
    _incident, message_id, sid = _sent_page(channels_ctx, fake_twilio)
    fake_twilio.set_status(sid, "delivered")
    assert dispatch.poll_pass(channels_ctx)["updated"] == 1  # the final status, found by polling
    assert message(channels_ctx, message_id).status == "delivered"

    assert price_pass(channels_ctx)["waiting"] == 1
    assert fake_twilio.lookups(sid) == 2  # the poll's GET and the price lookup's
    assert price_pass(channels_ctx)["looked_up"] == 0  # not asked again at once
    clock.advance(timedelta(seconds=59))
    assert price_pass(channels_ctx)["looked_up"] == 0
    clock.advance(timedelta(seconds=2))
    assert price_pass(channels_ctx) == {"looked_up": 1, "priced": 0, "waiting": 1, "missing": 0}
    assert _channel_stats(channels_ctx, "sms")["cost"] == {}

    fake_twilio.price_now(sid)
    clock.advance(timedelta(minutes=1))
    assert price_pass(channels_ctx)["priced"] == 1
    assert fake_twilio.lookups(sid) == 4
    assert _channel_stats(channels_ctx, "sms")["cost"] == {"USD": "0.00750"}


def test_lookups_stop_after_24_hours_and_the_timeline_says_so(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    fake_twilio.price_later = True  # and Twilio never gets round to it
    incident_id, message_id, sid = _sent_page(channels_ctx, fake_twilio)
    fake_twilio.set_status(sid, "undelivered", error_code=30003)
    dispatch.poll_pass(channels_ctx)
    assert message(channels_ctx, message_id).status == "undelivered"

    for _ in range(30 * 6):  # thirty hours, a pass every ten minutes
        price_pass(channels_ctx)
        clock.advance(timedelta(minutes=10))
    lookups = fake_twilio.lookups(sid) - 1  # less the poll's
    # Asked at growing intervals (a minute at first, an hour at most), not every pass; then not at all.
    assert 24 <= lookups <= 60
    missing = events(channels_ctx, "message_price_missing")
    assert len(missing) == 1 and missing[0].incident_id == incident_id
    assert "within 24 h" in missing[0].message and "missing from statistics" in missing[0].message
    assert _channel_stats(channels_ctx, "sms")["unpriced"] == 1
    shown = api.show_incident(channels_ctx, incident_id)
    assert any(e["kind"] == "message_price_missing" for e in shown["events"])

    clock.advance(timedelta(days=2))
    price_pass(channels_ctx)
    assert fake_twilio.lookups(sid) - 1 == lookups


def test_a_failed_message_carries_the_processing_fee(
    service: WsgiClient, channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    _incident, _message_id, sid = _sent_page(channels_ctx, fake_twilio)
    fake_twilio.set_status(sid, "failed", error_code=30008)
    _callback(service, fake_twilio, {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30008"})
    price_pass(channels_ctx)
    assert _channel_stats(channels_ctx, "sms")["cost"] == {"USD": "0.00100"}


def test_simulated_messages_are_never_looked_up(offline_ctx: AppContext) -> None:
    start_page(offline_ctx, preferred_channel="sms", fallback_channels=[])
    dispatch.dispatch_pass(offline_ctx)
    assert price_pass(offline_ctx)["looked_up"] == 0
    assert _channel_stats(offline_ctx, "sms")["unpriced"] == 0


def test_check_runs_the_price_pass_after_the_poll(
    channels_ctx: AppContext, fake_twilio: FakeTwilio, clock: FakeClock
) -> None:
    fake_twilio.price_later = True
    _incident, message_id, sid = _sent_page(channels_ctx, fake_twilio)
    fake_twilio.set_status(sid, "delivered")

    first = run_once(channels_ctx)
    assert first["poll"]["updated"] == 1 and first["price"]["waiting"] == 1
    fake_twilio.price_now(sid)
    clock.advance(timedelta(minutes=1))
    assert run_once(channels_ctx)["price"]["priced"] == 1
    assert message(channels_ctx, message_id).currency == "USD"

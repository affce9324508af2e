"""The dispatch pass: lifecycle, deadlines, quiet hours, rate limits, the master switch, slow channels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import add_message, events, message, start_page

from engine import dispatch, switches
from engine.channels import OutgoingMessage, SendResult, StatusResult, build_senders, install_senders
from engine.channels.base import Capabilities
from engine.context import AppContext
from engine.db import write_session
from engine.models import MessageStatus, OutboxMessage
from tests.fakes.twilio_server import FakeTwilio


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("pending", "sending", True),
        ("sending", "sent", True),
        ("sent", "delivered", True),
        ("delivered", "read", True),
        ("sent", "failed", True),
        ("sent", "undelivered", True),
        ("delivered", "sent", False),  # a late "sent" never overwrites "delivered"
        ("read", "delivered", False),
        ("delivered", "undelivered", False),
        ("failed", "sent", False),
        ("cancelled", "sent", False),
        ("sent", "sent", False),
    ],
)
def test_message_status_only_moves_forward(current: str, new: str, allowed: bool) -> None:
    assert dispatch.can_move(current, new) is allowed


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after() -> None:
    import random

    rng = random.Random(7)
    delays = [dispatch.backoff_seconds(n, 5.0, None, rng) for n in (1, 2, 3, 4)]
    for n, delay in enumerate(delays, start=1):
        assert 5.0 * 2 ** (n - 1) * 0.8 <= delay <= 5.0 * 2 ** (n - 1) * 1.2
    assert dispatch.backoff_seconds(1, 5.0, 90.0, rng) >= 90.0
    assert dispatch.backoff_seconds(30, 5.0, None, rng) <= dispatch.MAX_BACKOFF_SECONDS


def test_a_late_sent_callback_does_not_overwrite_delivered(channels_ctx: AppContext) -> None:
    msg_id = add_message(channels_ctx, "sms", "+27821110000")
    dispatch.dispatch_pass(channels_ctx)
    now = channels_ctx.clock.now()
    with write_session(channels_ctx.sessions) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None
        assert dispatch.apply_status(
            session, row, StatusResult(row.provider_id or "", "delivered"), now, "callback"
        )
        assert not dispatch.apply_status(
            session, row, StatusResult(row.provider_id or "", "sent"), now, "callback"
        )
    assert message(channels_ctx, msg_id).status == "delivered"
    assert message(channels_ctx, msg_id).delivered_at == now


def test_message_left_sending_by_a_dead_engine_is_requeued_after_its_deadline(
    channels_ctx: AppContext,
) -> None:
    now = channels_ctx.clock.now()
    msg_id = add_message(channels_ctx, "sms", "+27821110000")
    with write_session(channels_ctx.sessions) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None
        row.status = "sending"
        row.attempts = 1
        row.claimed_by = "dead-node:1:serve:abc"
        row.sending_deadline = now + timedelta(seconds=60)

    assert dispatch.dispatch_pass(channels_ctx)["recovered"] == 0  # deadline not passed yet
    channels_ctx.clock.advance(61)  # type: ignore[attr-defined]
    result = dispatch.dispatch_pass(channels_ctx)

    assert result["recovered"] == 1 and result["sent"] == 1
    row2 = message(channels_ctx, msg_id)
    assert row2.status == "sent" and row2.attempts == 2
    [ev] = events(channels_ctx, "message_deadline_passed")
    assert "dead-node" in ev.message


def test_message_past_its_deadline_with_no_attempts_left_fails_and_the_page_falls_back(
    channels_ctx: AppContext,
) -> None:
    _incident, page_id, msg_id = start_page(
        channels_ctx, preferred_channel="sms", fallback_channels=["email"]
    )
    now = channels_ctx.clock.now()
    with write_session(channels_ctx.sessions) as session:
        row = session.get(OutboxMessage, msg_id)
        assert row is not None
        row.status = "sending"
        row.attempts = channels_ctx.settings.send_max_attempts
        row.claimed_by = "dead-node"
        row.sending_deadline = now - timedelta(seconds=1)

    dispatch.dispatch_pass(channels_ctx)

    row2 = message(channels_ctx, msg_id)
    assert row2.status == "failed" and (row2.error_text or "").startswith("deadline passed")
    with channels_ctx.sessions() as session:
        channels_ = [
            m.channel
            for m in session.query(OutboxMessage).filter_by(page_id=page_id).order_by(OutboxMessage.id)
        ]
    assert channels_ == ["sms", "email"]


def test_non_critical_page_waits_for_quiet_hours_to_end(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    # 08:00 UTC = 10:00 in Johannesburg; quiet hours 09:00-12:00 local end at 10:00 UTC.
    _incident, _page_id, msg_id = start_page(channels_ctx, quiet_start="09:00", quiet_end="12:00")

    dispatch.dispatch_pass(channels_ctx)

    row = message(channels_ctx, msg_id)
    assert row.status == "pending" and row.hold_reason == "quiet_hours"
    assert row.next_attempt_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert fake_twilio.sent() == []

    channels_ctx.clock.set(datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC))  # type: ignore[attr-defined]
    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, msg_id).status == "sent"


def test_quiet_hours_starting_after_the_page_was_written_still_hold_it(channels_ctx: AppContext) -> None:
    _incident, _page_id, msg_id = start_page(channels_ctx, quiet_start="10:30", quiet_end="12:00")
    channels_ctx.clock.advance(timedelta(minutes=45))  # type: ignore[attr-defined]  # now 10:45 local

    result = dispatch.dispatch_pass(channels_ctx)

    assert result["held_quiet_hours"] == 1
    row = message(channels_ctx, msg_id)
    assert row.hold_reason == "quiet_hours" and row.next_attempt_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert events(channels_ctx, "message_held")


def test_critical_page_goes_through_quiet_hours(channels_ctx: AppContext) -> None:
    msg_id = add_message(channels_ctx, "sms", "+27821234567", kind="page", critical=True)
    # A person in quiet hours would hold a non-critical page; a critical one has no hold at all.
    assert dispatch.dispatch_pass(channels_ctx)["sent"] == 1
    assert message(channels_ctx, msg_id).status == "sent"


def test_rate_limit_holds_messages_and_releases_them_later(channels_ctx: AppContext) -> None:
    channels_ctx.settings.rate_per_recipient_per_minute = 2
    dispatch.shutdown(channels_ctx)  # a fresh limiter with the new setting
    ids = [add_message(channels_ctx, "sms", "+27821110000", f"Message {n}") for n in range(4)]

    first = dispatch.dispatch_pass(channels_ctx)

    assert first["sent"] == 2 and first["held_rate_limit"] == 2
    held = [message(channels_ctx, i) for i in ids[2:]]
    assert all(m.status == "pending" and m.hold_reason == "rate_limit" for m in held)
    assert all(m.attempts == 0 for m in held)  # a hold is not a failed attempt
    wait = (held[0].next_attempt_at - channels_ctx.clock.now()).total_seconds()  # type: ignore[operator]
    assert 29 <= wait <= 31  # one token every 30 s

    channels_ctx.clock.advance(31)  # type: ignore[attr-defined]
    assert dispatch.dispatch_pass(channels_ctx)["sent"] == 1
    channels_ctx.clock.advance(31)  # type: ignore[attr-defined]
    assert dispatch.dispatch_pass(channels_ctx)["sent"] == 1
    assert all(message(channels_ctx, i).status == "sent" for i in ids)


def test_master_switch_off_keeps_notices_waiting_but_pages_still_go(channels_ctx: AppContext) -> None:
    with write_session(channels_ctx.sessions) as session:
        switches.set_switch(session, switches.NOTIFICATIONS_ENABLED, False, now=channels_ctx.clock.now())
    notice_id = add_message(channels_ctx, "sms", "+27821110000", kind="notice")
    page_id = add_message(channels_ctx, "sms", "+27821110001", kind="page")

    dispatch.dispatch_pass(channels_ctx)

    assert message(channels_ctx, notice_id).status == "pending"
    assert message(channels_ctx, page_id).status == "sent"
    with write_session(channels_ctx.sessions) as session:
        switches.set_switch(session, switches.NOTIFICATIONS_ENABLED, True, now=channels_ctx.clock.now())
    dispatch.dispatch_pass(channels_ctx)
    assert message(channels_ctx, notice_id).status == "sent"


class SlowSender:
    """A provider that takes its time (a real delay, like a provider having a bad day)."""

    name = "email"
    simulated = False
    capabilities = Capabilities()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def send(self, message: OutgoingMessage) -> SendResult:
        import time

        time.sleep(self.seconds)
        return SendResult(provider_id=f"slow-{message.id}")

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id, "sent")


def test_a_slow_channel_does_not_hold_up_the_others(channels_ctx: AppContext) -> None:
    senders = build_senders(channels_ctx.settings, clock=channels_ctx.clock)
    senders["email"] = SlowSender(4.0)
    install_senders(channels_ctx, senders)
    slow = [add_message(channels_ctx, "email", f"p{n}@example.org") for n in range(4)]
    fast = [add_message(channels_ctx, "sms", f"+2782111{n:04d}") for n in range(40)]

    first = dispatch.dispatch_pass(channels_ctx, wait_seconds=2.0)

    assert first["sent"] == 40  # every SMS recorded while the e-mails are still on the line
    assert all(message(channels_ctx, i).status == "sent" for i in fast)
    assert all(message(channels_ctx, i).status == "sending" for i in slow)
    later = dispatch.dispatch_pass(channels_ctx, wait_seconds=10)
    assert later["sent"] == 4
    assert all(message(channels_ctx, i).status == "sent" for i in slow)


def test_two_passes_never_send_one_message_twice(channels_ctx: AppContext, fake_twilio: FakeTwilio) -> None:
    import threading

    ids = [add_message(channels_ctx, "sms", f"+2782222{n:04d}") for n in range(60)]
    threads = [threading.Thread(target=dispatch.dispatch_pass, args=(channels_ctx,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dispatch.dispatch_pass(channels_ctx)
    assert len(fake_twilio.sent()) == 60
    assert all(message(channels_ctx, i).status == MessageStatus.SENT.value for i in ids)


class GatedSender:
    """A provider that answers only once the test opens the gate (counting every message it was given)."""

    name = "sms"
    simulated = False
    capabilities = Capabilities()

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.seen: list[int] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        with self.lock:
            self.seen.append(message.id)
        assert self.gate.wait(30), "the test never opened the gate"
        return SendResult(provider_id=f"gated-{message.id}")

    def fetch_status(self, provider_id: str) -> StatusResult:
        return StatusResult(provider_id, "sent")


def test_a_full_channel_takes_no_more_than_its_pool_and_the_rest_wait_unharmed(
    channels_ctx: AppContext,
) -> None:
    gated = GatedSender()
    senders = build_senders(channels_ctx.settings, clock=channels_ctx.clock)
    senders["sms"] = gated
    install_senders(channels_ctx, senders)
    dispatcher = dispatch.dispatcher_for(channels_ctx)
    dispatcher.workers["sms"] = 2  # room for 2 × 4 messages on the line or queued
    sms = [add_message(channels_ctx, "sms", f"+2782333{n:04d}") for n in range(30)]
    email = add_message(channels_ctx, "email", "ops@example.org")

    first = dispatch.dispatch_pass(channels_ctx, wait_seconds=1.0)

    assert first["claimed"] == dispatcher.capacity("sms") + 1
    assert message(channels_ctx, email).status == "sent", "another channel is not held up by a full one"
    waiting = [message(channels_ctx, i) for i in sms]
    assert sum(m.status == "sending" for m in waiting) == dispatcher.capacity("sms")
    rest = [m for m in waiting if m.status != "sending"]
    assert all(m.status == "pending" and m.attempts == 0 and m.hold_reason is None for m in rest)

    gated.gate.set()
    for _ in range(20):
        dispatch.dispatch_pass(channels_ctx, wait_seconds=5.0)
        if all(message(channels_ctx, i).status == "sent" for i in sms):
            break
    assert all(message(channels_ctx, i).status == "sent" for i in sms)
    assert sorted(gated.seen) == sorted(sms), "each message went to the provider exactly once"
    assert all(message(channels_ctx, i).attempts == 1 for i in sms)


def test_a_backlog_drains_in_one_pass_at_the_rate_the_senders_allow(
    channels_ctx: AppContext, fake_twilio: FakeTwilio
) -> None:
    """The defect: a pass claimed what the pools could take at that moment and then waited for the next tick,
    so 10,000 messages due at once took minutes at about 33 a second. Now each finished send frees a slot the
    next claim fills: one pass sends a backlog many times its pools' size."""
    backlog = [add_message(channels_ctx, "sms", f"+2782444{n:04d}", f"Storm alert {n}") for n in range(600)]
    capacity = dispatch.dispatcher_for(channels_ctx).capacity("sms")
    assert len(backlog) > 5 * capacity

    result = dispatch.dispatch_pass(channels_ctx, wait_seconds=120.0)

    assert result["sent"] == len(backlog)
    assert all(message(channels_ctx, i).status == "sent" for i in backlog)
    assert len(fake_twilio.sent()) == len(backlog), "each reached Twilio once"

"""One person's channel chain (preferred, then fallbacks), confirmation windows, responses, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.clock import FakeClock
from engine.context import AppContext
from engine.models import InboundMessage, MessageStatus, OutboxMessage, Page, PageStatus, Person
from engine.paging import advance_page, build_chain, confirm_page, confirm_pass

from .helpers import add_person, add_policy, events, outbox


def person(**fields) -> Person:
    values = {
        "handle": "thandi",
        "name": "Thandi",
        "phone": "+27821234567",
        "whatsapp": None,
        "email": "thandi@example.org",
        "preferred_channel": "sms",
        "fallback_channels": ["whatsapp", "email", "voice"],
        "disabled_channels": [],
        "opted_out_channels": [],
        "confirm_wait_seconds": 900,
        "fallback_wait_seconds": 300,
    }
    values.update(fields)
    return Person(**values)


def test_chain_starts_with_the_preferred_channel_then_the_fallbacks_in_order() -> None:
    chain = build_chain(person(whatsapp="+27820000000"))
    assert [(c["channel"], c["address"], c["wait_seconds"]) for c in chain] == [
        ("sms", "+27821234567", 900),
        ("whatsapp", "+27820000000", 300),
        ("email", "thandi@example.org", 300),
        ("voice", "+27821234567", 300),
    ]


def test_chain_skips_channels_with_no_contact_disabled_or_opted_out() -> None:
    chain = build_chain(
        person(email=None, disabled_channels=["voice"], opted_out_channels=["sms"], preferred_channel="sms")
    )
    # sms opted out, email has no address, voice disabled; WhatsApp falls back to the phone number.
    assert [(c["channel"], c["address"]) for c in chain] == [("whatsapp", "+27821234567")]
    assert chain[0]["wait_seconds"] == 900  # the first channel tried gets the first-channel wait


def test_chain_lists_a_channel_once_even_when_named_twice() -> None:
    chain = build_chain(person(preferred_channel="email", fallback_channels=["email", "sms", "sms"]))
    assert [c["channel"] for c in chain] == ["email", "sms"]


def test_person_with_no_usable_channel_gets_an_empty_chain() -> None:
    assert build_chain(person(phone=None, email=None, preferred_channel="sms", fallback_channels=[])) == []


# ---------------------------------------------------------------------------------------------------------


def _setup(
    ctx: AppContext, sessions: sessionmaker[Session], run, severity: str = "high", **person_fields
) -> int:
    fields = {
        "fallback_channels": ["whatsapp", "email"],
        "confirm_wait_seconds": 600,
        "fallback_wait_seconds": 120,
    }
    fields.update(person_fields)
    add_person(sessions, "thandi", **fields)
    add_policy(sessions, "standby", [{"targets": [("person", "thandi")]}])
    result = api.trigger(ctx, policy="standby", summary="Reservoir level low", severity=severity)
    run()
    assert result.escalation_id is not None
    return result.escalation_id


def _page(sessions: sessionmaker[Session]) -> Page:
    with sessions() as s:
        return s.scalars(select(Page)).one()


def _mark(sessions: sessionmaker[Session], key: str, status: str, at: datetime) -> None:
    with sessions.begin() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == key)
            .values(status=status, sent_at=at)
        )


def test_first_message_goes_to_the_preferred_channel(ctx, sessions, run) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    msgs = outbox(sessions, kind="page")
    assert len(msgs) == 1
    assert msgs[0].idempotency_key == f"page:{esc}:1:0:{page.person_id}:0"
    assert (msgs[0].channel, msgs[0].address, msgs[0].status) == ("sms", "+27821234567", "pending")
    assert msgs[0].page_id == page.id and msgs[0].chain_step == 0 and msgs[0].level == 1
    assert "Reservoir level low" in msgs[0].body
    assert page.status == PageStatus.ACTIVE and page.step == 0


def test_failed_sms_falls_back_to_whatsapp_at_once(ctx, sessions, run, clock: FakeClock) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    first = f"page:{esc}:1:0:{page.person_id}:0"
    _mark(sessions, first, MessageStatus.FAILED, clock.now())
    with sessions.begin() as s:
        p = s.get(Page, page.id)
        msg = advance_page(s, p, clock.now(), "failed (21610)", from_step=0)
        assert msg is not None
    msgs = outbox(sessions, kind="page")
    assert [m.channel for m in msgs] == ["sms", "whatsapp"]
    assert msgs[1].idempotency_key == f"page:{esc}:1:0:{page.person_id}:1"
    assert msgs[1].created_at == clock.now()  # at once, not after the confirmation window
    fallback = events(sessions, "page_fallback")
    assert len(fallback) == 1 and fallback[0].data["from"] == "sms" and fallback[0].data["to"] == "whatsapp"


def test_a_late_failure_report_for_a_step_already_left_does_nothing(ctx, sessions, run, clock) -> None:
    _setup(ctx, sessions, run)
    page = _page(sessions)
    with sessions.begin() as s:
        assert advance_page(s, s.get(Page, page.id), clock.now(), "failed", from_step=0) is not None
    with sessions.begin() as s:  # the same failure reported twice (two engines, a retried callback)
        assert advance_page(s, s.get(Page, page.id), clock.now(), "failed", from_step=0) is None
    assert [m.channel for m in outbox(sessions, kind="page")] == ["sms", "whatsapp"]


def test_a_sent_message_waits_its_window_then_moves_to_the_next_channel(ctx, sessions, run, clock) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    _mark(sessions, f"page:{esc}:1:0:{page.person_id}:0", MessageStatus.DELIVERED, clock.now())
    clock.advance(599)
    confirm_pass(ctx)
    assert len(outbox(sessions, kind="page")) == 1  # still inside the first window (600 s)
    clock.advance(1)
    confirm_pass(ctx)
    assert [m.channel for m in outbox(sessions, kind="page")] == ["sms", "whatsapp"]
    assert _page(sessions).next_check_at == clock.now() + timedelta(seconds=120)  # the fallback window


def test_the_window_starts_when_the_message_is_sent_not_when_it_was_queued(ctx, sessions, run, clock) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    clock.advance(600)
    confirm_pass(ctx)  # not sent yet (dispatcher busy): nothing moves
    assert len(outbox(sessions, kind="page")) == 1
    _mark(sessions, f"page:{esc}:1:0:{page.person_id}:0", MessageStatus.SENT, clock.now())
    clock.advance(300)
    confirm_pass(ctx)
    assert len(outbox(sessions, kind="page")) == 1
    clock.advance(300)
    confirm_pass(ctx)
    assert len(outbox(sessions, kind="page")) == 2


def test_confirmation_stops_the_chain(ctx, sessions, run, clock) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    with sessions.begin() as s:
        assert advance_page(s, s.get(Page, page.id), clock.now(), "failed", from_step=0) is not None
    with sessions.begin() as s:
        assert confirm_page(s, s.get(Page, page.id), clock.now(), "voice_keypress")
    msgs = outbox(sessions, kind="page")
    assert msgs[1].status == MessageStatus.CANCELLED  # the WhatsApp not yet sent is withdrawn
    for _ in range(5):
        clock.advance(3600)
        confirm_pass(ctx)
    assert len(outbox(sessions, kind="page")) == 2
    got = _page(sessions)
    assert got.status == PageStatus.CONFIRMED and got.confirmation_method == "voice_keypress"
    assert events(sessions, "page_confirmed")[0].escalation_id == esc


def test_any_message_from_the_person_after_the_last_attempt_counts_as_a_response(
    ctx, sessions, run, clock
) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    _mark(sessions, f"page:{esc}:1:0:{page.person_id}:0", MessageStatus.DELIVERED, clock.now())
    clock.advance(60)
    with sessions.begin() as s:
        s.add(
            InboundMessage(
                channel="sms", from_address="+27821234567", body="on my way", received_at=clock.now()
            )
        )
    clock.advance(600)
    confirm_pass(ctx)
    got = _page(sessions)
    assert got.status == PageStatus.CONFIRMED and got.confirmation_method == "reply"
    assert len(outbox(sessions, kind="page")) == 1


def test_a_message_from_before_the_last_attempt_is_not_a_response(ctx, sessions, run, clock) -> None:
    with sessions.begin() as s:
        s.add(
            InboundMessage(
                channel="sms",
                from_address="+27821234567",
                body="old",
                received_at=clock.now() - timedelta(hours=1),
            )
        )
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    _mark(sessions, f"page:{esc}:1:0:{page.person_id}:0", MessageStatus.DELIVERED, clock.now())
    clock.advance(600)
    confirm_pass(ctx)
    assert _page(sessions).status == PageStatus.ACTIVE
    assert len(outbox(sessions, kind="page")) == 2


def test_chain_is_exhausted_when_every_channel_was_tried(ctx, sessions, run, clock) -> None:
    esc = _setup(ctx, sessions, run)
    page = _page(sessions)
    for step in range(3):
        _mark(sessions, f"page:{esc}:1:0:{page.person_id}:{step}", MessageStatus.DELIVERED, clock.now())
        clock.advance(600)
        confirm_pass(ctx)
    got = _page(sessions)
    assert got.status == PageStatus.EXHAUSTED and got.next_check_at is None
    assert [m.channel for m in outbox(sessions, kind="page")] == ["sms", "whatsapp", "email"]
    exhausted = events(sessions, "page_exhausted")
    assert len(exhausted) == 1 and exhausted[0].data["channels"] == ["sms", "whatsapp", "email"]
    assert "every channel" in exhausted[0].message


def test_person_without_any_channel_is_exhausted_at_once_with_an_event(ctx, sessions, run) -> None:
    _setup(ctx, sessions, run, phone=None, email=None)
    assert _page(sessions).status == PageStatus.EXHAUSTED
    assert outbox(sessions, kind="page") == []
    assert len(events(sessions, "page_exhausted")) == 1


def test_quiet_hours_hold_a_non_critical_page_until_they_end(ctx, sessions, run, clock) -> None:
    # 08:00 UTC is 10:00 in Johannesburg; quiet 09:00–12:00 local ends at 10:00 UTC.
    _setup(ctx, sessions, run, quiet_start="09:00", quiet_end="12:00")
    msg = outbox(sessions, kind="page")[0]
    assert msg.hold_reason == "quiet_hours"
    assert msg.next_attempt_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    page = _page(sessions)
    assert page.status == PageStatus.HELD
    assert page.next_check_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC) + timedelta(seconds=600)
    assert events(sessions, "page_held")


def test_critical_pages_go_through_quiet_hours(ctx, sessions, run) -> None:
    _setup(ctx, sessions, run, severity="critical", quiet_start="09:00", quiet_end="12:00")
    msg = outbox(sessions, kind="page")[0]
    assert msg.hold_reason is None and msg.critical
    assert msg.next_attempt_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert _page(sessions).status == PageStatus.ACTIVE


def test_acknowledging_cancels_open_pages_and_unsent_messages(ctx, sessions, run, clock) -> None:
    _setup(ctx, sessions, run)
    api.acknowledge(ctx, outbox(sessions)[0].incident_id, by="sipho")
    assert _page(sessions).status == PageStatus.CANCELLED
    assert outbox(sessions, kind="page")[0].status == MessageStatus.CANCELLED
    clock.advance(3600)
    assert confirm_pass(ctx) == 0

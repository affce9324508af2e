"""The data model keeps time zones, enforces its constraints and runs the same on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine.models import Event, Incident, OutboxMessage, Person


def test_times_come_back_aware_utc(sessions: sessionmaker[Session]) -> None:
    local = datetime(2026, 3, 29, 4, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:30 UTC, after the DST change
    with sessions.begin() as s:
        s.add(
            Incident(
                key="k1",
                summary="Fire alarm, Block C",
                created_at=local,
                updated_at=local,
                last_triggered_at=local,
            )
        )
    with sessions() as s:
        got = s.scalars(select(Incident)).one()
        assert got.created_at.tzinfo is not None
        assert got.created_at.utcoffset() == timedelta(0)
        assert got.created_at == local


def test_times_are_stored_in_one_text_form_on_sqlite_so_ranges_compare(
    sessions: sessionmaker[Session],
) -> None:
    """SQLite compares times as text: every writer must use the form rows already hold (SQLite DATETIME's
    storage format, microseconds always written), or a range query would miss or misorder rows."""
    from sqlalchemy import text
    from sqlalchemy.dialects import sqlite

    bind = sessions.kw["bind"]
    if bind.dialect.name != "sqlite":
        pytest.skip("text storage of times is SQLite's")
    whole_second = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    berlin = datetime(2026, 3, 29, 4, 30, 0, 5, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:30:00.000005 UTC
    with sessions.begin() as s:
        for key, at in (("a", whole_second), ("b", berlin)):
            s.add(Incident(key=key, summary=key, created_at=at, updated_at=at, last_triggered_at=at))
    stock = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert stock is not None
    with sessions() as s:
        stored = dict(s.execute(text("SELECT key, created_at FROM incident ORDER BY created_at")).all())
        assert list(stored) == ["a", "b"]
        assert stored["a"] == stock(whole_second.replace(tzinfo=None)) == "2026-03-29 02:30:00.000000"
        assert stored["b"] == "2026-03-29 02:30:00.000005"
        later = s.scalars(select(Incident.key).where(Incident.created_at > whole_second)).all()
        assert later == ["b"]


def test_naive_datetime_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(Exception, match="naive datetime"), sessions.begin() as s:
        s.add(Incident(key="k", summary="x", created_at=datetime(2026, 1, 1)))
        s.flush()


def test_outbox_idempotency_key_is_unique(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        s.add(OutboxMessage(idempotency_key="esc1:1:0:7:0", channel="sms", address="+27821234567"))
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(OutboxMessage(idempotency_key="esc1:1:0:7:0", channel="sms", address="+27821234567"))


def test_event_ids_increase_as_a_change_feed(sessions: sessionmaker[Session]) -> None:
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    with sessions.begin() as s:
        for i in range(5):
            s.add(Event(kind="note", at=now, message=str(i)))
    with sessions() as s:
        ids = list(s.scalars(select(Event.id).order_by(Event.id)))
        assert ids == sorted(ids) and len(set(ids)) == 5


def test_person_handle_is_unique(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        s.add(Person(handle="thandi", name="Thandi Nkosi"))
    with pytest.raises(IntegrityError), sessions.begin() as s:
        s.add(Person(handle="thandi", name="Another Thandi"))

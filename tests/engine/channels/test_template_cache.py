"""The cached template lookups never serve an edit late in the process that made it, nor a rolled-back one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FakeClock
from engine.models import Template
from engine.templates import render


def _body(sessions: sessionmaker[Session]) -> str:
    with sessions() as s:
        return render(s, "ack_notice", "sms", "en", {"by": "Sipho", "incident_id": 7})[1]


def test_an_edited_template_applies_to_the_very_next_message(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    shipped = _body(sessions)  # no template row yet: the shipped text
    assert "Sipho" in shipped
    with sessions.begin() as s:
        s.add(
            Template(
                kind="ack_notice", channel="sms", language="en", body="v1 {{ by }}", created_at=clock.now()
            )
        )
    assert _body(sessions) == "v1 Sipho"
    with sessions.begin() as s:
        s.scalars(select(Template)).one().body = "v2 {{ by }}"
    assert _body(sessions) == "v2 Sipho"
    with sessions.begin() as s:
        s.delete(s.scalars(select(Template)).one())
    assert _body(sessions) == shipped


def test_a_rolled_back_template_edit_is_never_served(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with sessions.begin() as s:
        s.add(
            Template(
                kind="ack_notice", channel="sms", language="en", body="v1 {{ by }}", created_at=clock.now()
            )
        )
    assert _body(sessions) == "v1 Sipho"
    with sessions() as s:
        s.scalars(select(Template)).one().body = "draft {{ by }}"
        s.flush()
        # The editing session sees its own change…
        assert render(s, "ack_notice", "sms", "en", {"by": "Sipho"})[1] == "draft Sipho"
        s.rollback()
    # …and once it is rolled back, nobody does.
    assert _body(sessions) == "v1 Sipho"

"""Fixtures for the escalation engine tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FakeClock
from engine.context import AppContext
from engine.escalation import escalate_pass

from .helpers import add_person


@pytest.fixture
def run(ctx: AppContext, clock: FakeClock) -> Callable[[float], int]:
    """Move the clock forward by `seconds`, then run the escalate pass; how many escalations it processed."""

    def _run(seconds: float = 0) -> int:
        if seconds:
            clock.advance(timedelta(seconds=seconds))
        return escalate_pass(ctx)

    return _run


@pytest.fixture
def people(sessions: sessionmaker[Session]) -> dict[str, int]:
    return {
        "thandi": add_person(sessions, "thandi"),
        "sipho": add_person(sessions, "sipho", phone="+27829876543", preferred_channel="whatsapp"),
        "anna": add_person(sessions, "anna", phone="+27831112222", email="anna@example.org"),
    }

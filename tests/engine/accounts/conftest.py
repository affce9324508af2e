"""Fixtures for the accounts, audit and handover tests (both databases): a centre with accounts of every role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine import accounts
from engine.context import AppContext
from engine.db import write_session
from engine.models import Person
from engine.permissions import Identity

PASSWORD = {"operator": "night-shift-7", "supervisor": "day-supervisor-2", "admin": "centre-admin-9"}


@dataclass
class Centre:
    ctx: AppContext

    def signed_in(self, username: str) -> Identity:
        role = username.rstrip("0123456789")
        return accounts.sign_in(self.ctx, username, PASSWORD[role], via="test").identity


@pytest.fixture
def centre(ctx: AppContext) -> Centre:
    """Two accounts of each role (operator1, operator2, supervisor1, …), operator1 linked to Thandi's person
    record, and the people Thandi and Sipho."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        session.add_all(
            [
                Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567"),
                Person(handle="sipho", name="Sipho Dlamini", phone="+27831234567"),
            ]
        )
        session.flush()
        for role in ("operator", "supervisor", "admin"):
            for n in (1, 2):
                accounts.create_operator(
                    session,
                    now,
                    username=f"{role}{n}",
                    password=PASSWORD[role],
                    display_name=f"{role.title()} {n}",
                    role=role,
                    person="thandi" if (role, n) == ("operator", 1) else None,
                )
    return Centre(ctx)

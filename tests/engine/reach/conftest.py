"""A small centre for the reach tests: two people, one account per role (each linked to a person), tokens."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field

import pytest

from engine import accounts
from engine.cli import main
from engine.context import AppContext
from engine.db import write_session
from engine.migrate import stamp
from engine.models import Person
from engine.permissions import Identity
from engine.service.keys import create_api_token
from tests.signin import PASSWORDS, Typed


@dataclass
class Centre:
    ctx: AppContext
    url: str
    people: dict[str, int] = field(default_factory=dict)  # handle -> person id
    accounts: dict[str, Identity] = field(default_factory=dict)  # role -> identity of its account
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token

    def cli(self, role: str, *args: str) -> tuple[int, str, str]:
        """Run `watchkeeper ARGS` signed in as the account of `role` (its password typed on stdin):
        (exit code, stdout, stderr)."""
        old = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = Typed(PASSWORDS[role], again=True), io.StringIO(), io.StringIO()
        try:
            code = main(["--db", self.url, "--user", role, *args])
            return code, sys.stdout.getvalue(), sys.stderr.getvalue()
        finally:
            sys.stdin, sys.stdout, sys.stderr = old


@pytest.fixture
def centre(ctx: AppContext) -> Centre:
    stamp(ctx.db)
    c = Centre(ctx, ctx.db.url.render_as_string(hide_password=False))
    now = ctx.clock.now()
    with write_session(ctx.sessions) as s:
        for handle, name, phone, email in (
            ("thandi", "Thandi Nkosi", "+27821234567", "thandi@example.org"),
            ("sipho", "Sipho Dlamini", "+27831234567", None),
            ("naledi", "Naledi Mokoena", "+27841234567", None),
        ):
            person = Person(handle=handle, name=name, phone=phone, email=email)
            s.add(person)
            s.flush()
            c.people[handle] = person.id
        for role, handle in (("operator", "thandi"), ("supervisor", "naledi"), ("admin", None)):
            op = accounts.create_operator(
                s, now, username=role, password=PASSWORDS[role], role=role, person=handle
            )
            s.flush()
            c.accounts[role] = Identity(
                name=role, role=role, account_id=op.id, person_id=op.person_id, display_name=role.title()
            )
    for role in ("operator", "supervisor", "admin"):
        c.tokens[role] = create_api_token(ctx, label=f"{role}-token", role=role).secret
    return c

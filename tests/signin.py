"""Helpers for tests that sign in: accounts made the way the engine makes them, and a stdin that types."""

from __future__ import annotations

import io

from engine import accounts
from engine.db import make_engine, session_factory, write_session

PASSWORDS = {
    "operator": "operator-password-1",
    "supervisor": "supervisor-password-1",
    "admin": "admin-password-1",
}


def add_account(url: str, username: str, role: str, password: str | None = None, **fields: object) -> str:
    """An account on the database at `url` (its password, by role unless given); returns the password."""
    password = password or PASSWORDS[role]
    engine = make_engine(url)
    try:
        from engine.clock import SystemClock

        with write_session(session_factory(engine)) as session:
            accounts.create_operator(
                session, SystemClock().now(), username=username, password=password, role=role, **fields
            )
    finally:
        engine.dispose()
    return password


class Typed(io.StringIO):
    """stdin that is not a terminal: the lines a person (or a script) pipes in, then, with `again`, the last
    one over and over (a password every command of a test asks for)."""

    def __init__(self, *lines: str, again: bool = False) -> None:
        super().__init__("".join(line + "\n" for line in lines))
        self._again = lines[-1] + "\n" if again and lines else ""

    def isatty(self) -> bool:
        return False

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        line = super().readline(-1 if size is None else size)
        return line or self._again


def migrated(url: str) -> str:
    """The models' schema on the database at `url`, recorded as at head (what `db upgrade` leaves)."""
    from engine.migrate import stamp
    from engine.models import Base

    engine = make_engine(url)
    try:
        Base.metadata.create_all(engine)
        stamp(engine)
    finally:
        engine.dispose()
    return url

"""Receipts of applied Events API events: written in the transaction that applied the event, read before any
event is applied, so an event is applied exactly once however its claim ends (see engine.service.queue)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from engine.models import IntakeReceipt

_T: Any = IntakeReceipt.__table__
_INSERT = insert(_T)
_READ = select(_T.c.uid, _T.c.outcome, _T.c.incident_id).where(
    _T.c.uid.in_(bindparam("uids", expanding=True))
)


def write(conn: Connection, receipts: Sequence[tuple[str, str, int | None]], now: datetime) -> None:
    """Record (uid, outcome, incident id) for events applied in this transaction. A plain INSERT: an event
    applied twice would fail its second transaction on the primary key, and nothing of it would stay."""
    if receipts:
        conn.execute(
            _INSERT,
            [{"uid": u, "outcome": o, "incident_id": i, "applied_at": now} for u, o, i in receipts],
        )


def applied(conn: Connection, uids: Iterable[str]) -> dict[str, tuple[str, int | None]]:
    """{uid: (outcome, incident id)} of the events among `uids` that were applied already."""
    wanted = sorted(set(uids))
    found: dict[str, tuple[str, int | None]] = {}
    for start in range(0, len(wanted), 500):
        for uid, outcome, incident_id in conn.execute(_READ, {"uids": wanted[start : start + 500]}):
            found[str(uid)] = (str(outcome), int(incident_id) if incident_id is not None else None)
    return found

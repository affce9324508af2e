"""The timeline and audit log: every state change writes one Event row in the same transaction.

The event table's increasing id is the change feed consoles follow, so anything an operator should see change
must go through `record` (or `emit`, for a caller that does not need the Event object back).

A batch that records many events at once (the escalate pass) opens an `EventBuffer` on its session: events
recorded meanwhile are kept back, in order, and written together with one executemany INSERT when the buffer
is flushed, instead of going through the ORM unit of work one object at a time. They are still written in the
same transaction, in the order they were recorded.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, TypedDict, Unpack

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from engine.models import Event
from engine.prepared import Copied, Prepared

_BUFFER_KEY = "timeline.event_buffer"
_EVENT: Any = Event.__table__
_COLUMNS = ("kind", "at", "incident_id", "escalation_id", "actor", "message", "data")
# A multi-row INSERT on PostgreSQL carries this many rows: measured faster per row than SQLAlchemy's default of
# up to 1,000 (the driver and the server parse a long statement of thousands of parameters slowly).
PG_ROWS_PER_INSERT = 32
# Up to this many event rows go to PostgreSQL as one executemany (psycopg pipelines it), more by COPY.
_PG_PIPELINED = 4
_INSERT_EVENT_ROWS = Prepared(insert(_EVENT))
_COPY_EVENTS = Copied(_EVENT)


def insert_rows(conn: Connection, events: list[dict[str, Any]]) -> None:
    """Event rows (all with the same columns) in one go: the driver's executemany on SQLite and for a few
    rows on PostgreSQL (psycopg pipelines it), COPY for more (engine.prepared.Copied)."""
    if not events:
        return
    if conn.dialect.name == "sqlite" or len(events) <= _PG_PIPELINED:
        _INSERT_EVENT_ROWS.run_many(conn, events, columns=True)
    else:
        _COPY_EVENTS.write(conn, events)


class EventFields(TypedDict, total=False):
    """What an event may say besides its kind and time."""

    incident_id: int | None
    escalation_id: int | None
    actor: str  # "system" unless given
    message: str
    data: dict[str, Any] | None


def _row(kind: str, at: datetime, fields: EventFields) -> dict[str, Any]:
    data = fields.get("data")
    return {
        "kind": kind,
        "at": at,
        "incident_id": fields.get("incident_id"),
        "escalation_id": fields.get("escalation_id"),
        "actor": fields.get("actor", "system"),
        "message": fields.get("message", ""),
        "data": data if data is not None else {},
    }


def _buffer(session: Session) -> list[Event | dict[str, Any]] | None:
    found: list[Event | dict[str, Any]] | None = session.info.get(_BUFFER_KEY)
    return found


def record(session: Session, kind: str, at: datetime, **fields: Unpack[EventFields]) -> Event:
    event = Event(**_row(kind, at, fields))
    buffer = _buffer(session)
    if buffer is not None:
        buffer.append(event)
    else:
        session.add(event)
    return event


def emit(session: Session, kind: str, at: datetime, **fields: Unpack[EventFields]) -> dict[str, Any]:
    """`record` for a caller that does not need the Event object: inside an EventBuffer the event is kept as
    a plain row (no ORM instance). Returns the event's data, which may still be changed until it is written."""
    row = _row(kind, at, fields)
    buffer = _buffer(session)
    if buffer is not None:
        buffer.append(row)
    else:
        session.add(Event(**row))
    data: dict[str, Any] = row["data"]
    return data


class EventBuffer:
    """`with EventBuffer(session) as events:` … `events.flush()`: events recorded on `session` inside the
    block are written by `flush`, not by the session. Events not flushed when the block ends are dropped (the
    batch that recorded them failed and is rolled back)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._events: list[Event | dict[str, Any]] = []

    def __enter__(self) -> EventBuffer:
        if _BUFFER_KEY in self.session.info:
            raise RuntimeError("an event buffer is already open on this session")
        self.session.info[_BUFFER_KEY] = self._events
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.session.info.pop(_BUFFER_KEY, None)
        self._events = []

    def __len__(self) -> int:
        return len(self._events)

    def flush(self) -> int:
        """Write the events recorded so far (one statement); how many."""
        events, self._events[:] = list(self._events), []
        if events:
            rows = [e if isinstance(e, dict) else {c: getattr(e, c) for c in _COLUMNS} for e in events]
            insert_rows(self.session.connection(), rows)
        return len(events)

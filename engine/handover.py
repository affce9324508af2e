"""Shift handover: the note an outgoing operator writes at sign-out, and what the incoming one is shown.

At sign-out the operator may write a note for the next shift; it is stored with the shift's counts at that
moment. The next person to sign in (someone else, who has not signed in since it was written) is shown the
note together with the incidents that matter for the shift: every open one, the unacknowledged ones among
them, and those whose SLA was breached during the outgoing shift or that are open and in breach now.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from engine import audit
from engine.context import AppContext
from engine.db import write_session
from engine.errors import ValidationError
from engine.models import OPEN_INCIDENT_STATUSES, HandoverNote, Incident
from engine.permissions import Action, Identity, authorize

DEFAULT_SHIFT = timedelta(hours=12)
MAX_NOTE_LENGTH = 10_000
LIST_LIMIT = 200


@dataclass(frozen=True)
class IncidentBrief:
    id: int
    summary: str
    severity: str
    status: str
    site: str
    created_at: datetime
    acknowledged_by: str | None
    breach: str  # "", "response", "resolution" or "response, resolution"


@dataclass(frozen=True)
class ShiftSummary:
    since: datetime
    until: datetime
    open: list[IncidentBrief] = field(default_factory=list)
    unacknowledged: list[IncidentBrief] = field(default_factory=list)
    breached: list[IncidentBrief] = field(default_factory=list)
    open_count: int = 0
    unacknowledged_count: int = 0
    breached_count: int = 0


@dataclass(frozen=True)
class Note:
    id: int
    written_at: datetime
    author: str
    author_name: str
    shift_started_at: datetime | None
    text: str
    open_count: int
    unacknowledged_count: int
    breached_count: int


@dataclass(frozen=True)
class Handover:
    note: Note | None
    summary: ShiftSummary


_OPEN = [s.value for s in OPEN_INCIDENT_STATUSES]


def _brief(i: Incident) -> IncidentBrief:
    breach = ", ".join(
        name
        for name, at in (("response", i.response_breached_at), ("resolution", i.resolution_breached_at))
        if at is not None
    )
    return IncidentBrief(
        id=i.id,
        summary=i.summary,
        severity=i.severity,
        status=i.status,
        site=i.site,
        created_at=i.created_at,
        acknowledged_by=i.acknowledged_by,
        breach=breach,
    )


def _listed(session: Session, condition: ColumnElement[bool], limit: int) -> tuple[list[IncidentBrief], int]:
    count = int(session.scalar(select(func.count()).select_from(Incident).where(condition)) or 0)
    rows = session.scalars(select(Incident).where(condition).order_by(Incident.id.desc()).limit(limit)).all()
    return [_brief(i) for i in rows], count


def shift_summary(session: Session, now: datetime, since: datetime, limit: int = LIST_LIMIT) -> ShiftSummary:
    """Open incidents, the unacknowledged ones, and those breached during [since, now] or open in breach."""
    is_open = Incident.status.in_(_OPEN)
    unacked = and_(is_open, Incident.acknowledged_at.is_(None))
    breached = or_(
        and_(Incident.response_breached_at >= since, Incident.response_breached_at <= now),
        and_(Incident.resolution_breached_at >= since, Incident.resolution_breached_at <= now),
        and_(
            is_open,
            or_(Incident.response_breached_at.is_not(None), Incident.resolution_breached_at.is_not(None)),
        ),
    )
    open_list, open_count = _listed(session, is_open, limit)
    unacked_list, unacked_count = _listed(session, unacked, limit)
    breached_list, breached_count = _listed(session, breached, limit)
    return ShiftSummary(
        since=since,
        until=now,
        open=open_list,
        unacknowledged=unacked_list,
        breached=breached_list,
        open_count=open_count,
        unacknowledged_count=unacked_count,
        breached_count=breached_count,
    )


def _note(n: HandoverNote) -> Note:
    return Note(**{f.name: getattr(n, f.name) for f in fields(Note)})


def write_note(ctx: AppContext, identity: Identity, text: str, *, shift_started_at: datetime | None) -> Note:
    """Store the outgoing operator's note with the shift's counts now; an audit entry says who wrote it."""
    body = text.strip()
    if not body:
        raise ValidationError("the handover note is empty", field="note")
    if len(body) > MAX_NOTE_LENGTH:
        raise ValidationError(f"the handover note is longer than {MAX_NOTE_LENGTH} characters", field="note")
    now = ctx.clock.now()
    since = shift_started_at or now - DEFAULT_SHIFT
    with write_session(ctx.sessions) as session:
        identity = authorize(session, identity, Action.HANDOVER)
        summary = shift_summary(session, now, since, limit=0)
        note = HandoverNote(
            written_at=now,
            author=identity.name[:200],
            author_name=identity.label[:200],
            operator_id=identity.account_id,
            shift_started_at=shift_started_at,
            text=body,
            open_count=summary.open_count,
            unacknowledged_count=summary.unacknowledged_count,
            breached_count=summary.breached_count,
        )
        session.add(note)
        session.flush()
        audit.record(
            session,
            now,
            identity,
            "handover_note",
            object_kind="handover",
            object_name=f"note {note.id}",
            message=f"Handover note by {identity.label}: {summary.open_count} open, "
            f"{summary.unacknowledged_count} unacknowledged, {summary.breached_count} breached",
            data={"note_id": note.id, "text": body[:2000]},
        )
        return _note(note)


def latest_note(session: Session) -> Note | None:
    row = session.scalars(select(HandoverNote).order_by(HandoverNote.id.desc()).limit(1)).first()
    return _note(row) if row is not None else None


def note_for(
    session: Session, identity: Identity, previous_sign_in_at: datetime | None, now: datetime
) -> Note | None:
    """The latest note someone else wrote since this person last signed in (within a day of now when they
    never have), or None."""
    since = previous_sign_in_at or now - timedelta(days=1)
    row = session.scalars(
        select(HandoverNote)
        .where(HandoverNote.written_at > since, HandoverNote.author != identity.name)
        .order_by(HandoverNote.id.desc())
        .limit(1)
    ).first()
    return _note(row) if row is not None else None


def handover_for(
    session: Session, identity: Identity, previous_sign_in_at: datetime | None, now: datetime
) -> Handover:
    """What the incoming person sees at sign-in: the note left for them (if any) and the outgoing shift's
    incidents, the shift being the note's (or the last 12 hours)."""
    note = note_for(session, identity, previous_sign_in_at, now)
    since = (note.shift_started_at if note is not None else None) or now - DEFAULT_SHIFT
    return Handover(note=note, summary=shift_summary(session, now, since))

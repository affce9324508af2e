"""A person's notifications: what the engine wrote for them (engine.notifications), listed, counted, marked read.

Who sees what. A notification is addressed to one person (`person_id`), to a role (`role`: every account with
that role, e.g. an overdue item escalated to the supervisors) or to a team (`team_id`: every member of the
team, e.g. an SLA warning on an incident the team owns). A signed-in account sees the notifications of the
person record it is linked to, those of its own role and those of every team that person is a member of (as
the team is now: someone who joins a team sees its notices, someone who leaves no longer does); an API token,
which is no person, sees those of its role.

Read is shared for a role and for a team: a notification to the supervisors or to Fire rescue is one notice,
and when one of them marks it read it is read for all of them (like a shared inbox), with `read_by` naming who
dealt with it; a person's own notifications are theirs alone.

Each entry carries its deep link: the incident or the workflow item it is about. Readers take a Session;
marking read takes the AppContext and the identity that acts (its role and linked person decide what it may
mark). Nothing here checks the permission itself: the entry points do (Action.NOTIFICATIONS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, update
from sqlalchemy.orm import Session

from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import NotFound
from engine.models import Notification, Person, Team, TeamMember
from engine.permissions import Identity

MAX_LIST = 500


@dataclass(frozen=True)
class Recipient:
    """Whose notifications: a person record (or none) and a role (or none)."""

    person_id: int | None
    role: str | None

    @classmethod
    def of(cls, identity: Identity) -> Recipient:
        """An account: its linked person and its role; a token or the local administrator: its role only."""
        if identity.kind == "system":
            return cls(None, None)
        return cls(identity.person_id, identity.role or None)


@dataclass(frozen=True)
class NoticeRecord:
    id: int
    kind: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    to: str  # "you", "role:<role>" or "team:<team handle>"
    incident_id: int | None
    workflow_item_id: int | None
    read_by: str | None = None  # who marked it read (for a role's or a team's: possibly a colleague)
    team: str | None = None  # the team's name, for a team's notification

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @property
    def link(self) -> dict[str, Any] | None:
        """Where the notification leads: the workflow item it is about, else its incident; None when neither."""
        if self.workflow_item_id is not None:
            return {"kind": "item", "id": self.workflow_item_id}
        if self.incident_id is not None:
            return {"kind": "incident", "id": self.incident_id}
        return None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["read_at"] = self.read_at.isoformat() if self.read_at else None
        data["unread"] = self.unread
        data["link"] = self.link
        return data


def _addressed_to(who: Recipient) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if who.person_id is not None:
        parts.append(Notification.person_id == who.person_id)
        my_teams = select(TeamMember.team_id).where(TeamMember.person_id == who.person_id)
        parts.append(Notification.team_id.in_(my_teams.scalar_subquery()))
    if who.role:
        parts.append(
            and_(
                Notification.person_id.is_(None),
                Notification.team_id.is_(None),
                Notification.role == who.role,
            )
        )
    return or_(*parts) if parts else false()


def _to(n: Notification, team: Team | None) -> str:
    if n.person_id is not None:
        return "you"
    if n.team_id is not None:
        return f"team:{team.handle if team else n.team_id}"
    return f"role:{n.role}"


def _record(n: Notification, team: Team | None = None) -> NoticeRecord:
    return NoticeRecord(
        id=n.id,
        kind=n.kind,
        title=n.title,
        body=n.body,
        created_at=n.created_at,
        read_at=n.read_at,
        to=_to(n, team),
        incident_id=n.incident_id,
        workflow_item_id=n.workflow_item_id,
        read_by=n.read_by,
        team=team.name if team else None,
    )


def notifications(
    session: Session,
    who: Recipient,
    *,
    unread_only: bool = False,
    unread_first: bool = False,
    limit: int = 100,
) -> list[NoticeRecord]:
    """Newest first (unread ones first when `unread_first`), at most `limit` (1…500)."""
    limit = max(1, min(int(limit), MAX_LIST))
    stmt = (
        select(Notification, Team).outerjoin(Team, Team.id == Notification.team_id).where(_addressed_to(who))
    )
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    order: list[Any] = [Notification.created_at.desc(), Notification.id.desc()]
    if unread_first:
        order.insert(0, case((Notification.read_at.is_(None), 0), else_=1))
    return [_record(n, t) for n, t in session.execute(stmt.order_by(*order).limit(limit)).tuples()]


def unread_count(session: Session, who: Recipient) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(_addressed_to(who), Notification.read_at.is_(None))
        )
        or 0
    )


def _reader(session: Session, by: Identity) -> str:
    """Who marked it read, as colleagues know them: the linked person's name, else the account's label."""
    name = session.scalar(select(Person.name).where(Person.id == by.person_id)) if by.person_id else None
    return (name or by.label)[:200]


def mark_read(ctx: AppContext, by: Identity, notification_id: int) -> NoticeRecord:
    """Mark one notification read (already read: unchanged). NotFound when it is not addressed to `by`."""
    who = Recipient.of(by)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        row = session.scalars(
            select(Notification).where(Notification.id == notification_id, _addressed_to(who))
        ).one_or_none()
        if row is None:
            raise NotFound(f"no notification {notification_id} for {by.label}")
        if row.read_at is None:
            row.read_at = now
            row.read_by = _reader(session, by)
        session.flush()
        return _record(row, session.get(Team, row.team_id) if row.team_id is not None else None)


def mark_all_read(ctx: AppContext, by: Identity) -> int:
    """Mark every unread notification of `by` read; how many were unread."""
    who = Recipient.of(by)
    with write_session(ctx.sessions) as session:
        result = session.execute(
            update(Notification)
            .where(_addressed_to(who), Notification.read_at.is_(None))
            .values(read_at=ctx.clock.now(), read_by=_reader(session, by))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def inbox(
    ctx: AppContext, by: Identity, *, unread_only: bool = False, unread_first: bool = False, limit: int = 100
) -> dict[str, Any]:
    """The list and the unread count for `by`, as plain data (the command line's and HTTP's answer)."""
    who = Recipient.of(by)
    with read_session(ctx.sessions) as session:
        rows = notifications(session, who, unread_only=unread_only, unread_first=unread_first, limit=limit)
        unread = unread_count(session, who)
    return {
        "person_id": who.person_id,
        "role": who.role,
        "unread": unread,
        "notifications": [r.as_dict() for r in rows],
    }

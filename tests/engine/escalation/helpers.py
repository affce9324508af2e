"""Helpers for the escalation engine tests: people, teams and policies written straight to the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.models import (
    Event,
    OutboxMessage,
    Person,
    Policy,
    PolicyLevel,
    PolicyTarget,
    Team,
    TeamMember,
)


def add_person(sessions: sessionmaker[Session], handle: str, **fields: Any) -> int:
    values: dict[str, Any] = {
        "handle": handle,
        "name": handle.capitalize(),
        "phone": "+27821234567",
        "email": f"{handle}@example.org",
        "preferred_channel": "sms",
        "fallback_channels": ["whatsapp", "email"],
        "timezone": "Africa/Johannesburg",
    }
    values.update(fields)
    with sessions.begin() as s:
        person = Person(**values)
        s.add(person)
        s.flush()
        return person.id


def add_team(
    sessions: sessionmaker[Session], handle: str, members: list[str], manager: str | None = None
) -> int:
    with sessions.begin() as s:
        people = {p.handle: p for p in s.scalars(select(Person))}
        team = Team(
            handle=handle, name=handle.capitalize(), manager_id=people[manager].id if manager else None
        )
        team.members = [TeamMember(person_id=people[m].id, position=i) for i, m in enumerate(members)]
        s.add(team)
        s.flush()
        return team.id


def add_policy(
    sessions: sessionmaker[Session],
    name: str,
    levels: list[dict[str, Any]],
    **fields: Any,
) -> int:
    """levels: [{"targets": [("person", "thandi"), …], "delay_seconds": …, …}, …]"""
    with sessions.begin() as s:
        policy = Policy(name=name, **fields)
        for n, spec in enumerate(levels, start=1):
            spec = dict(spec)
            targets = spec.pop("targets")
            level = PolicyLevel(level=n, **spec)
            level.targets = [
                PolicyTarget(position=i, type=t[0], identifier=t[1], name=t[2] if len(t) > 2 else "")
                for i, t in enumerate(targets)
            ]
            policy.levels.append(level)
        s.add(policy)
        s.flush()
        return policy.id


def outbox(sessions: sessionmaker[Session], **where: Any) -> list[OutboxMessage]:
    with sessions() as s:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(OutboxMessage, k) == v)
        return list(s.scalars(stmt))


def events(sessions: sessionmaker[Session], kind: str | None = None) -> list[Event]:
    with sessions() as s:
        stmt = select(Event).order_by(Event.id)
        if kind:
            stmt = stmt.where(Event.kind == kind)
        return list(s.scalars(stmt))


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def bulk_escalations(
    sessions: sessionmaker[Session], policy: str, n: int, now: Any, due: list[Any] | None = None
) -> list[int]:
    """`n` open incidents with PENDING escalations of `policy`, written in one go (much faster than n
    triggers); `due` gives each one's first action time (default: `now`). Returns the escalation ids."""
    from sqlalchemy import insert

    from engine.api import _load_snapshot
    from engine.models import Escalation, Incident

    with sessions.begin() as s:
        snapshot, _enabled = _load_snapshot(s, policy)
        s.execute(
            insert(Incident),
            [
                {
                    "key": f"bulk-{i}",
                    "summary": f"Bulk incident {i}",
                    "created_at": now,
                    "updated_at": now,
                    "last_triggered_at": now,
                }
                for i in range(n)
            ],
        )
        ids = list(s.scalars(select(Incident.id).where(Incident.key.like("bulk-%")).order_by(Incident.id)))
        s.execute(
            insert(Escalation),
            [
                {
                    "incident_id": incident_id,
                    "policy_id": snapshot["id"],
                    "policy_name": policy,
                    "policy_snapshot": snapshot,
                    "state": "pending",
                    "level_rounds": {},
                    "next_action_at": due[i] if due else now,
                    "started_at": now,
                    "updated_at": now,
                }
                for i, incident_id in enumerate(ids)
            ],
        )
        return list(s.scalars(select(Escalation.id).order_by(Escalation.id)))

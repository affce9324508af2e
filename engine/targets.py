"""Who a policy target means at a given moment: people to page, or an address to write to directly.

A level's targets are resolved when the level is paged, not when the policy is written: a team means its
members (or its manager) as they are now, an on-call schedule means whoever is on call at that instant. A team
with an on-call schedule of its own means whoever is on call on it (the team's person on duty, not the whole
team); when nobody is (a gap in the rota) it means every member, so a level naming the team is never silent. People
are paged through their own channel chain (engine.paging); an e-mail address, phone number, webhook or console
target gets one message with no chain. A target that resolves to nobody (unknown handle, empty team, nobody on
call, inactive person) is reported to the caller so the escalation can record a `target_unresolved` event that
operators see, never a silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.models import Channel, Escalation, Person, Schedule, TargetType, Team


@dataclass(frozen=True)
class AddressTarget:
    """A message straight to an address, with no person and no channel chain."""

    channel: str
    address: str
    name: str = ""


@dataclass
class Resolution:
    """What one target means now: people, an address, or nothing (with the reason)."""

    people: list[Person] = field(default_factory=list)
    address: AddressTarget | None = None
    unresolved: str = ""  # why nobody was found; empty when resolved


class TargetCache:
    """People, teams and schedules looked up once per pass instead of once per escalation; who is on call
    for a schedule is worked out once per (schedule, instant), so a batch paging the same schedule for many
    escalations at one `now` reads the rotation once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._people: dict[str, Person | None] = {}
        self._people_by_id: dict[int, Person | None] = {}
        self._teams: dict[str, Team | None] = {}
        self._schedules: dict[str, int | None] = {}
        self._on_call: dict[tuple[int, datetime], list[int]] = {}

    def person(self, handle: str) -> Person | None:
        if handle not in self._people:
            person = self.session.scalars(select(Person).where(Person.handle == handle)).one_or_none()
            self._people[handle] = person
            if person is not None:
                self._people_by_id[person.id] = person
        return self._people[handle]

    def person_by_id(self, person_id: int) -> Person | None:
        if person_id not in self._people_by_id:
            self._people_by_id[person_id] = self.session.get(Person, person_id)
        return self._people_by_id[person_id]

    def team(self, handle: str) -> Team | None:
        if handle not in self._teams:
            self._teams[handle] = self.session.scalars(
                select(Team).where(Team.handle == handle)
            ).one_or_none()
        return self._teams[handle]

    def schedule_id(self, handle: str) -> int | None:
        if handle not in self._schedules:
            self._schedules[handle] = self.session.scalars(
                select(Schedule.id).where(Schedule.handle == handle)
            ).one_or_none()
        return self._schedules[handle]

    def on_call(self, schedule_id: int, at: datetime) -> list[int]:
        """Person ids on call for the schedule at `at` (engine.oncall.on_call_at)."""
        key = (schedule_id, at)
        found = self._on_call.get(key)
        if found is None:
            from engine.oncall import on_call_at

            found = self._on_call[key] = list(on_call_at(self.session, schedule_id, at))
        return list(found)


# Address targets: the channel their message goes out on. A phone target is texted; "voice:+27…" calls.
_ADDRESS_CHANNELS: dict[str, Channel] = {
    TargetType.EMAIL.value: Channel.EMAIL,
    TargetType.PHONE.value: Channel.SMS,
    TargetType.WEBHOOK.value: Channel.WEBHOOK,
    TargetType.CONSOLE.value: Channel.CONSOLE,
}


def _active(people: list[Person | None]) -> list[Person]:
    return [p for p in people if p is not None and p.active]


def resolve_target(cache: TargetCache, target: dict[str, Any], at: datetime) -> Resolution:
    """Resolve one snapshot target ({"type", "identifier", "name"}) at `at`."""
    kind = str(target.get("type", ""))
    ident = str(target.get("identifier", "")).strip()
    name = str(target.get("name", ""))
    if kind == TargetType.PERSON:
        person = cache.person(ident)
        if person is None:
            return Resolution(unresolved=f"no person with handle {ident!r}")
        if not person.active:
            return Resolution(unresolved=f"{person.name} is inactive")
        return Resolution(people=[person])
    if kind in (TargetType.TEAM, TargetType.TEAM_MANAGER):
        team = cache.team(ident)
        if team is None:
            return Resolution(unresolved=f"no team with handle {ident!r}")
        if kind == TargetType.TEAM_MANAGER:
            manager = cache.person_by_id(team.manager_id) if team.manager_id is not None else None
            people = _active([manager])
            return Resolution(
                people=people, unresolved="" if people else f"team {team.name} has no active manager"
            )
        if team.schedule_id is not None:
            on_call = _active([cache.person_by_id(pid) for pid in cache.on_call(team.schedule_id, at)])
            if on_call:
                return Resolution(people=on_call)
        people = _active([cache.person_by_id(m.person_id) for m in team.members])
        return Resolution(
            people=people, unresolved="" if people else f"team {team.name} has no active members"
        )
    if kind == TargetType.SCHEDULE:
        schedule_id = cache.schedule_id(ident)
        if schedule_id is None:
            return Resolution(unresolved=f"no on-call schedule with handle {ident!r}")
        people = _active([cache.person_by_id(pid) for pid in cache.on_call(schedule_id, at)])
        return Resolution(people=people, unresolved="" if people else f"nobody is on call for {ident!r}")
    channel = _ADDRESS_CHANNELS.get(kind)
    if channel is None:
        return Resolution(unresolved=f"unknown target type {kind!r}")
    if kind == TargetType.PHONE and ident.lower().startswith("voice:"):
        channel, ident = Channel.VOICE, ident[6:].strip()
    if not ident and kind != TargetType.CONSOLE:
        return Resolution(unresolved=f"{kind} target has no address")
    return Resolution(address=AddressTarget(channel=channel.value, address=ident or "all", name=name))


def describe_target(target: dict[str, Any]) -> str:
    name = target.get("name") or target.get("identifier", "")
    return f"{target.get('type', '?')} {name}".strip()


def webhook_target_names(
    session: Session, messages: list[tuple[int, int | None, int | None, str]]
) -> dict[int, str]:
    """For webhook messages (message id, escalation id, level, URL): the name of the policy target each was
    written for, from the policy as its escalation froze it. The name picks the target's own signing key."""
    escalation_ids = {esc for _id, esc, _level, _url in messages if esc is not None}
    if not escalation_ids:
        return {}
    snapshots: dict[int, dict[str, Any]] = {
        row.id: row.policy_snapshot
        for row in session.execute(
            select(Escalation.id, Escalation.policy_snapshot).where(Escalation.id.in_(escalation_ids))
        )
    }
    names: dict[int, str] = {}
    for message_id, escalation_id, level, url in messages:
        snapshot = snapshots.get(escalation_id) if escalation_id is not None else None
        for lvl in (snapshot or {}).get("levels") or []:
            if level is not None and lvl.get("level") != level:
                continue
            name = next(
                (
                    str(t.get("name") or "")
                    for t in lvl.get("targets") or []
                    if t.get("type") == TargetType.WEBHOOK.value
                    and str(t.get("identifier", "")).strip() == url
                    and t.get("name")
                ),
                "",
            )
            if name:
                names[message_id] = name
                break
    return names

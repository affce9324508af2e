"""Builders for the SLA and overdue tests: a team with a manager, incidents, workflow items."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.models import Incident, Person, Team, TeamMember


@dataclass
class Crew:
    team_id: int
    manager_id: int
    agent_id: int
    other_id: int


@pytest.fixture
def crew(sessions: sessionmaker[Session]) -> Crew:
    """A roads team: Thandi manages it, Pieter and Lerato work in it (all in Johannesburg time)."""
    with sessions.begin() as s:
        manager = Person(handle="thandi", name="Thandi Mokoena", phone="+27820000001", language="zu")
        agent = Person(handle="pieter", name="Pieter van Wyk", phone="+27820000002", language="af")
        other = Person(handle="lerato", name="Lerato Dlamini", phone="+27820000003")
        s.add_all([manager, agent, other])
        s.flush()
        team = Team(handle="roads", name="Roads", manager_id=manager.id)
        team.members = [
            TeamMember(person_id=agent.id, position=0),
            TeamMember(person_id=other.id, position=1),
        ]
        s.add(team)
        s.flush()
        return Crew(team_id=team.id, manager_id=manager.id, agent_id=agent.id, other_id=other.id)


def add_incident(s: Session, created_at: datetime, **fields: Any) -> Incident:
    values: dict[str, Any] = {
        "key": f"k-{created_at.timestamp()}-{fields.get('summary', '')}",
        "summary": "Pothole on Main Road",
        "category": "roads",
        "site": "durban",
        "created_at": created_at,
        "updated_at": created_at,
        "last_triggered_at": created_at,
    }
    values.update(fields)
    incident = Incident(**values)
    s.add(incident)
    s.flush()
    return incident

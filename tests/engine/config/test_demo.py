"""`main.py demo` gives a newcomer a living dispatch centre, once, and never piles onto real data."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import func, select

from engine import demo
from engine.config_io import export_text, import_text
from engine.contacts import normalise_phone
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import WatchkeeperError
from engine.models import Base, Event, Incident, IncidentStatus, Person, Policy, SlaConfig, Team, Template


def test_the_demo_centre_file_describes_a_small_south_african_dispatch_centre() -> None:
    document = yaml.safe_load(demo.demo_document_text())

    people = document["people"]
    assert len(people) == 8
    assert {p["language"] for p in people} == {"en", "zu", "af"}
    assert all(normalise_phone(p["phone"]).startswith("+27") for p in people)
    assert any("quiet_hours" in p for p in people)
    assert [t["name"] for t in document["teams"]] == ["Fire & Rescue", "Medical"]
    assert document["teams"][1]["schedule"] == "medical-standby"  # the board's on-call line names the team
    assert {p["name"] for p in document["policies"]} == {
        "critical-incidents",
        "standard-incidents",
        "after-hours",
    }
    assert {s["category"] for s in document["sla"]} == {"fire", "medical", "infrastructure", "general"}
    (rotation,) = document["schedules"][0]["rotations"]
    assert (rotation["handoff_time"], rotation["shift"]) == ("08:00", "7d")
    assert document["schedules"][0]["overrides"]
    assert document["calendars"][0]["holiday_country"] == "ZA"


def test_the_demo_centre_imports_without_warnings(ctx: AppContext) -> None:
    result = import_text(ctx, demo.demo_document_text(), "centre.yaml", actor="tester")

    assert result["warnings"] == []
    with read_session(ctx.sessions) as s:
        critical = s.scalars(select(Policy).where(Policy.name == "critical-incidents")).one()
        assert [(lv.level, lv.delay_seconds) for lv in critical.levels] == [(1, 0), (2, 120), (3, 300)]
        assert [[t.type for t in lv.targets] for lv in critical.levels] == [
            ["person", "console"],
            ["team_manager", "team_manager"],
            ["schedule"],
        ]
        after_hours = s.scalars(select(Policy).where(Policy.name == "after-hours")).one()
        assert after_hours.business_hours_only
        assert s.scalar(select(func.count()).select_from(SlaConfig)) == 4


def test_demo_loads_a_living_centre(ctx: AppContext) -> None:
    result = demo.load_demo(ctx)

    assert (result["people"], result["teams"], result["policies"]) == (8, 2, 3)
    assert result["incidents"] == 6
    with read_session(ctx.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Person)) == 8
        assert s.scalar(select(func.count()).select_from(Team)) == 2
        languages = set(s.scalars(select(Template.language).distinct()))
        assert {"en", "zu", "af"} <= languages
        statuses = sorted(s.scalars(select(Incident.status)))
        assert statuses.count(IncidentStatus.ACKNOWLEDGED.value) == 1
        assert statuses.count(IncidentStatus.RESOLVED.value) == 1
        assert statuses.count(IncidentStatus.OPEN.value) == 4
        sites = set(s.scalars(select(Incident.site)))
        assert len(sites) >= 4
        assert s.scalars(select(Event.actor).where(Event.kind == "config_imported")).one() == "demo"


def test_demo_refuses_to_load_twice(ctx: AppContext) -> None:
    demo.load_demo(ctx)

    with pytest.raises(WatchkeeperError, match="already has policies or incidents"):
        demo.load_demo(ctx)

    with read_session(ctx.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 6


def test_demo_refuses_a_database_with_real_policies(ctx: AppContext) -> None:
    import_text(
        ctx,
        "policies:\n  - name: real\n    levels: [{targets: [{type: console}]}]\n",
        "real.yaml",
        actor="admin",
    )

    with pytest.raises(WatchkeeperError, match="only loaded into an empty database"):
        demo.load_demo(ctx)

    with read_session(ctx.sessions) as s:
        assert s.scalars(select(Policy.name)).all() == ["real"]
        assert s.scalar(select(func.count()).select_from(Person)) == 0


def test_a_demo_that_stopped_before_its_incidents_can_be_loaded_again(ctx: AppContext) -> None:
    import_text(ctx, demo.demo_document_text(), "centre.yaml", actor="demo")

    result = demo.load_demo(ctx)

    assert result["incidents"] == 6
    with read_session(ctx.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Policy)) == 3


def test_force_loads_the_demo_beside_existing_data(ctx: AppContext) -> None:
    import_text(
        ctx,
        "policies:\n  - name: real\n    levels: [{targets: [{type: console}]}]\n",
        "real.yaml",
        actor="admin",
    )

    demo.load_demo(ctx, force=True)

    with read_session(ctx.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Policy)) == 4


def test_the_loaded_demo_exports_and_reimports_losslessly(ctx: AppContext) -> None:
    demo.load_demo(ctx)
    first = export_text(ctx)
    with write_session(ctx.sessions) as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(table.delete())

    result = import_text(ctx, first, "export.yaml", actor="tester")

    assert result["warnings"] == []
    assert result["templates"] > 0
    assert export_text(ctx) == first

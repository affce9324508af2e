"""Export gives back every field, import of an export is lossless, and the editors' save/delete calls follow
the import's rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from engine.config_io import (
    ConfigValidationError,
    delete_object,
    dump_text,
    export_document,
    export_objects,
    export_text,
    import_text,
    object_key,
    parse_document,
    save_objects,
)
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import NotFound, ValidationError
from engine.models import Base, Event, Policy, Rotation, Team, TeamMember


def _empty_the_database(ctx: AppContext) -> None:
    with write_session(ctx.sessions) as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(table.delete())


def _events(ctx: AppContext, kind: str) -> list[dict[str, Any]]:
    with read_session(ctx.sessions) as s:
        found = s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id))
        return [{"actor": e.actor, "data": e.data, "message": e.message} for e in found]


def test_export_gives_back_every_field_that_was_imported(ctx: AppContext, full_document: str) -> None:
    result = import_text(ctx, full_document, "full.yaml", actor="tester")
    assert result["warnings"] == []

    exported = yaml.safe_load(export_text(ctx))

    assert exported == yaml.safe_load(full_document)


def test_yaml_round_trip_through_an_empty_database_is_lossless(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    first = export_text(ctx)

    _empty_the_database(ctx)
    import_text(ctx, first, "export.yaml", actor="tester")

    assert export_text(ctx) == first


def test_json_round_trip_through_an_empty_database_is_lossless(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    first = export_text(ctx, fmt="json")
    assert json.loads(first) == yaml.safe_load(full_document)

    _empty_the_database(ctx)
    import_text(ctx, first, "export.json", actor="tester")

    assert export_text(ctx, fmt="json") == first


def test_override_times_are_exported_in_the_schedules_own_zone(ctx: AppContext, full_document: str) -> None:
    text = full_document.replace('start: "2026-03-06T18:00:00+02:00"', 'start: "2026-03-06T16:00:00Z"')
    import_text(ctx, text, "full.yaml", actor="tester")

    with read_session(ctx.sessions) as s:
        (override,) = export_document(s, ["schedules"])["schedules"][0]["overrides"]

    assert override["start"] == "2026-03-06T18:00:00+02:00"


def test_one_section_can_be_exported_alone(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")

    document = yaml.safe_load(export_text(ctx, kind="policies"))

    assert set(document) == {"version", "policies"}
    assert document["policies"][0]["levels"][1]["delay"] == "5m"
    with pytest.raises(ValidationError, match="unknown kind 'pagers'"):
        export_text(ctx, kind="pagers")


def test_export_of_an_empty_database_imports_cleanly(ctx: AppContext) -> None:
    text = export_text(ctx)

    result = import_text(ctx, text, "empty.yaml", actor="tester")

    assert result["people"] == 0 and result["warnings"] == []


# ---------------------------------------------------------------------------------------------------------
# The console's editors
# ---------------------------------------------------------------------------------------------------------


def test_editors_save_what_they_were_given_and_it_is_audited(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        people = export_objects(s, "people")
    person = people[0]
    person["phone"] = "083 555 0199"
    person["quiet_hours"] = None

    save_objects(ctx, "people", [person], actor="admin.naidoo")

    with read_session(ctx.sessions) as s:
        saved = export_objects(s, "people")[0]
    assert saved["phone"] == "+27835550199"
    assert saved["quiet_hours"] is None
    events = _events(ctx, "config_changed")
    assert [e["actor"] for e in events] == ["admin.naidoo"]


def test_editing_a_policy_makes_a_new_version(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        (policy,) = export_objects(s, "policies")
    policy["levels"].pop()

    save_objects(ctx, "policies", [policy], actor="admin")
    save_objects(ctx, "policies", [policy], actor="admin")  # unchanged: no new version

    with read_session(ctx.sessions) as s:
        saved = s.scalars(select(Policy)).one()
        assert saved.version == 4
        assert [lv.level for lv in saved.levels] == [1]


def test_editors_get_the_same_validation_with_the_objects_path(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        teams = export_objects(s, "teams")
        before = export_document(s)
    teams[0]["members"].append("nobody")
    teams.append({"handle": "medical", "name": "Medical", "members": [], "manager": None, "description": ""})

    with pytest.raises(ConfigValidationError) as info:
        save_objects(ctx, "teams", teams, actor="admin")

    assert "teams[0].members[2]: unknown person 'nobody' (member)" in str(info.value)
    assert info.value.field == "teams[0].members[2]"
    with read_session(ctx.sessions) as s:
        assert export_document(s) == before
    assert _events(ctx, "config_changed") == []


def test_deleting_a_person_takes_them_out_of_teams_and_rotas(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")

    delete_object(ctx, "people", "lindiwe.khumalo", actor="admin")

    with read_session(ctx.sessions) as s:
        team = s.scalars(select(Team)).one()
        assert [m.person.handle for m in team.members] == ["marius.smit"]
        members = s.scalars(select(TeamMember)).all()
        assert len(members) == 1
        rotation = s.scalars(select(Rotation).where(Rotation.name == "Weekdays")).one()
        assert [m.person.handle for m in rotation.members] == ["marius.smit"]
    (event,) = _events(ctx, "config_changed")
    assert event["actor"] == "admin"
    assert event["data"]["object"]["handle"] == "lindiwe.khumalo"


def test_every_kind_can_be_deleted_by_its_key(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        keys = {
            kind: [object_key(kind, o) for o in export_objects(s, kind)]
            for kind in ("templates", "sla", "calendars", "policies", "schedules", "teams", "people")
        }
    assert keys["sla"] == ["*/general", "Umlazi/fire"]
    assert keys["templates"] == ["page/email/zu/v2", "page/sms/zu/v1"]

    for kind, handles in keys.items():
        for handle in handles:
            delete_object(ctx, kind, handle, actor="admin")

    with read_session(ctx.sessions) as s:
        assert all(o == [] for k, o in export_document(s).items() if k != "version")
        assert "default_policy" not in export_document(s)


def test_deleting_something_that_is_not_there_says_so(ctx: AppContext) -> None:
    with pytest.raises(NotFound, match="no person 'ghost'"):
        delete_object(ctx, "people", "ghost", actor="admin")


def test_editors_can_check_objects_before_saving(ctx: AppContext, full_document: str) -> None:
    import_text(ctx, full_document, "full.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        people = export_objects(s, "people")
    people[1]["timezone"] = "SAST"

    with pytest.raises(ConfigValidationError) as info:
        save_objects(ctx, "people", people, actor="admin", dry_run=True)
    assert str(info.value).startswith("people[1].timezone: 'SAST' is an abbreviation")
    assert str(info.value).endswith("nothing was saved (1 problem)")

    people[1]["timezone"] = "Africa/Johannesburg"
    save_objects(ctx, "people", people, actor="admin", dry_run=True)
    with read_session(ctx.sessions) as s:
        assert export_objects(s, "people")[1]["timezone"] == "Europe/London"
    assert _events(ctx, "config_changed") == []


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_text_that_looks_like_numbers_times_or_dates_comes_back_as_text(fmt: str) -> None:
    tricky = [
        "1.5e5",
        "1e5",
        "yes",
        "no",
        "on",
        "08:00",
        "17:00",
        "0x1A",
        "010",
        "1_000",
        "2026-01-05",
        "~",
        "null",
        "1.0",
        "-.inf",
        "+27821234567",
        "0821234567",
        "1:2:3",
        "@x",
        "*a",
        "a: b",
        "- x",
        "#c",
        "multi\nline\n",
        "  padded  ",
        "ünïcödé isiZulu: Ngiyabonga",
    ]

    back = parse_document(dump_text({"values": tricky}, fmt), f"x.{fmt}")

    assert back["values"] == tricky

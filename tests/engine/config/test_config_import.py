"""Importing configuration files: the seed-002 policy format as written, our own format, all-or-nothing
validation with file, line and field in every message."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine import config_io
from engine.config_io import ConfigValidationError, import_files, import_text
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import ValidationError
from engine.models import Event, Person, Policy, Schedule, SystemSetting, Team

SEED_FILE = Path(__file__).resolve().parents[3] / "resources" / "samples" / "seed_policies.yaml"

BASE = """\
people:
  - handle: thandi
    name: Thandi Nkosi
    phone: "082 555 0102"
  - handle: sipho
    name: Sipho Dlamini
    phone: "+27 83 555 0101"
teams:
  - handle: fire
    name: Fire & Rescue
    manager: sipho
    members: [sipho, thandi]
policies:
  - name: fire-critical
    levels:
      - level: 1
        targets:
          - type: person
            identifier: thandi
"""


def _doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _events(ctx: AppContext, kind: str) -> list[dict[str, Any]]:
    with read_session(ctx.sessions) as s:
        found = s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id))
        return [{"actor": e.actor, "data": e.data, "message": e.message} for e in found]


def _refused(ctx: AppContext, rows: Callable[[], dict[str, int]], text: str, source: str) -> str:
    """Import `text`; it must be refused as a whole and leave every table as it was. Returns the message."""
    before = rows()
    events_before = len(_events(ctx, "config_imported"))
    with pytest.raises(ConfigValidationError) as info:
        import_text(ctx, text, source, actor="tester")
    assert rows() == before
    assert len(_events(ctx, "config_imported")) == events_before
    message = str(info.value)
    assert message.endswith(")") and "nothing was imported" in message
    return message


# ---------------------------------------------------------------------------------------------------------
# Seed 002
# ---------------------------------------------------------------------------------------------------------


def test_seed_002_policy_file_imports_as_written(ctx: AppContext) -> None:
    result = import_files(ctx, [SEED_FILE], actor="tester")

    assert result["policies"] == 1
    assert result["default_policy"] == "production_critical"
    with read_session(ctx.sessions) as s:
        policy = s.scalars(select(Policy).where(Policy.name == "production_critical")).one()
        assert policy.description == "Production critical alerts"
        assert policy.severity_filter == ["critical", "high"]
        assert policy.triggers == ["unacknowledged"]
        assert policy.cooldown_seconds == 3600
        assert [lv.level for lv in policy.levels] == [1, 2, 3]
        assert [lv.delay_seconds for lv in policy.levels] == [0, 900, 1800]
        first = policy.levels[0]
        assert (first.repeat_count, first.repeat_interval_seconds) == (2, 300)
        targets = [[(t.type, t.identifier, t.name) for t in lv.targets] for lv in policy.levels]
        assert targets == [
            [("person", "team-lead", "Team Lead"), ("console", "#alerts", "Alerts Channel")],
            [("person", "eng-manager", "Engineering Manager"), ("schedule", "oncall-primary", "")],
            [("person", "director", ""), ("email", "leadership@company.com", "")],
        ]
        setting = s.get(SystemSetting, "default_policy")
        assert setting is not None and setting.value == {"policy": "production_critical"}


def test_seed_targets_naming_nobody_are_accepted_with_a_warning_naming_file_and_line(ctx: AppContext) -> None:
    result = import_files(ctx, [SEED_FILE], actor="tester")

    warnings = result["warnings"]
    assert (
        "seed_policies.yaml:22: escalation.policies[0].levels[0].targets[0].identifier: "
        "no person 'team-lead' yet; this target reaches nobody until one is added"
    ) in warnings
    assert any("no schedule 'oncall-primary'" in w for w in warnings)
    assert any("escalation.store: ignored" in w for w in warnings)


def test_seed_targets_that_name_existing_people_give_no_warning(ctx: AppContext) -> None:
    people = _doc(
        """
        people:
          - {handle: team-lead, name: Team Lead, phone: "+27821234567"}
          - {handle: eng-manager, name: Engineering Manager, email: em@example.org}
          - {handle: director, name: Director, email: director@example.org}
        schedules:
          - handle: oncall-primary
            rotations: [{start_date: "2026-01-05", members: [team-lead]}]
        """
    )
    import_text(ctx, people, "people.yaml", actor="tester")

    result = import_files(ctx, [SEED_FILE], actor="tester")

    assert [w for w in result["warnings"] if "reaches nobody" in w] == []


def test_seed_custom_targets_and_unsupported_triggers_are_dropped_with_warnings(ctx: AppContext) -> None:
    text = _doc(
        """
        escalation:
          policies:
            - name: warn
              triggers: [unacknowledged, severity_upgrade, threshold_breach]
              business_hours_only: true
              business_hours_start: 9
              business_hours_end: 18
              levels:
                - level: 1
                  delay_minutes: 5
                  targets:
                    - {type: custom, identifier: pager-duty}
                    - {type: webhook, identifier: "https://api.example.com/alert", priority: 1}
        """
    )
    result = import_text(ctx, text, "seed.yaml", actor="tester")

    assert any("seed.yaml:4: escalation.policies[0].triggers[1]" in w for w in result["warnings"])
    assert any("custom targets have no counterpart" in w for w in result["warnings"])
    with read_session(ctx.sessions) as s:
        policy = s.scalars(select(Policy)).one()
        assert policy.triggers == ["unacknowledged", "sla_breach"]
        assert (policy.business_start, policy.business_end) == ("09:00", "18:00")
        assert policy.levels[0].delay_seconds == 300
        assert [(t.type, t.identifier) for t in policy.levels[0].targets] == [
            ("webhook", "https://api.example.com/alert")
        ]


# ---------------------------------------------------------------------------------------------------------
# Our format
# ---------------------------------------------------------------------------------------------------------


def test_import_creates_objects_and_records_one_event_with_the_actor(ctx: AppContext) -> None:
    result = import_text(ctx, BASE, "base.yaml", actor="supervisor.mkhize")

    assert (result["people"], result["teams"], result["policies"]) == (2, 1, 1)
    assert result["created"] == {"people": 2, "teams": 1, "policies": 1}
    assert result["warnings"] == []
    events = _events(ctx, "config_imported")
    assert len(events) == 1
    assert events[0]["actor"] == "supervisor.mkhize"
    assert events[0]["data"]["sources"] == ["base.yaml"]
    with read_session(ctx.sessions) as s:
        team = s.scalars(select(Team)).one()
        assert team.manager is not None and team.manager.handle == "sipho"
        assert [m.person.handle for m in team.members] == ["sipho", "thandi"]
        phones = dict(s.execute(select(Person.handle, Person.phone)).tuples().all())
        assert phones == {"thandi": "+27825550102", "sipho": "+27835550101"}


def test_json_import_reads_the_same_structure(
    ctx: AppContext, write_file: Callable[[str, str], Path]
) -> None:
    import yaml

    document = yaml.safe_load(BASE)
    path = write_file("centre.json", json.dumps(document, indent=2))

    result = import_files(ctx, [path], actor="tester")

    assert (result["people"], result["teams"], result["policies"]) == (2, 1, 1)
    with read_session(ctx.sessions) as s:
        assert s.scalars(select(Policy.name)).all() == ["fire-critical"]


def test_reimport_updates_in_place_and_replaces_children(ctx: AppContext) -> None:
    import_text(ctx, BASE, "base.yaml", actor="tester")
    changed = BASE.replace("members: [sipho, thandi]", "members: [thandi]").replace(
        "    levels:\n",
        "    levels:\n      - level: 2\n        delay: 5m\n        targets: [{type: team, identifier: fire}]\n",
    )

    result = import_text(ctx, changed, "base.yaml", actor="tester")

    assert result["updated"] == {"teams": 1, "policies": 1}
    assert result["unchanged"] == {"people": 2}
    with read_session(ctx.sessions) as s:
        team = s.scalars(select(Team)).one()
        assert [m.person.handle for m in team.members] == ["thandi"]
        policy = s.scalars(select(Policy)).one()
        assert [lv.level for lv in policy.levels] == [1, 2]
        assert policy.version == 2
        assert s.scalar(select(func.count()).select_from(Person)) == 2


def test_reimporting_the_same_file_changes_nothing(ctx: AppContext) -> None:
    import_text(ctx, BASE, "base.yaml", actor="tester")
    result = import_text(ctx, BASE, "base.yaml", actor="tester")

    assert result["created"] == {} and result["updated"] == {}
    with read_session(ctx.sessions) as s:
        assert s.scalars(select(Policy.version)).one() == 1


def test_opt_outs_are_kept_when_a_file_does_not_mention_them(ctx: AppContext) -> None:
    import_text(ctx, BASE, "base.yaml", actor="tester")
    with write_session(ctx.sessions) as s:
        s.scalars(select(Person).where(Person.handle == "thandi")).one().opted_out_channels = ["whatsapp"]

    import_text(ctx, BASE, "base.yaml", actor="tester")

    with read_session(ctx.sessions) as s:
        assert s.scalars(select(Person.opted_out_channels).where(Person.handle == "thandi")).one() == [
            "whatsapp"
        ]


def test_files_imported_together_may_refer_to_each_other(
    ctx: AppContext, write_file: Callable[[str, str], Path]
) -> None:
    people = write_file("people.yaml", "people:\n  - {handle: thandi, name: Thandi, phone: '0825550102'}\n")
    teams = write_file("teams.yaml", "teams:\n  - {handle: fire, members: [thandi]}\n")

    result = import_files(ctx, [teams, people], actor="tester")

    assert (result["people"], result["teams"]) == (1, 1)


def test_times_written_without_quotes_stay_times_of_day(ctx: AppContext) -> None:
    text = _doc(
        """
        policies:
          - name: office
            business_hours_only: true
            business_start: 7:30
            business_end: 17:00
            levels: [{targets: [{type: console}]}]
        """
    )
    import_text(ctx, text, "office.yaml", actor="tester")

    with read_session(ctx.sessions) as s:
        policy = s.scalars(select(Policy)).one()
        assert (policy.business_start, policy.business_end) == ("07:30", "17:00")


def test_sections_may_be_mappings_keyed_by_handle(ctx: AppContext) -> None:
    text = _doc(
        """
        people:
          thandi: {name: Thandi Nkosi, email: thandi@example.org}
        schedules:
          duty:
            rotations: [{start_date: "2026-01-05", members: [thandi], shift: 168h}]
        """
    )
    import_text(ctx, text, "map.yaml", actor="tester")

    with read_session(ctx.sessions) as s:
        schedule = s.scalars(select(Schedule)).one()
        assert (schedule.handle, schedule.rotations[0].shift_hours) == ("duty", 168)


# ---------------------------------------------------------------------------------------------------------
# Refused input: file, line, field; the database exactly as before
# ---------------------------------------------------------------------------------------------------------


def test_invalid_phone_is_refused_with_file_line_and_field(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    import_text(ctx, BASE, "base.yaml", actor="tester")
    bad = BASE.replace('phone: "+27 83 555 0101"', 'phone: "082 123"')

    message = _refused(ctx, rows, bad, "people.yaml")

    assert "people.yaml:7: people[1].phone: '082 123' is not a valid phone number" in message


def test_unknown_time_zone_is_refused(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE.replace("    name: Thandi Nkosi\n", "    name: Thandi Nkosi\n    timezone: SAST\n")

    message = _refused(ctx, rows, text, "tz.yaml")

    assert "tz.yaml:4: people[0].timezone: 'SAST' is an abbreviation, not a time zone" in message


def test_yaml_syntax_error_reports_the_parsers_line(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    text = BASE.replace("    members: [sipho, thandi]", "    members: [sipho, thandi\n    oops: 1")

    message = _refused(ctx, rows, text, "broken.yaml")

    assert message.startswith("broken.yaml:")
    assert "not valid YAML" in message
    line = int(message.split(":")[1])
    assert 12 <= line <= 14


def test_json_syntax_error_reports_its_line(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    message = _refused(ctx, rows, '{\n  "people": [\n    {"handle": "x",}\n  ]\n}\n', "broken.json")

    assert message.startswith("broken.json:3: not valid JSON")


def test_duplicate_level_is_refused(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE + "      - level: 1\n        targets: [{type: team, identifier: fire}]\n"

    message = _refused(ctx, rows, text, "levels.yaml")

    assert (
        "levels.yaml:20: policies[0].levels[1].level: level 1 is defined twice (also on line 16)" in message
    )


def test_unknown_target_type_names_the_types_there_are(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    text = BASE.replace("          - type: person\n", "          - type: pager\n")

    message = _refused(ctx, rows, text, "policies.yaml")

    assert (
        "policies.yaml:18: policies[0].levels[0].targets[0].type: unknown target type 'pager' "
        "(expected one of person, team, team_manager, schedule, email, phone, webhook, console, user, channel)"
    ) in message


def test_unknown_channel_is_refused(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE.replace(
        '    phone: "082 555 0102"\n', '    phone: "082 555 0102"\n    fallback_channels: [sms, pager]\n'
    )

    message = _refused(ctx, rows, text, "people.yaml")

    assert "people.yaml:5: people[0].fallback_channels[1]: unknown channel 'pager'" in message


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "    levels:\n",
            "    max_escalations: ten\n    levels:\n",
            "policies[0].max_escalations: expected a whole number, got text 'ten'",
        ),
        (
            "      - level: 1\n",
            "      - level: one\n",
            "policies[0].levels[0].level: expected a whole number",
        ),
        (
            "    members: [sipho, thandi]",
            "    members: sipho",
            "teams[0].members: expected a list, got text 'sipho'",
        ),
        ("    name: Thandi Nkosi", "    name: [Thandi]", "people[0].name: expected text, got a list"),
        ("    levels:\n", "    enabled: maybe\n    levels:\n", "policies[0].enabled: expected true or false"),
        (
            "    levels:\n",
            "    cooldown: soon\n    levels:\n",
            "policies[0].cooldown: 'soon' is not a duration",
        ),
        (
            "    levels:\n",
            "    severity_filter: [critical, urgent]\n    levels:\n",
            "unknown severity 'urgent'",
        ),
        ("    levels:\n", "    triggers: [unacked]\n    levels:\n", "unknown trigger 'unacked'"),
        (
            "    levels:\n",
            "    business_days: [0, 7]\n    levels:\n",
            "policies[0].business_days[1]: 7 is not a day",
        ),
        ("    levels:\n", "    business_start: '25:00'\n    levels:\n", "'25:00' is not a time of day"),
        ("    levels:\n", "    colour: red\n    levels:\n", "policies[0].colour: unknown field 'colour'"),
        (
            "    name: Thandi Nkosi",
            "    name: Thandi Nkosi\n    email: thandi(at)example.org",
            "is not a valid e-mail address",
        ),
        (
            "    members: [sipho, thandi]",
            "    members: [sipho, zodwa]",
            "teams[0].members[1]: unknown person 'zodwa' (member)",
        ),
        ("    manager: sipho", "    manager: zodwa", "teams[0].manager: unknown person 'zodwa' (manager)"),
        ("            identifier: thandi", "            identifier: not-an-address", ""),
    ],
)
def test_wrong_values_and_types_are_refused_naming_the_field(
    ctx: AppContext, rows: Callable[[], dict[str, int]], replace: str, by: str, expected: str
) -> None:
    assert replace in BASE
    text = BASE.replace(replace, by)
    if not expected:
        # A person target naming nobody is only a warning; as an e-mail target it must be an address.
        text = text.replace("          - type: person\n", "          - type: email\n")
        expected = (
            "policies[0].levels[0].targets[0].identifier: 'not-an-address' is not a valid e-mail address"
        )

    message = _refused(ctx, rows, text, "bad.yaml")

    assert "bad.yaml:" in message and expected in message


def test_every_problem_is_reported_at_once(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = _doc(
        """
        people:
          - {handle: a, name: A, phone: "1"}
          - {handle: b, name: B, timezone: Mars/Olympus}
          - {handle: c, name: C, preferred_channel: carrier-pigeon}
        policies:
          - name: p
            levels: []
        """
    )
    message = _refused(ctx, rows, text, "many.yaml")

    assert "many.yaml:2: people[0].phone" in message
    assert "many.yaml:3: people[1].timezone" in message
    assert "many.yaml:4: people[2].preferred_channel" in message
    assert "many.yaml:7: policies[0].levels: a policy needs at least one level" in message
    assert message.endswith("nothing was imported (4 problems)")


def test_a_long_list_of_problems_shows_the_first_few_and_the_count(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    text = "people:\n" + "".join(f"  - {{handle: p{i}, name: P, phone: 'x{i}'}}\n" for i in range(25))

    message = _refused(ctx, rows, text, "many.yaml")

    assert message.count("is not a valid phone number") == config_io.MAX_LISTED_PROBLEMS
    assert "… and 15 more problems" in message
    assert message.endswith("(25 problems)")


def test_a_bad_second_file_means_the_first_is_not_imported_either(
    ctx: AppContext, rows: Callable[[], dict[str, int]], write_file: Callable[[str, str], Path]
) -> None:
    good = write_file("good.yaml", BASE)
    bad = write_file("bad.yaml", "calendars:\n  - name: Office\n    timezone: '+02:00'\n")
    before = rows()

    with pytest.raises(ConfigValidationError) as info:
        import_files(ctx, [good, bad], actor="tester")

    assert rows() == before
    assert f"{bad}:3: calendars[0].timezone: '+02:00' is a UTC offset" in str(info.value)


def test_an_object_defined_twice_is_refused(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE + "  - name: fire-critical\n    levels: [{targets: [{type: console}]}]\n"

    message = _refused(ctx, rows, text, "twice.yaml")

    assert (
        "twice.yaml:20: policies[1]: policy 'fire-critical' is defined twice (first at twice.yaml:14)"
        in message
    )


def test_a_duplicate_field_is_refused(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE.replace("    manager: sipho\n", "    manager: sipho\n    manager: thandi\n")

    message = _refused(ctx, rows, text, "dup.yaml")

    assert "dup.yaml:12: duplicate field 'manager' (it is also on line 11)" in message


def test_override_times_need_a_utc_offset(ctx: AppContext, rows: Callable[[], dict[str, int]]) -> None:
    text = BASE + _doc(
        """
        schedules:
          - handle: duty
            rotations: [{start_date: "2026-01-05", members: [thandi]}]
            overrides:
              - person: sipho
                start: 2026-03-06T18:00:00
                end: 2026-03-06T17:00:00+02:00
        """
    )
    message = _refused(ctx, rows, text, "ov.yaml")

    assert "ov.yaml:25: schedules[0].overrides[0].start: '2026-03-06T18:00:00' has no UTC offset" in message


def test_a_refused_update_leaves_existing_objects_exactly_as_they_were(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    import_text(ctx, BASE, "base.yaml", actor="tester")
    before = config_io.export_text(ctx)
    # A valid change to the team and a broken policy in the same file: neither may be written.
    text = BASE.replace("members: [sipho, thandi]", "members: [thandi]").replace(
        "            identifier: thandi", "            identifier: thandi\n          - type: pager"
    )

    _refused(ctx, rows, text, "update.yaml")

    assert config_io.export_text(ctx) == before


def test_unreadable_file_is_refused_by_name(ctx: AppContext, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        import_files(ctx, [tmp_path / "missing.yaml"], actor="tester")


@pytest.mark.parametrize("name", ["example.yaml", "example.json", "seed_policies.yaml"])
def test_the_shipped_sample_files_import(ctx: AppContext, name: str) -> None:
    result = import_files(ctx, [SEED_FILE.parent / name], actor="tester")

    assert result["policies"] == 1
    if name != "seed_policies.yaml":
        assert result["warnings"] == []


def test_a_dry_run_checks_and_counts_but_keeps_nothing(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    before = rows()

    result = import_text(ctx, BASE, "base.yaml", actor="tester", dry_run=True)

    assert result["dry_run"] is True
    assert result["created"] == {"people": 2, "teams": 1, "policies": 1}
    assert rows() == before
    assert _events(ctx, "config_imported") == []
    with pytest.raises(ConfigValidationError, match="unknown person 'zodwa'"):
        import_text(ctx, BASE.replace("manager: sipho", "manager: zodwa"), "b.yaml", actor="t", dry_run=True)


def test_phone_targets_are_normalised_and_keep_a_request_for_a_call(ctx: AppContext) -> None:
    text = _doc(
        """
        policies:
          - name: control-room
            levels:
              - targets:
                  - {type: phone, identifier: "031 555 0100"}
                  - {type: phone, identifier: "voice:031 555 0100"}
        """
    )
    import_text(ctx, text, "phones.yaml", actor="tester")

    with read_session(ctx.sessions) as s:
        policy = s.scalars(select(Policy)).one()
        assert [t.identifier for t in policy.levels[0].targets] == ["+27315550100", "voice:+27315550100"]


TEAM_ON_CALL = BASE + _doc(
    """
    schedules:
      - handle: fire-rota
        name: Fire rota
        rotations:
          - start_date: "2026-03-01"
            handoff_time: "08:00"
            shift: 12h
            members: [thandi, sipho]
    """
)


def test_a_team_names_its_on_call_schedule_and_reimporting_changes_nothing(ctx: AppContext) -> None:
    text = TEAM_ON_CALL.replace(
        "    members: [sipho, thandi]\n", "    members: [sipho, thandi]\n    schedule: fire-rota\n"
    )
    import_text(ctx, text, "fire.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        team = s.scalars(select(Team)).one()
        assert team.schedule is not None and team.schedule.handle == "fire-rota"
        assert config_io.export_objects(s, "teams")[0]["schedule"] == "fire-rota"
    again = import_text(ctx, text, "fire.yaml", actor="tester")
    assert again["created"] == {} and again["updated"] == {}
    # A file that leaves the schedule out: the team has none (every member is paged again).
    import_text(ctx, TEAM_ON_CALL, "fire.yaml", actor="tester")
    with read_session(ctx.sessions) as s:
        assert s.scalars(select(Team.schedule_id)).one() is None
        assert "schedule" not in config_io.export_objects(s, "teams")[0]


def test_a_team_naming_an_unknown_schedule_is_refused(
    ctx: AppContext, rows: Callable[[], dict[str, int]]
) -> None:
    text = BASE.replace(
        "    members: [sipho, thandi]\n", "    members: [sipho, thandi]\n    schedule: nights\n"
    )

    message = _refused(ctx, rows, text, "teams.yaml")

    assert "teams.yaml:13: teams[0].schedule: unknown schedule 'nights' (on-call schedule)" in message

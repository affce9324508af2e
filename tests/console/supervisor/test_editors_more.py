"""Templates preview live; schedules show who is on call; SLA/calendars/teams save through the engine;
YAML import/export round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from console.editors import EditorsWidget
from console.editors.schedules import SchedulesEditor
from console.editors.sla import CalendarsEditor, SlaEditor
from console.editors.teams import TeamsEditor
from console.editors.templates import TemplatesEditor
from engine import config_io
from engine.models import Event, Template

PEOPLE = [
    {"handle": "thandi", "name": "Thandi Nkosi", "phone": "+27821234567"},
    {"handle": "pieter", "name": "Pieter van Wyk", "phone": "+27831234567"},
]


@pytest.fixture
def seeded(console_ctx: Any) -> Any:
    config_io.save_objects(console_ctx, "people", [dict(p) for p in PEOPLE], "setup")
    return console_ctx


def _loaded(qtbot: Any, editor: Any) -> None:
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        editor.reload()


def _save(qtbot: Any, editor: Any, *, ok: bool = True) -> None:
    with qtbot.waitSignal(editor.saved if ok else editor.save_failed, timeout=5000):
        editor.save_button.click()


def test_template_preview_and_segment_count_update_as_you_type(qtbot: Any, supervisor: Any) -> None:
    editor = TemplatesEditor(supervisor)
    qtbot.addWidget(editor)
    with qtbot.waitSignal(editor.preview_updated, timeout=2000):
        editor.body.setPlainText("#{{ incident_id }} {{ summary }}")
    assert editor.preview.toPlainText() == "#1042 Pump station 7 offline"
    assert editor.sms_label.text().startswith("GSM-7 · 28 characters · 1 SMS segment")

    with qtbot.waitSignal(editor.preview_updated, timeout=2000):
        editor.body.setPlainText("{{ summary }} " + "x" * 150)
    assert "2 SMS segments" in editor.sms_label.text()

    with qtbot.waitSignal(editor.preview_updated, timeout=2000):
        editor.body.setPlainText("Sawubona {{ person_name }} — ✓")
    assert editor.sms_label.text().startswith("UCS-2")

    with qtbot.waitSignal(editor.preview_updated, timeout=2000):
        editor.body.setPlainText("{{ no_such_thing }}")
    assert "no_such_thing" in editor.problems.text()


def test_template_with_unknown_variable_is_refused_before_saving(qtbot: Any, supervisor: Any) -> None:
    editor = TemplatesEditor(supervisor)
    qtbot.addWidget(editor)
    editor.body.setPlainText("Hello {{ nobody }}")
    _save(qtbot, editor, ok=False)
    assert "nobody" in editor.field_error("body")
    with supervisor.ctx.sessions() as s:
        assert s.scalars(select(Template)).first() is None


def test_template_new_version_is_saved_beside_the_old_one(qtbot: Any, supervisor: Any) -> None:
    editor = TemplatesEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.body.setPlainText("Page {{ incident_id }}")
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        _save(qtbot, editor)
    editor.start_new_version()
    assert editor.version.text() == "2"
    editor.body.setPlainText("Page v2 {{ incident_id }}")
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        _save(qtbot, editor)
    with supervisor.ctx.sessions() as s:
        rows = s.scalars(select(Template).order_by(Template.version)).all()
    assert [(t.version, t.body, t.created_by) for t in rows] == [
        (1, "Page {{ incident_id }}", "supervisor1"),
        (2, "Page v2 {{ incident_id }}", "supervisor1"),
    ]


def test_team_members_and_manager_are_saved(qtbot: Any, supervisor: Any, seeded: Any) -> None:
    editor = TeamsEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.handle.setText("fire")
    editor.name.setText("Fire crew")
    editor.members.check("pieter")
    editor.members.check("thandi")
    editor.manager.setCurrentText("thandi")
    _save(qtbot, editor)
    with seeded.sessions() as s:
        team = config_io.export_objects(s, "teams")[0]
    assert team["manager"] == "thandi" and sorted(team["members"]) == ["pieter", "thandi"]


def test_schedule_shows_who_is_on_call_now_and_next(qtbot: Any, supervisor: Any, seeded: Any) -> None:
    config_io.save_objects(
        seeded,
        "schedules",
        [
            {
                "handle": "fire-primary",
                "name": "Fire primary",
                "timezone": "Africa/Johannesburg",
                "rotations": [
                    {
                        "start_date": "2026-03-01",
                        "handoff_time": "08:00",
                        "shift": "24h",
                        "members": ["thandi", "pieter"],
                    }
                ],
            }
        ],
        "setup",
    )
    editor = SchedulesEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    with qtbot.waitSignal(editor.outlook_loaded, timeout=5000):
        editor.select_handle("fire-primary")
    # Clock: Monday 2026-03-02 10:00 in Johannesburg; the rotation started Sunday 08:00 with Thandi.
    assert editor.now_label.text().startswith("On call now: Pieter van Wyk until Tue 03 Mar 08:00")
    assert editor.next_label.text().startswith("Next: Thandi Nkosi from Tue 03 Mar 08:00")
    assert len(editor.week.shifts) >= 7


def test_schedule_override_round_trips(qtbot: Any, supervisor: Any, seeded: Any) -> None:
    editor = SchedulesEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.handle.setText("standby")
    editor.name.setText("Standby")
    editor.timezone.setText("Africa/Johannesburg")
    editor.rotations.add.click()
    editor.rot_start.setText("2026-03-01")
    editor.rot_members.check("thandi")
    editor.overrides.add.click()
    editor.ov_person.setCurrentText("pieter")
    with qtbot.waitSignal(editor.outlook_loaded, timeout=5000):
        _save(qtbot, editor)
    with seeded.sessions() as s:
        saved = config_io.export_objects(s, "schedules")[0]
    assert saved["rotations"][0]["members"] == ["thandi"]
    assert saved["overrides"][0]["person"] == "pieter"
    assert saved["overrides"][0]["start"].startswith("2026-03-02T10:00:00+02:00")
    assert editor.now_label.text().startswith("On call now: Pieter van Wyk")


def test_sla_and_calendar_save_and_show_engine_errors(qtbot: Any, supervisor: Any) -> None:
    cal = CalendarsEditor(supervisor)
    qtbot.addWidget(cal)
    _loaded(qtbot, cal)
    cal.name.setText("Office")
    cal.hours["sat"].setText("17:00-08:00")
    _save(qtbot, cal, ok=False)
    assert "ends before it starts" in cal.field_error("hours.sat")
    cal.hours["sat"].setText("08:00-12:00")
    _save(qtbot, cal)

    sla = SlaEditor(supervisor)
    qtbot.addWidget(sla)
    _loaded(qtbot, sla)
    sla.site.setText("depot")
    sla.response.setText("4h")
    sla.resolution.setText("2d")
    sla.calendar.setCurrentText("Office")
    _save(qtbot, sla)
    with supervisor.ctx.sessions() as s:
        saved = config_io.export_objects(s, "sla")[0]
    assert (saved["site"], saved["response"], saved["resolution"], saved["calendar"]) == (
        "depot",
        "4h",
        "2d",
        "Office",
    )


def test_editors_widget_exports_and_imports_yaml(
    qtbot: Any, supervisor: Any, seeded: Any, tmp_path: Path
) -> None:
    widget = EditorsWidget(supervisor)
    qtbot.addWidget(widget)
    target = tmp_path / "config.yaml"
    with qtbot.waitSignal(widget.exported, timeout=5000):
        widget.export_file(target)
    text = target.read_text()
    assert "thandi" in text and "people:" in text
    target.write_text(text.replace("Thandi Nkosi", "Thandi N. Nkosi"))
    with qtbot.waitSignal(widget.imported, timeout=5000):
        widget.import_file(target)
    with seeded.sessions() as s:
        names = [p["name"] for p in config_io.export_objects(s, "people")]
        kinds = s.scalars(select(Event.kind).where(Event.actor == "supervisor1")).all()
    assert "Thandi N. Nkosi" in names and kinds


def test_operator_cannot_import(qtbot: Any, operator: Any, seeded: Any, tmp_path: Path) -> None:
    widget = EditorsWidget(operator)
    qtbot.addWidget(widget)
    assert not widget.import_button.isEnabled()
    path = tmp_path / "c.yaml"
    path.write_text("people: []\n")
    with qtbot.waitSignal(widget.failed, timeout=5000) as blocker:
        widget.import_file(path)
    assert "supervisor" in blocker.args[0]


def test_editor_list_models_pass_qt_model_tester(
    qtbot: Any, qtmodeltester: Any, supervisor: Any, seeded: Any
) -> None:
    widget = EditorsWidget(supervisor)
    qtbot.addWidget(widget)
    for index in range(widget.tabs.count()):
        editor = widget.tabs.widget(index)
        with qtbot.waitSignal(editor.loaded, timeout=5000):
            editor.reload()
        qtmodeltester.check(editor.model)


def test_a_team_is_given_its_on_call_schedule_in_the_editor(qtbot: Any, supervisor: Any, seeded: Any) -> None:
    config_io.save_objects(
        seeded,
        "schedules",
        [
            {
                "handle": "fire-rota",
                "name": "Fire rota",
                "rotations": [
                    {
                        "start_date": "2026-03-01",
                        "handoff_time": "08:00",
                        "shift": "12h",
                        "members": ["thandi"],
                    }
                ],
            }
        ],
        "setup",
    )
    editor = TeamsEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    assert [editor.schedule.itemText(i) for i in range(editor.schedule.count())] == ["", "fire-rota"]
    editor.handle.setText("fire")
    editor.name.setText("Fire crew")
    editor.members.check("pieter")
    editor.schedule.setCurrentText("fire-rota")
    _save(qtbot, editor)
    with seeded.sessions() as s:
        assert config_io.export_objects(s, "teams")[0]["schedule"] == "fire-rota"

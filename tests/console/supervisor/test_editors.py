"""Editors: each edit goes through engine.config_io (validated, saved, audited); operators cannot save."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from console.editors.people import PeopleEditor
from console.editors.policies import PoliciesEditor
from engine import config_io
from engine.models import Event, Person

PEOPLE = [
    {"handle": "thandi", "name": "Thandi Nkosi", "phone": "+27821234567"},
    {"handle": "pieter", "name": "Pieter van Wyk", "phone": "+27831234567"},
]
POLICY = {
    "name": "Fire",
    "levels": [
        {"delay": "0s", "targets": [{"type": "person", "identifier": "thandi"}]},
        {"delay": "10m", "repeat_count": 1, "targets": [{"type": "person", "identifier": "pieter"}]},
    ],
}


@pytest.fixture
def seeded(console_ctx: Any) -> Any:
    config_io.save_objects(console_ctx, "people", [dict(p) for p in PEOPLE], "setup")
    config_io.save_objects(console_ctx, "policies", [dict(POLICY)], "setup")
    return console_ctx


def _loaded(qtbot: Any, editor: Any) -> None:
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        editor.reload()


def _save(qtbot: Any, editor: Any, *, ok: bool = True) -> None:
    signal = editor.saved if ok else editor.save_failed
    with qtbot.waitSignal(signal, timeout=5000):
        editor.save_button.click()


def test_editing_a_policy_level_round_trips_through_the_engine(
    qtbot: Any, supervisor: Any, seeded: Any
) -> None:
    editor = PoliciesEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    assert editor.select_handle("Fire")
    assert editor.level_list.count() == 2
    editor.select_level(1)
    form = editor.level_form
    assert form.delay.text() == "10m"
    form.delay.setText("15m")
    form.repeats.setValue(3)
    form.require_ack.setChecked(False)
    form.add_target.click()
    row = form.rows[-1]
    row.type.setCurrentIndex(row.type.findData("email"))
    row.identifier.setEditText("duty@example.org")
    editor.business_only.setChecked(True)
    editor.severity["critical"].setChecked(True)
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        _save(qtbot, editor)

    with seeded.sessions() as s:
        saved = next(p for p in config_io.export_objects(s, "policies") if p["name"] == "Fire")
        audit = s.scalars(select(Event).where(Event.actor == supervisor.actor)).all()
    level = saved["levels"][1]
    assert level["delay"] == "15m" and level["repeat_count"] == 3 and level["require_ack"] is False
    assert level["targets"] == [
        {"type": "person", "identifier": "pieter", "name": ""},
        {"type": "email", "identifier": "duty@example.org", "name": ""},
    ]
    assert saved["business_hours_only"] is True and saved["severity_filter"] == ["critical"]
    assert saved["version"] == 2
    assert audit, "the save is audited under the supervisor's name"
    # The editor shows what the engine stored.
    assert editor.level_list.item(1).text().startswith("Level 2 — after 15m, 2 targets")


def test_invalid_level_delay_shows_the_engines_message_at_the_level(
    qtbot: Any, supervisor: Any, seeded: Any
) -> None:
    editor = PoliciesEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.select_handle("Fire")
    editor.select_level(1)
    editor.level_form.delay.setText("soon")
    editor.select_level(0)
    _save(qtbot, editor, ok=False)
    assert editor.level_list.currentRow() == 1
    assert "soon" in editor.level_form.errors["delay"].text()
    assert not editor.level_form.errors["delay"].isHidden()
    with seeded.sessions() as s:
        saved = next(p for p in config_io.export_objects(s, "policies") if p["name"] == "Fire")
    assert saved["levels"][1]["delay"] == "10m" and saved["version"] == 1


def test_invalid_phone_shows_the_engines_message_and_saves_nothing(
    qtbot: Any, supervisor: Any, seeded: Any
) -> None:
    editor = PeopleEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.new_button.click()
    editor.handle.setText("sipho")
    editor.name.setText("Sipho Dlamini")
    editor.phone.setText("12345")
    _save(qtbot, editor, ok=False)
    message = editor.field_error("phone")
    assert message and "12345" in message
    assert editor.field_error("name") == ""
    with seeded.sessions() as s:
        assert s.scalars(select(Person).where(Person.handle == "sipho")).first() is None


def test_valid_phone_is_saved_in_e164(qtbot: Any, supervisor: Any, seeded: Any) -> None:
    editor = PeopleEditor(supervisor)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.new_button.click()
    editor.handle.setText("sipho")
    editor.name.setText("Sipho Dlamini")
    editor.phone.setText("082 555 1234")
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        _save(qtbot, editor)
    assert editor.phone.text() == "+27825551234"
    assert editor.handle.isReadOnly()


def test_operator_sees_read_only_editor_and_cannot_save(qtbot: Any, operator: Any, seeded: Any) -> None:
    editor = PoliciesEditor(operator)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    editor.select_handle("Fire")
    assert not editor.save_button.isEnabled()
    assert editor.name.isReadOnly() and not editor.level_form.repeats.isEnabled()
    assert not editor.level_form.add_target.isEnabled()
    editor.description.setText("changed anyway")
    with qtbot.waitSignal(editor.save_failed, timeout=5000) as blocker:
        editor.save()  # the button is disabled; calling save directly is still refused
    assert "operator" in blocker.args[0] and "supervisor" in blocker.args[0]
    with seeded.sessions() as s:
        saved = next(p for p in config_io.export_objects(s, "policies") if p["name"] == "Fire")
    assert saved["description"] == "" and saved["version"] == 1

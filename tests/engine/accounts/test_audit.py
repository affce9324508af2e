"""The audit trail on SQLite and PostgreSQL: who changed what, field by field, for every kind of change, and the
search and CSV export the audit view and `watchkeeper audit` use."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from engine import audit, config_io, switches
from engine.clock import FakeClock
from engine.db import read_session, write_session
from engine.permissions import PermissionDenied
from engine.service import keys

from .conftest import Centre

POLICY = {
    "name": "Fire and rescue",
    "description": "Structure fires",
    "levels": [{"delay": "0s", "targets": [{"type": "person", "identifier": "thandi"}]}],
}


def test_a_configuration_save_records_each_changed_field_before_and_after(centre: Centre) -> None:
    supervisor = centre.signed_in("supervisor1")
    config_io.save_objects(centre.ctx, "policies", [POLICY], supervisor)
    edited = {
        **POLICY,
        "description": "Structure and vehicle fires",
        "levels": [
            {"delay": "5m", "targets": [{"type": "person", "identifier": "thandi"}]},
            {"delay": "10m", "targets": [{"type": "person", "identifier": "sipho"}]},
        ],
    }
    config_io.save_objects(centre.ctx, "policies", [edited], supervisor)
    with read_session(centre.ctx.sessions) as s:
        created, updated = audit.entries(s, object_name="Fire and rescue")
    assert (created.action, created.actor, created.actor_role, created.object_kind) == (
        "config_created",
        "supervisor1",
        "supervisor",
        "policy",
    )
    assert {"field": "description", "before": None, "after": "Structure fires"} in created.changes
    assert updated.action == "config_updated" and updated.actor == "supervisor1"
    changes = {c["field"]: (c["before"], c["after"]) for c in updated.changes}
    assert changes["description"] == ("Structure fires", "Structure and vehicle fires")
    assert changes["levels[0].delay"] == ("0s", "5m")
    assert changes["levels[1].targets[0].identifier"] == (None, "sipho")
    assert changes["version"] == (1, 2)
    assert "name" not in changes  # unchanged fields are not listed
    # Saving the same thing again changes nothing and records nothing.
    config_io.save_objects(centre.ctx, "policies", [edited], supervisor)
    with read_session(centre.ctx.sessions) as s:
        assert len(audit.entries(s, object_name="Fire and rescue")) == 2


def test_a_delete_records_what_was_deleted(centre: Centre) -> None:
    supervisor = centre.signed_in("supervisor2")
    config_io.delete_object(centre.ctx, "people", "sipho", supervisor)
    with read_session(centre.ctx.sessions) as s:
        (entry,) = audit.entries(s, "config_deleted")
    assert (entry.actor, entry.object_kind, entry.object_name) == ("supervisor2", "person", "sipho")
    assert {"field": "name", "before": "Sipho Dlamini", "after": None} in entry.changes


def test_an_operator_changes_no_configuration(centre: Centre) -> None:
    operator = centre.signed_in("operator1")
    with pytest.raises(PermissionDenied, match="only a supervisor or higher may save"):
        config_io.save_objects(centre.ctx, "policies", [POLICY], operator)
    with pytest.raises(PermissionDenied):
        config_io.delete_object(centre.ctx, "people", "sipho", operator)
    with pytest.raises(PermissionDenied):
        config_io.import_text(centre.ctx, "policies: []\n", "x.yaml", operator)
    with read_session(centre.ctx.sessions) as s:
        assert audit.entries(s, "config_created") == [] and audit.entries(s, "config_deleted") == []


def test_an_import_records_what_it_changed(centre: Centre) -> None:
    supervisor = centre.signed_in("supervisor1")
    document = """
people:
  - {handle: thandi, name: Thandi Nkosi-Mokoena, phone: "+27821234567"}
  - {handle: sipho, name: Sipho Dlamini, phone: "+27831234567"}
  - {handle: ayanda, name: Ayanda Mthembu, phone: "+27841234567"}
default_policy: Fire and rescue
policies:
  - name: Fire and rescue
    levels: [{delay: 0s, targets: [{type: person, identifier: ayanda}]}]
"""
    config_io.import_text(centre.ctx, document, "night-shift.yaml", supervisor)
    with read_session(centre.ctx.sessions) as s:
        (imported,) = audit.entries(s, "config_imported")
        thandi = audit.entries(s, "config_updated", "thandi")
        ayanda = audit.entries(s, "config_created", "ayanda")
        default = audit.entries(s, "config_updated", "default_policy")
    assert imported.actor == "supervisor1" and imported.object_name == "night-shift.yaml"
    assert "1 created" not in imported.message and "2 created" in imported.message  # ayanda and the policy
    assert "1 changed" in imported.message and "1 unchanged" in imported.message
    assert set(imported.data["changed_objects"]) == {
        "person:thandi",
        "person:ayanda",
        "policy:Fire and rescue",
        "setting:default_policy",
    }
    assert thandi[0].changes == [{"field": "name", "before": "Thandi Nkosi", "after": "Thandi Nkosi-Mokoena"}]
    assert thandi[0].data["import"] == ["night-shift.yaml"] and ayanda[0].actor == "supervisor1"
    assert default[0].changes == [{"field": "policy", "before": None, "after": "Fire and rescue"}]


def test_switches_tokens_and_routing_keys_are_audited(centre: Centre) -> None:
    supervisor, admin = centre.signed_in("supervisor1"), centre.signed_in("admin1")
    with write_session(centre.ctx.sessions) as s:
        switches.set_switch(s, switches.ESCALATIONS_ENABLED, False, now=centre.ctx.clock.now(), by=supervisor)
    config_io.save_objects(centre.ctx, "policies", [POLICY], supervisor)
    created = keys.create_api_token(centre.ctx, label="wallboard", role="operator", by=admin)
    keys.revoke_api_token(centre.ctx, created.id, by=admin)
    key = keys.create_routing_key(centre.ctx, policy="Fire and rescue", label="alertmanager", by=admin)
    keys.revoke_routing_key(centre.ctx, key.id, by=admin)
    with read_session(centre.ctx.sessions) as s:
        (switch,) = audit.entries(s, "switch_changed")
        token_entries = [(e.action, e.actor, e.object_name) for e in audit.entries(s) if "token" in e.action]
        key_entries = [(e.action, e.actor) for e in audit.entries(s) if "routing_key" in e.action]
        everything = " ".join(repr(e) for e in audit.entries(s))
    assert (switch.actor, switch.object_name) == ("supervisor1", "escalations_enabled")
    assert switch.changes == [{"field": "enabled", "before": True, "after": False}]
    assert token_entries == [
        ("token_created", "admin1", "wallboard"),
        ("token_revoked", "admin1", "wallboard"),
    ]
    assert key_entries == [("routing_key_created", "admin1"), ("routing_key_revoked", "admin1")]
    assert created.secret not in everything and key.secret not in everything  # never the secret itself
    operator = centre.signed_in("operator2")
    with pytest.raises(PermissionDenied), write_session(centre.ctx.sessions) as s:
        switches.set_switch(s, switches.ESCALATIONS_ENABLED, True, now=centre.ctx.clock.now(), by=operator)
    with pytest.raises(PermissionDenied):
        keys.create_api_token(centre.ctx, label="x", role="admin", by=supervisor)


def test_the_search_filters_by_person_kind_object_and_time_to_the_second(
    centre: Centre, clock: FakeClock
) -> None:
    start = clock.now()
    centre.signed_in("operator1")
    clock.advance(timedelta(seconds=1))
    config_io.save_objects(centre.ctx, "policies", [POLICY], centre.signed_in("supervisor1"))
    clock.advance(timedelta(seconds=1))
    accounts_admin = centre.signed_in("admin1")
    config_io.delete_object(centre.ctx, "people", "sipho", accounts_admin)
    with read_session(centre.ctx.sessions) as s:

        def found(**filters: object) -> list[tuple[str, str]]:
            return [(r.actor, r.action) for r in audit.search(s, **filters).rows]  # type: ignore[arg-type]

        assert found(person="supervisor1") == [("supervisor1", "config_created"), ("supervisor1", "sign_in")]
        assert found(kind="config_created,config_deleted") == [
            ("admin1", "config_deleted"),
            ("supervisor1", "config_created"),
        ]
        assert found(obj="policy:fire") == [("supervisor1", "config_created")]
        assert found(obj="sipho") == [("admin1", "config_deleted")]
        # Exactly the second the policy was saved: [start+1 s, start+2 s).
        assert found(since=start + timedelta(seconds=1), until=start + timedelta(seconds=2)) == [
            ("supervisor1", "config_created"),
            ("supervisor1", "sign_in"),
        ]
        page = audit.search(s, limit=2)
        assert len(page.rows) == 2 and page.has_more
        assert audit.search(s, limit=2, offset=2).rows[0].id < page.rows[-1].id
        assert "admin1" in audit.people(s) and "supervisor1" in audit.people(s)


def test_the_csv_export_has_every_matching_entry_with_its_changes(centre: Centre) -> None:
    supervisor = centre.signed_in("supervisor1")
    config_io.save_objects(centre.ctx, "policies", [POLICY], supervisor)
    config_io.save_objects(centre.ctx, "policies", [{**POLICY, "description": "Fires"}], supervisor)
    out = io.StringIO()
    with read_session(centre.ctx.sessions) as s:
        written = audit.write_csv(s, out, person="supervisor1")
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert written == len(rows) - 1 == 3  # sign-in, created, updated
    newest = rows[1]
    assert newest[1:7] == ["supervisor1", "supervisor", "test", "config_updated", "policy", "Fire and rescue"]
    assert len(newest[0]) == len("2026-03-02 08:00:00")
    assert "description: Structure fires → Fires" in newest[8]

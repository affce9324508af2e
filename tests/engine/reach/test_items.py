"""Workflow items by hand: add, re-assign, complete and list them (engine, command line, HTTP), audited and on
the incident's timeline; and the shift's story of one item past 1x and 2x its time limit. On both databases."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import api, audit, inbox, items
from engine.db import read_session, write_session
from engine.errors import InvalidTransition, NotFound, ValidationError
from engine.models import Event, OutboxMessage, Policy, PolicyLevel, PolicyTarget
from engine.overdue import overdue_pass
from engine.service.app import ServiceApp
from tests.service.conftest import WsgiClient

from .conftest import Centre


def _incident(c: Centre) -> int:
    with write_session(c.ctx.sessions) as s:
        s.add(
            Policy(
                name="fire",
                levels=[PolicyLevel(level=1, targets=[PolicyTarget(type="person", identifier="sipho")])],
            )
        )
    return api.trigger(c.ctx, policy="fire", summary="Smoke, Block C", key="smoke-c").incident_id


def test_a_60_second_item_reminds_its_assignee_at_1x_and_the_supervisors_at_2x(centre: Centre) -> None:
    c = centre
    operator, supervisor = c.accounts["operator"], c.accounts["supervisor"]
    item = items.create_item(
        c.ctx, operator, title="Call the reporter back", time_limit_seconds=60, assignee="sipho"
    )
    c.ctx.clock.advance(timedelta(seconds=59))  # type: ignore[attr-defined]
    assert overdue_pass(c.ctx)["reminded"] == 0
    c.ctx.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    assert overdue_pass(c.ctx)["reminded"] == 1
    with read_session(c.ctx.sessions) as s:
        sipho = inbox.notifications(s, inbox.Recipient(c.people["sipho"], None))
        assert [(n.kind, n.title, n.link) for n in sipho] == [
            ("workflow_overdue", "Overdue: Call the reporter back", {"kind": "item", "id": item.id}),
            ("workflow_assigned", "Assigned to you: Call the reporter back", {"kind": "item", "id": item.id}),
        ]
        assert inbox.unread_count(s, inbox.Recipient.of(supervisor)) == 0
    c.ctx.clock.advance(timedelta(seconds=60))  # type: ignore[attr-defined]
    assert overdue_pass(c.ctx)["escalated"] == 1
    told = inbox.inbox(c.ctx, supervisor)["notifications"]
    assert [(n["kind"], n["to"], n["link"]) for n in told] == [
        ("workflow_escalated", "role:supervisor", {"kind": "item", "id": item.id})
    ]
    assert "assigned to Sipho Dlamini" in told[0]["body"]
    # The overdue pass also sends each of them a message: the reminder to Sipho, the escalation to Naledi
    # (the supervisor's person), on their first channel.
    with read_session(c.ctx.sessions) as s:
        sent = {(m.kind, m.person_id, m.channel) for m in s.scalars(select(OutboxMessage))}
    assert sent == {
        ("reminder", c.people["sipho"], "sms"),
        ("overdue_escalation", c.people["naledi"], "sms"),
    }
    # Done: nothing more happens, and it leaves the open list.
    items.complete_item(c.ctx, operator, item.id)
    with read_session(c.ctx.sessions) as s:
        assert items.list_items(s) == []
        assert [i.status for i in items.list_items(s, status="done")] == ["done"]


def test_adding_assigning_and_completing_are_audited_and_on_the_incidents_timeline(centre: Centre) -> None:
    c = centre
    incident_id = _incident(c)
    operator, supervisor = c.accounts["operator"], c.accounts["supervisor"]
    item = items.create_item(
        c.ctx,
        operator,
        title="Verify isolation",
        time_limit_seconds=900,
        incident=incident_id,
        assignee="thandi",
    )
    assert (item.assignee, item.incident_id, item.due_at - item.started_at) == (
        "thandi",
        incident_id,
        timedelta(minutes=15),
    )
    items.assign_item(c.ctx, supervisor, item.id, "sipho")
    items.complete_item(c.ctx, operator, item.id)
    with pytest.raises(InvalidTransition, match="is done, not open"):
        items.complete_item(c.ctx, operator, item.id)
    with pytest.raises(InvalidTransition):
        items.assign_item(c.ctx, operator, item.id, "thandi")
    with read_session(c.ctx.sessions) as s:
        trail = [(e.actor, e.action) for e in audit.entries(s) if e.object_kind == "workflow_item"]
        timeline = [
            (e.kind, e.actor)
            for e in s.scalars(select(Event).where(Event.incident_id == incident_id).order_by(Event.id))
            if e.kind.startswith("workflow")
        ]
        # Thandi added it for herself (no notice); Sipho was told when it was given to him.
        sipho = inbox.notifications(s, inbox.Recipient(c.people["sipho"], None))
        thandi = inbox.notifications(s, inbox.Recipient(c.people["thandi"], None))
    assert sorted(trail) == [
        ("operator", "item_completed"),
        ("operator", "item_created"),
        ("supervisor", "item_assigned"),
    ]
    assert timeline == [
        ("workflow_added", "operator"),
        ("workflow_assigned", "supervisor"),
        ("workflow_done", "operator"),
    ]
    assert [n.kind for n in sipho] == ["workflow_assigned"] and thandi == []


def test_bad_input_is_refused_and_nothing_is_written(centre: Centre) -> None:
    c = centre
    who = c.accounts["operator"]
    with pytest.raises(ValidationError, match="title"):
        items.create_item(c.ctx, who, title="  ", time_limit_seconds=60)
    with pytest.raises(ValidationError, match="time limit"):
        items.create_item(c.ctx, who, title="x", time_limit_seconds=0)
    with pytest.raises(ValidationError, match="escalate_to_role"):
        items.create_item(c.ctx, who, title="x", time_limit_seconds=60, escalate_to_role="chief")
    with pytest.raises(NotFound, match="nobody"):
        items.create_item(c.ctx, who, title="x", time_limit_seconds=60, assignee="nobody")
    with pytest.raises(NotFound):
        items.create_item(c.ctx, who, title="x", time_limit_seconds=60, incident=999)
    with read_session(c.ctx.sessions) as s:
        assert items.list_items(s, status=None) == []


def test_the_command_line_adds_lists_assigns_and_completes(centre: Centre) -> None:
    c = centre
    code, out, err = c.cli(
        "operator", "items", "add", "Call the reporter back", "--time-limit", "15m", "--assignee", "me"
    )
    assert code == 0, err
    assert re.fullmatch(r"workflow item 1 added, due \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", out), (
        out
    )  # system clock
    code, out, _ = c.cli("operator", "items", "list", "--mine")
    assert "Call the reporter back" in out and "thandi" in out
    code, out, _ = c.cli("supervisor", "items", "assign", "1", "sipho")
    assert (code, out) == (0, "workflow item 1 assigned to Sipho Dlamini\n")
    code, out, _ = c.cli("operator", "items", "list", "--mine")
    assert out == "no workflow items\n"
    code, out, _ = c.cli("operator", "items", "done", "1", "--json")
    assert code == 0 and json.loads(out)["status"] == "done"
    code, _, err = c.cli("operator", "items", "done", "1")
    assert code == 1 and "workflow item 1 is done, not open" in err
    code, _, err = c.cli("operator", "items", "add", "x", "--time-limit", "soon")
    assert code == 2 and "'soon' is not a duration" in err


def test_http_adds_lists_assigns_and_completes(centre: Centre) -> None:
    c = centre
    incident_id = _incident(c)
    client = WsgiClient(ServiceApp(c.ctx))
    auth = {"Authorization": f"Bearer {c.tokens['operator']}"}
    reply = client.post(
        "/api/items",
        json_body={
            "title": "Verify isolation",
            "time_limit_seconds": 600,
            "incident": incident_id,
            "assignee": "thandi",
        },
        headers=auth,
    )
    assert reply.status == 201, reply.text
    item = reply.json()
    assert (item["assignee"], item["incident_id"], item["status"]) == ("thandi", incident_id, "open")
    assert (
        client.post("/api/items", json_body={"title": "x", "time_limit_seconds": "10"}, headers=auth).status
        == 400
    )
    assert (
        client.post(
            "/api/items", json_body={"title": "x", "time_limit_seconds": 60, "colour": "red"}, headers=auth
        ).status
        == 400
    )
    listed = client.get("/api/items?assignee=thandi", headers=auth).json()
    assert [i["id"] for i in listed["items"]] == [item["id"]]
    reply = client.post(f"/api/items/{item['id']}/assign", json_body={"assignee": "sipho"}, headers=auth)
    assert reply.json()["assignee"] == "sipho"
    assert client.post(f"/api/items/{item['id']}/complete", headers=auth).json()["status"] == "done"
    assert client.post(f"/api/items/{item['id']}/complete", headers=auth).status == 409
    assert client.get("/api/items?status=done", headers=auth).json()["count"] == 1

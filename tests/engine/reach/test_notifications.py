"""Notifications reach people: each signed-in person sees their own and their role's, newest first, with a
link to what they are about; marks them read; old ones are removed by housekeeping. On both databases."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import inbox
from engine.db import read_session, write_session
from engine.errors import NotFound
from engine.models import Notification, WorkflowItem
from engine.notifications import notify
from engine.runner import housekeeping_pass
from engine.service.app import ServiceApp
from tests.service.conftest import WsgiClient

from .conftest import Centre


def _notify(c: Centre, **fields: object) -> None:
    with write_session(c.ctx.sessions) as s:
        item = fields.pop("item", None)
        notify(s, c.ctx.clock.now(), item=item, **fields)  # type: ignore[arg-type]
    c.ctx.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]


def _an_item(c: Centre) -> WorkflowItem:
    with write_session(c.ctx.sessions) as s:
        item = WorkflowItem(
            title="Call the reporter back", time_limit_seconds=600, started_at=c.ctx.clock.now()
        )
        s.add(item)
        s.flush()
        s.expunge(item)
        return item


def _four(c: Centre) -> WorkflowItem:
    item = _an_item(c)
    _notify(c, person_id=c.people["thandi"], kind="sla_response_warning", title="SLA warning: #1")
    _notify(c, person_id=c.people["sipho"], kind="workflow_overdue", title="Overdue: Sipho's", item=item)
    _notify(c, role="supervisor", kind="workflow_escalated", title="Escalated: call back", item=item)
    _notify(c, role="operator", kind="workflow_overdue", title="Overdue: call back", item=item)
    return item


def test_a_person_sees_their_own_and_their_roles_notifications_newest_first_with_links(
    centre: Centre,
) -> None:
    c = centre
    item = _four(c)
    thandi = c.accounts["operator"]  # linked to Thandi, role operator
    with read_session(c.ctx.sessions) as s:
        mine = inbox.notifications(s, inbox.Recipient.of(thandi))
        assert [n.title for n in mine] == ["Overdue: call back", "SLA warning: #1"]
        assert [n.to for n in mine] == ["role:operator", "you"]
        assert mine[0].link == {"kind": "item", "id": item.id}
        assert inbox.unread_count(s, inbox.Recipient.of(thandi)) == 2
        boss = inbox.notifications(s, inbox.Recipient.of(c.accounts["supervisor"]))
        assert [n.title for n in boss] == ["Escalated: call back"]


def test_marking_read_one_and_all_and_unread_first(centre: Centre) -> None:
    c = centre
    _four(c)
    thandi = c.accounts["operator"]
    newest = inbox.inbox(c.ctx, thandi)["notifications"][0]
    assert inbox.mark_read(c.ctx, thandi, newest["id"]).read_at == c.ctx.clock.now()
    data = inbox.inbox(c.ctx, thandi, unread_first=True)
    assert data["unread"] == 1
    assert [(n["title"], n["unread"]) for n in data["notifications"]] == [
        ("SLA warning: #1", True),
        ("Overdue: call back", False),
    ]
    assert [n["title"] for n in inbox.inbox(c.ctx, thandi, unread_only=True)["notifications"]] == [
        "SLA warning: #1"
    ]
    # Someone else's notification is not Thandi's to mark.
    with read_session(c.ctx.sessions) as s:
        sipho_s = s.scalar(select(Notification.id).where(Notification.person_id == c.people["sipho"]))
    with pytest.raises(NotFound):
        inbox.mark_read(c.ctx, thandi, int(sipho_s or 0))
    assert inbox.mark_all_read(c.ctx, thandi) == 1
    assert inbox.inbox(c.ctx, thandi)["unread"] == 0
    # Sipho's own and the supervisors' are still unread.
    with read_session(c.ctx.sessions) as s:
        assert s.scalar(select(Notification.read_at).where(Notification.id == sipho_s)) is None
    assert inbox.inbox(c.ctx, c.accounts["supervisor"])["unread"] == 1


def test_housekeeping_removes_notifications_older_than_retention(centre: Centre) -> None:
    c = centre
    c.ctx.settings.retention_days = 30
    _notify(c, person_id=c.people["thandi"], kind="sla_response_warning", title="old one")
    c.ctx.clock.advance(timedelta(days=30))  # type: ignore[attr-defined]
    _notify(c, person_id=c.people["thandi"], kind="sla_response_warning", title="recent one")
    result = housekeeping_pass(c.ctx)
    assert result["notifications_removed"] == 1
    titles = [n["title"] for n in inbox.inbox(c.ctx, c.accounts["operator"])["notifications"]]
    assert titles == ["recent one"]


def test_the_command_line_lists_and_marks_read(centre: Centre) -> None:
    c = centre
    _four(c)
    code, out, err = c.cli("operator", "notifications")
    assert code == 0, err
    assert out.splitlines()[0] == "2 unread"
    assert "Overdue: call back" in out and "SLA warning: #1" in out and "Sipho" not in out
    code, out, _ = c.cli("operator", "notifications", "--unread", "--json")
    first = json.loads(out)["notifications"][0]
    assert first["title"] == "Overdue: call back" and first["link"]["kind"] == "item"
    code, out, _ = c.cli("operator", "notifications", "read", str(first["id"]))
    assert (code, out) == (0, f"notification {first['id']} marked read\n")
    code, out, _ = c.cli("operator", "notifications", "read", "--all")
    assert (code, out) == (0, "1 notification(s) marked read\n")
    code, _, err = c.cli("operator", "notifications", "read")
    assert code == 1 and "name one notification (ID) or --all" in err


def test_over_http_a_token_sees_and_marks_its_roles_notifications(centre: Centre) -> None:
    c = centre
    _four(c)
    client = WsgiClient(ServiceApp(c.ctx))
    auth = {"Authorization": f"Bearer {c.tokens['supervisor']}"}
    reply = client.get("/api/notifications?unread=true", headers=auth)
    assert reply.status == 200, reply.text
    data = reply.json()
    assert data["unread"] == 1 and [n["title"] for n in data["notifications"]] == ["Escalated: call back"]
    one = data["notifications"][0]["id"]
    assert client.post(f"/api/notifications/{one}/read", headers=auth).json()["unread"] is False
    assert client.post("/api/notifications/read-all", headers=auth).json() == {"marked_read": 0}
    # The operators' notification is not the supervisors' token's to mark.
    theirs = inbox.inbox(c.ctx, c.accounts["operator"])["notifications"][0]["id"]
    assert client.post(f"/api/notifications/{theirs}/read", headers=auth).status == 404


def _fire_team(c: Centre, *members: str) -> int:
    from engine.models import Team, TeamMember

    with write_session(c.ctx.sessions) as s:
        team = Team(handle="fire", name="Fire rescue")
        team.members = [TeamMember(person_id=c.people[h], position=n) for n, h in enumerate(members)]
        s.add(team)
        s.flush()
        return team.id


def test_a_teams_notification_reaches_each_member_and_one_colleague_reads_it_for_all(centre: Centre) -> None:
    """Thandi and Sipho are in Fire rescue, Naledi is not. The team's notice is in both members' lists; when
    Thandi deals with it, it is read for Sipho too, and says that Thandi read it."""
    c = centre
    fire = _fire_team(c, "thandi", "sipho")
    _notify(c, team_id=fire, kind="sla_response_warning", title="SLA warning #7: response due in 12 min")
    _notify(c, person_id=c.people["sipho"], kind="workflow_overdue", title="Sipho's own")
    thandi = c.accounts["operator"]
    sipho = inbox.Recipient(c.people["sipho"], "operator")
    with read_session(c.ctx.sessions) as s:
        mine = inbox.notifications(s, inbox.Recipient.of(thandi))
        assert [(n.title, n.to, n.team) for n in mine] == [
            ("SLA warning #7: response due in 12 min", "team:fire", "Fire rescue")
        ]
        assert [n.title for n in inbox.notifications(s, sipho)] == [
            "Sipho's own",
            "SLA warning #7: response due in 12 min",
        ]
        assert inbox.notifications(s, inbox.Recipient.of(c.accounts["supervisor"])) == []
    done = inbox.mark_read(c.ctx, thandi, mine[0].id)
    assert (done.read_at, done.read_by) == (c.ctx.clock.now(), "Thandi Nkosi")
    with read_session(c.ctx.sessions) as s:
        theirs = inbox.notifications(s, sipho)
        assert [(n.title, n.unread, n.read_by) for n in theirs] == [
            ("Sipho's own", True, None),
            ("SLA warning #7: response due in 12 min", False, "Thandi Nkosi"),
        ]
        assert inbox.unread_count(s, sipho) == 1
    # Naledi is not in the team: it is not hers to mark.
    with pytest.raises(NotFound):
        inbox.mark_read(c.ctx, c.accounts["supervisor"], mine[0].id)


def test_joining_a_team_shows_its_notices_and_mark_all_read_covers_them(centre: Centre) -> None:
    from engine.models import TeamMember

    c = centre
    fire = _fire_team(c, "sipho")
    _notify(c, team_id=fire, kind="incident_assigned", title="Assigned to Fire rescue: #3")
    thandi = c.accounts["operator"]
    assert inbox.inbox(c.ctx, thandi)["unread"] == 0
    with write_session(c.ctx.sessions) as s:
        s.add(TeamMember(team_id=fire, person_id=c.people["thandi"], position=1))
    assert inbox.inbox(c.ctx, thandi)["unread"] == 1
    assert inbox.mark_all_read(c.ctx, thandi) == 1
    with read_session(c.ctx.sessions) as s:
        row = s.scalars(select(Notification).where(Notification.team_id == fire)).one()
        assert (row.read_by, row.read_at) == ("Thandi Nkosi", c.ctx.clock.now())


def test_assigning_an_incident_to_a_team_notifies_the_team(centre: Centre) -> None:
    from engine import api

    c = centre
    fire = _fire_team(c, "thandi")
    incident_id = api.trigger(c.ctx, policy=None, summary="Smoke at the depot", key="smoke-1").incident_id
    api.assign(c.ctx, incident_id, by="Naledi", team="fire", reason="their area")
    data = inbox.inbox(c.ctx, c.accounts["operator"])
    [notice] = data["notifications"]
    assert notice["to"] == "team:fire" and notice["link"] == {"kind": "incident", "id": incident_id}
    assert notice["title"] == f"Assigned to Fire rescue: #{incident_id} Smoke at the depot"
    assert notice["body"] == "By Naledi: their area"
    with read_session(c.ctx.sessions) as s:
        assert s.scalar(select(Notification.team_id)) == fire


def test_the_command_line_shows_whose_a_notice_is_and_who_read_it(centre: Centre) -> None:
    c = centre
    fire = _fire_team(c, "thandi", "sipho")
    _notify(c, team_id=fire, kind="sla_response_breach", title="SLA breached #9")
    code, out, err = c.cli("operator", "notifications")
    assert code == 0, err
    header, row = out.splitlines()[1:3]
    assert "READ BY" in header and "team:fire" in row and "SLA breached #9" in row
    notice_id = inbox.inbox(c.ctx, c.accounts["operator"])["notifications"][0]["id"]
    code, out, _ = c.cli("operator", "notifications", "read", str(notice_id))
    assert code == 0
    code, out, _ = c.cli("operator", "notifications", "--json")
    [notice] = json.loads(out)["notifications"]
    assert (notice["unread"], notice["read_by"], notice["team"]) == (False, "Thandi Nkosi", "Fire rescue")


def test_over_http_a_shared_notice_says_who_read_it(centre: Centre) -> None:
    c = centre
    _four(c)
    client = WsgiClient(ServiceApp(c.ctx))
    auth = {"Authorization": f"Bearer {c.tokens['supervisor']}"}
    one = client.get("/api/notifications", headers=auth).json()["notifications"][0]
    assert (one["read_by"], one["team"]) == (None, None)
    done = client.post(f"/api/notifications/{one['id']}/read", headers=auth).json()
    assert done["read_by"] == "api:supervisor-token"
    # Naledi, a supervisor, sees the role's notice as read, and by whom.
    [theirs] = inbox.inbox(c.ctx, c.accounts["supervisor"])["notifications"]
    assert (theirs["unread"], theirs["read_by"]) == (False, "api:supervisor-token")


def test_who_is_on_call_per_team_on_the_command_line_and_over_http(centre: Centre) -> None:
    from engine.models import Rotation, RotationMember, Schedule, Team

    c = centre
    with write_session(c.ctx.sessions) as s:
        rota = Schedule(handle="fire-rota", name="Fire rota", timezone="Africa/Johannesburg")
        rotation = Rotation(
            name="Day and night", start_date="2026-03-01", handoff_time="08:00", shift_hours=12
        )
        rotation.members = [
            RotationMember(person_id=c.people["thandi"], position=0),
            RotationMember(person_id=c.people["sipho"], position=1),
        ]
        rota.rotations = [rotation]
        s.add_all([rota, Team(handle="fire", name="Fire rescue", schedule=rota)])
    # 08:00 UTC is 10:00 in Johannesburg: Thandi's day shift until 20:00 (18:00 UTC), then Sipho.
    expected = {
        "schedule": "fire-rota",
        "name": "Fire rota",
        "teams": ["Fire rescue"],
        "now": ["Thandi Nkosi"],
        "until": "2026-03-02T18:00:00+00:00",
        "next": ["Sipho Dlamini"],
        "next_from": "2026-03-02T18:00:00+00:00",
    }
    # The command line runs on the wall clock: whoever's shift it is, the other one is next, from its end.
    code, out, err = c.cli("operator", "oncall", "--json")
    assert code == 0, err
    [entry] = json.loads(out)
    assert (entry["schedule"], entry["teams"]) == ("fire-rota", ["Fire rescue"])
    assert sorted(entry["now"] + entry["next"]) == ["Sipho Dlamini", "Thandi Nkosi"]
    assert entry["until"] == entry["next_from"] is not None
    code, out, _ = c.cli("operator", "oncall")
    header, row = out.splitlines()
    assert header.split() == ["TEAM", "SCHEDULE", "ON", "CALL", "UNTIL", "NEXT", "FROM"]
    assert row.startswith(f"Fire rescue  Fire rota  {entry['now'][0]}") and entry["next"][0] in row
    client = WsgiClient(ServiceApp(c.ctx))
    reply = client.get("/api/oncall", headers={"Authorization": f"Bearer {c.tokens['operator']}"})
    assert reply.status == 200 and reply.json() == [expected]
    assert client.get("/api/oncall").status == 401

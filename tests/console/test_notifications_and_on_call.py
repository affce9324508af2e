"""Notifications reach the signed-in person in the console (their own and their role's, unread first, Enter
opens the incident or hands the work item on, marked read on open, Mark all read), and the board says who is
on call now and next. On SQLite and PostgreSQL: both read the engine (engine.inbox, engine.oncall)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from console.mainwindow import MainWindow
from console.services import ConsoleServices, SignedIn
from engine.context import AppContext
from engine.db import write_session
from engine.models import (
    Incident,
    Notification,
    Person,
    Rotation,
    RotationMember,
    Schedule,
    ScheduleOverride,
    WorkflowItem,
)
from engine.notifications import notify
from tests.console.conftest import add_incident, change_incident


@pytest.fixture
def operator(ctx: AppContext) -> SignedIn:
    """Thandi, an operator whose account is linked to her person record."""
    with write_session(ctx.sessions) as s:
        thandi = Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567")
        sipho = Person(handle="sipho", name="Sipho Dlamini", phone="+27831234567")
        s.add_all([thandi, sipho])
        s.flush()
        person_id = thandi.id
    return SignedIn(None, "thandi", "Thandi Nkosi", "operator", person_id=person_id)


def _person(ctx: AppContext, handle: str) -> int:
    with ctx.sessions() as s:
        return int(s.scalars(select(Person.id).where(Person.handle == handle)).one())


def _notify(ctx: AppContext, **fields: object) -> None:
    with write_session(ctx.sessions) as s:
        item_id = fields.pop("item_id", None)
        incident_id = fields.pop("incident_id", None)
        item = (
            s.get(WorkflowItem, item_id) if item_id else s.get(Incident, incident_id) if incident_id else None
        )
        notify(s, ctx.clock.now(), item=item, **fields)  # type: ignore[arg-type]
    ctx.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]


def _window(qtbot: QtBot, services: ConsoleServices) -> MainWindow:
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    return window


def _titles(window: MainWindow) -> list[str]:
    tree = window.notifications.list
    return [tree.topLevelItem(n).text(1) for n in range(tree.topLevelItemCount())]


def test_a_person_opens_their_notifications_from_the_keyboard_and_they_are_marked_read(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    fire = add_incident(ctx.sessions, now, summary="Structure fire", severity="high")
    with write_session(ctx.sessions) as s:
        item = WorkflowItem(title="Call the reporter back", time_limit_seconds=600, started_at=now)
        s.add(item)
        s.flush()
        item_id = item.id
    thandi, sipho = _person(ctx, "thandi"), _person(ctx, "sipho")
    _notify(ctx, person_id=thandi, kind="note", title="Handover read", body="old news")
    _notify(
        ctx, person_id=thandi, kind="sla_response_warning", incident_id=fire, title=f"SLA warning: #{fire}"
    )
    _notify(ctx, role="operator", kind="workflow_overdue", item_id=item_id, title="Overdue: call back")
    _notify(ctx, person_id=sipho, kind="workflow_overdue", title="Sipho's own")  # not Thandi's
    with write_session(ctx.sessions) as s:
        s.execute(
            Notification.__table__.update().where(Notification.title == "Handover read").values(read_at=now)
        )

    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications: 2 unread", timeout=5000)
    # Unread first, newest first; the read one last; someone else's not at all.
    assert _titles(window) == ["● Overdue: call back", f"● SLA warning: #{fire}", "Handover read"]

    qtbot.keyClick(window, Qt.Key.Key_F3)
    assert window.notifications.list.hasFocus()
    # A work item: the Work items tab opens with it selected.
    qtbot.keyClick(window.notifications.list, Qt.Key.Key_Return)
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Work items"
    items_tab = window.tabs.currentWidget().widget()  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: items_tab.current_id() == item_id, timeout=5000)
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications: 1 unread", timeout=5000)

    # The SLA warning leads to its incident: selected on the board, shown in the detail.
    window.focus_notifications()
    window.notifications.list.setCurrentItem(window.notifications.list.topLevelItem(0))
    assert window.notifications.current().title == f"SLA warning: #{fire}"  # type: ignore[union-attr]
    qtbot.keyClick(window.notifications.list, Qt.Key.Key_Return)
    assert window.board.current_id() == fire
    qtbot.waitUntil(lambda: window.detail.detail.get("id") == fire, timeout=3000)
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications", timeout=5000)
    with ctx.sessions() as s:
        unread = s.scalars(select(Notification.title).where(Notification.read_at.is_(None))).all()
    assert unread == ["Sipho's own"]
    window.focus_notifications()
    qtbot.keyClick(window.notifications.list, Qt.Key.Key_Escape)
    assert window.board.view.hasFocus()


def test_a_new_notification_arrives_with_the_boards_changes_and_mark_all_read_clears_them(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    fire = add_incident(ctx.sessions, now, summary="Structure fire", severity="high")
    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: window.notifications.status.text() == "No notifications", timeout=5000)
    # The engine writes the notification and the incident's event in one pass; the board's feed sees the event.
    _notify(
        ctx, person_id=_person(ctx, "thandi"), kind="sla_response_breach", incident_id=fire, title="Breached"
    )
    _notify(ctx, role="operator", kind="workflow_overdue", title="Overdue: call back")
    change_incident(ctx.sessions, ctx.clock.now(), fire, response_breached_at=ctx.clock.now())
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications: 2 unread", timeout=10_000)
    assert window.notifications_dock.windowTitle() == "Notifications (2)"
    with qtbot.waitSignal(window.notifications.marked, timeout=5000) as marked:
        qtbot.mouseClick(window.notifications.mark_all, Qt.MouseButton.LeftButton)
    assert marked.args == [2]
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications", timeout=5000)
    assert _titles(window) == ["Overdue: call back", "Breached"]  # still listed, no longer unread
    with ctx.sessions() as s:
        assert s.scalar(select(Notification.id).where(Notification.read_at.is_(None))) is None


def test_a_teams_notification_shows_in_each_members_list_and_says_who_read_it(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    """Thandi is in Fire rescue: the team's SLA warning is in her list, "For: Fire rescue (team)"; when her
    colleague Sipho marks it read, her list shows it read, by Sipho."""
    from engine import inbox
    from engine.models import Team, TeamMember
    from engine.permissions import Identity

    now = ctx.clock.now()
    fire = add_incident(ctx.sessions, now, summary="Structure fire", severity="high")
    thandi, sipho = _person(ctx, "thandi"), _person(ctx, "sipho")
    with write_session(ctx.sessions) as s:
        team = Team(handle="fire", name="Fire rescue")
        team.members = [TeamMember(person_id=thandi, position=0), TeamMember(person_id=sipho, position=1)]
        s.add(team)
        s.flush()
        team_id = team.id
    _notify(ctx, team_id=team_id, kind="sla_response_warning", incident_id=fire, title=f"SLA warning #{fire}")
    _notify(ctx, role="supervisor", kind="workflow_escalated", title="Not an operator's")
    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications: 1 unread", timeout=5000)
    tree = window.notifications.list
    row = tree.topLevelItem(0)
    assert [row.text(n) for n in range(4)][1:] == [f"● SLA warning #{fire}", "Fire rescue (team)", ""]
    assert tree.topLevelItemCount() == 1

    inbox.mark_read(
        ctx, Identity(name="sipho", role="operator", person_id=sipho), window.notifications.notices[0].id
    )
    window.notifications.refresh()
    qtbot.waitUntil(lambda: window.notifications_button.text() == "Notifications", timeout=5000)
    row = tree.topLevelItem(0)
    assert (row.text(1), row.text(3)) == (f"SLA warning #{fire}", "Sipho Dlamini")
    assert row.toolTip(3).startswith("Marked read by Sipho Dlamini at ")


def _fire_rescue(ctx: AppContext) -> None:
    with write_session(ctx.sessions) as s:
        schedule = Schedule(handle="fire-rescue", name="Fire rescue", timezone="Africa/Johannesburg")
        s.add(schedule)
        s.flush()
        rotation = Rotation(
            schedule_id=schedule.id,
            name="Primary",
            start_date="2026-03-01",
            handoff_time="08:00",
            shift_hours=12,
        )
        s.add(rotation)
        s.flush()
        for position, handle in enumerate(("thandi", "sipho")):
            s.add(RotationMember(rotation_id=rotation.id, person_id=_person(ctx, handle), position=position))


def _local(hour_utc: int) -> str:
    return datetime(2026, 3, 2, hour_utc, 0, tzinfo=UTC).astimezone().strftime("%H:%M")


def test_the_board_says_who_is_on_call_now_and_next_and_follows_changes(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    assert ctx.clock.now() == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 10:00 in Johannesburg
    _fire_rescue(ctx)
    window = _window(qtbot, services)
    strip = window.board.on_call
    # Day shift 08:00-20:00 Johannesburg (18:00 UTC), then Sipho's night shift.
    expected = f"On call — Fire rescue: Thandi Nkosi until {_local(18)}, next Sipho Dlamini from {_local(18)}"
    qtbot.waitUntil(lambda: strip.text() == expected, timeout=5000)
    assert strip.isVisible()

    # An override saved in this console counts at once.
    with write_session(ctx.sessions) as s:
        schedule_id = s.scalars(select(Schedule.id)).one()
        s.add(
            ScheduleOverride(
                schedule_id=schedule_id,
                person_id=_person(ctx, "sipho"),
                start_at=ctx.clock.now() - timedelta(minutes=5),
                end_at=ctx.clock.now() + timedelta(hours=2),
            )
        )
    services.config_changed.emit("schedules")
    expected = f"On call — Fire rescue: Sipho Dlamini until {_local(10)}, next Thandi Nkosi from {_local(10)}"
    qtbot.waitUntil(lambda: strip.text() == expected, timeout=5000)

    # Every minute it looks again: past the override and the hand-off, the night shift is on.
    assert strip._timer.interval() == 60_000 and strip._timer.isActive()
    ctx.clock.advance(timedelta(hours=11))  # type: ignore[attr-defined]
    strip._timer.timeout.emit()
    morning = datetime(2026, 3, 3, 6, 0, tzinfo=UTC).astimezone().strftime("%a %H:%M")  # "Tue 06:00" in UTC
    expected = f"On call — Fire rescue: Sipho Dlamini until {morning}, next Thandi Nkosi from {morning}"
    qtbot.waitUntil(lambda: strip.text() == expected, timeout=5000)


def test_the_strip_shows_each_team_by_its_name_with_who_is_on_call_and_who_is_next(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    """A schedule that is a team's on-call schedule is shown under the team's name; the tooltip also names
    the schedule. A saved team change (the supervisor gives a team its schedule) shows at once."""
    from engine.models import Team

    _fire_rescue(ctx)
    with write_session(ctx.sessions) as s:
        s.add(Team(handle="station-4", name="Station 4 crew"))
    window = _window(qtbot, services)
    strip = window.board.on_call
    qtbot.waitUntil(lambda: strip.text().startswith("On call — Fire rescue: Thandi Nkosi"), timeout=5000)
    with write_session(ctx.sessions) as s:
        team = s.scalars(select(Team)).one()
        team.schedule_id = s.scalars(select(Schedule.id)).one()
    services.config_changed.emit("teams")
    expected = (
        f"On call — Station 4 crew: Thandi Nkosi until {_local(18)}, next Sipho Dlamini from {_local(18)}"
    )
    qtbot.waitUntil(lambda: strip.text() == expected, timeout=5000)
    assert strip.toolTip().startswith("Station 4 crew (schedule Fire rescue): Thandi Nkosi until ")


def test_a_board_or_panel_that_is_gone_no_longer_answers_the_consoles_signals(
    qtbot: QtBot, services: ConsoleServices
) -> None:
    """A signed-in console outlives the windows it opened: a closed board's on-call line or a closed panel must
    not be called (and crash) when configuration or incidents change afterwards."""
    import shiboken6

    from console.board.widget import BoardWidget
    from console.notifications import NotificationsPanel

    board, panel = BoardWidget(services, start=False), NotificationsPanel(services, start=False)
    shiboken6.delete(board)
    shiboken6.delete(panel)
    services.config_changed.emit("schedules")
    services.incidents_changed.emit([1])
    qtbot.wait(700)  # past the panel's half-second gathering of changes

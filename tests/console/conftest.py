"""Console test fixtures: Qt warnings fail the test, services for a signed-in operator, incidents to show.

Every test in tests/console (and tests/e2e) gets `qt_log_level_fail("WARNING")`: a Qt warning — a model
misuse, a bad signal connection, a style sheet that does not parse — is a failure, not noise. The only
message ignored is the multimedia back end's complaint about a missing PipeWire library on a headless machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication
from sqlalchemy.orm import Session, sessionmaker

from console.services import ConsoleServices, SignedIn
from console.theme import apply_theme
from engine.context import AppContext
from engine.escalation import notify_work
from engine.models import Event, Incident

QT_IGNORED = ("pipewire", "Couldn't resolve", "propagateSizeHints")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    e2e = here.parent / "e2e"
    for item in items:
        path = Path(str(item.path))
        if (here in path.parents or e2e in path.parents) and not item.get_closest_marker("qt_log_level_fail"):
            item.add_marker(pytest.mark.qt_log_level_fail("WARNING"))
            item.add_marker(pytest.mark.qt_log_ignore(*QT_IGNORED))


@pytest.fixture(autouse=True)
def _qsettings(tmp_path: Path) -> Iterator[None]:
    """QSettings (saved views, window layout) in a directory of the test's own."""
    QCoreApplication.setOrganizationName("watchkeeper-tests")
    QCoreApplication.setApplicationName("watchkeeper-tests")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield


@pytest.fixture
def operator() -> SignedIn:
    return SignedIn(operator_id=None, username="thandi", display_name="Thandi Nkosi", role="supervisor")


@pytest.fixture
def services(ctx: AppContext, operator: SignedIn, qapp: Any) -> Iterator[ConsoleServices]:
    svc = ConsoleServices(ctx, operator)
    yield svc
    svc.shutdown()


def show_board(qtbot: Any, services: ConsoleServices, *, active: bool = False) -> Any:
    """A board on the screen, loaded; `active` makes its window the active one, as an operator's is."""
    from console.board.widget import BoardWidget

    widget = BoardWidget(services)
    qtbot.addWidget(widget)
    widget.resize(1400, 600)
    widget.show()
    if active:
        widget.activateWindow()
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)
    return widget


def add_incident(
    sessions: sessionmaker[Session],
    now: datetime,
    *,
    summary: str = "Smoke reported, Block C",
    severity: str = "high",
    status: str = "open",
    site: str = "north",
    category: str = "fire",
    age: timedelta = timedelta(minutes=3),
    response_in: timedelta | None = timedelta(minutes=15),
    notify: bool = False,
    **fields: Any,
) -> int:
    """Insert one incident and its `incident_opened` event in one commit (what the engine would do); with
    `notify`, also the NOTIFY engine.api sends in that transaction on PostgreSQL."""
    created = now - age
    with sessions.begin() as s:
        incident = Incident(
            key=f"k-{summary}-{created.timestamp()}",
            summary=summary,
            severity=severity,
            status=status,
            site=site,
            category=category,
            created_at=created,
            updated_at=created,
            last_triggered_at=created,
            response_due_at=(created + response_in) if response_in else None,
            response_warn_at=(created + response_in * 0.8) if response_in else None,
            resolution_due_at=created + timedelta(hours=4),
            **fields,
        )
        s.add(incident)
        s.flush()
        s.add(
            Event(kind="incident_opened", at=created, incident_id=incident.id, actor="test", message=summary)
        )
        if notify:
            notify_work(s, "escalate")
        return int(incident.id)


def change_incident(sessions: sessionmaker[Session], now: datetime, incident_id: int, **fields: Any) -> None:
    """Another connection changes an incident and writes its event, as an engine on another machine would."""
    with sessions.begin() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        for name, value in fields.items():
            setattr(incident, name, value)
        incident.updated_at = now
        s.add(Event(kind="incident_updated", at=now, incident_id=incident_id, actor="other-console"))


@pytest.fixture
def styled(qapp: QApplication) -> Iterator[QApplication]:
    """The light theme the console starts with; the application's look restored afterwards."""
    style, sheet, font = qapp.style().name(), qapp.styleSheet(), qapp.font()
    apply_theme(qapp, dark=False, large=False)
    yield qapp
    qapp.setStyle(style)
    qapp.setStyleSheet(sheet)
    qapp.setFont(font)
